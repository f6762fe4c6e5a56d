"""``run``: config → data → model → adapter → training → evaluation → run folder."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from .config import RunConfig
from .errors import ConfigError
from .fuse import Fused, fuse_key, share_frozen
from .methods import get_method
from .models import describe_model
from .prepare import prepare
from .provenance import provenance
from .record import RunRecord
from .records import RunResult, run_result
from .trackers import open_trackers
from .train import Alone, Forward, run_lanes


def default_run_dir(cfg: RunConfig) -> Path:
    return Path("runs") / f"{cfg.method}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def run(cfg: RunConfig, run_dir: str | Path | None = None, *, progress: bool = True,
        log: Callable[[str], None] = print, on_step: Callable[[int], None] | None = None) -> RunResult:
    """Train and evaluate one configured run; returns ``result.json``'s content.

    Bad input raises ``LorabenchError`` before the run folder exists. A diverging or crashing run
    is a result: its status says so and the folder holds what was measured up to then.
    """
    out = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    check_writable(out)
    return run_group([cfg], [out], progress=progress, log=log, on_step=on_step)[0]


def check_writable(out: Path) -> None:
    """A ``ConfigError`` now, before data and model load, if the run folder could not be written (or already holds a
    finished run)."""
    import tempfile

    if (out / "result.json").exists():
        raise ConfigError(f"{out}: already holds a finished run (result.json); choose another -o")

    base = out.resolve()
    while not base.exists() and base != base.parent:
        base = base.parent
    try:
        if not base.is_dir():
            raise NotADirectoryError(f"{base} is not a folder")
        with tempfile.NamedTemporaryFile(dir=base, prefix=".lorabench-probe-"):
            pass
    except OSError as e:
        raise ConfigError(f"-o: {out}: cannot write there ({e.strerror or e})") from None


def run_group(cfgs: list[RunConfig], run_dirs: list[str | Path], *, progress: bool = True,
              log: Callable[[str], None] = print, on_step: Callable[[int], None] | None = None,
              held_out: bool = True) -> list[RunResult]:
    """Train K runs, fused into one forward/backward per micro-batch when K > 1 (see :mod:`lorabench.fuse`);
    each gets its own run folder and result, equal to what it would get alone (up to float rounding).
    All K must have the same :func:`~lorabench.fuse.fuse_key`. ``held_out`` False (a sweep's trials): the held-out
    splits are left to :func:`evaluate_kept`, the trained parameters kept for it."""
    if len({fuse_key(c) for c in cfgs}) != 1 or (len(cfgs) > 1 and fuse_key(cfgs[0]) is None):
        raise ConfigError("these runs cannot be fused: they differ in more than lr, seed and method options, "
                          "or use dropout")
    from transformers.utils import logging as hf_logging

    (hf_logging.enable_progress_bar if progress else hf_logging.disable_progress_bar)()  # -q: no loading bar either
    ps = []
    for cfg in cfgs:
        ps.append(prepare(cfg))
        if len(ps) > 1:
            share_frozen(ps[0].model, ps[-1].model)  # one frozen base in memory as soon as possible
    p0 = ps[0]
    for line in p0.task.describe():
        log(line)
    log(f"{p0.cfg.method}: {p0.trainable_params:,} trainable parameters on {p0.device}"
        + (f"; {len(ps)} runs fused" if len(ps) > 1 else ""))
    records = []
    for p, d in zip(ps, run_dirs, strict=True):
        records.append(RunRecord(Path(d), p.cfg.dump()))
        records[-1].trackers = open_trackers(p.cfg.report_to, Path(d), p.cfg.dump())
    models = [p.model for p in ps]
    forward: Forward = Fused(models, get_method(p0.cfg.method).fusion) if len(ps) > 1 else Alone(models[0])
    lanes = run_lanes(ps, records, forward=forward, progress=progress, log=log, on_step=on_step, held_out=held_out)
    results = []
    for p, d, record, lane in zip(ps, run_dirs, records, lanes, strict=True):
        result = run_result(lane, config=p.cfg.dump(), counts=p.task.counts,
                            provenance=provenance(p.device, p.task.files, describe_model(p.cfg.model.name)), run_dir=str(d))
        try:
            record.result(result)
        except OSError as e:  # the store (in a sweep) still records what was trained
            result["artefact_errors"].append(f"result.json: {e}")
        results.append(result)
    return results


def evaluate_kept(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """The held-out splits of a finished run that deferred them, from its kept trained parameters: the model is
    prepared as the run prepared it (same config, same seed: the same base and init) and the parameters loaded;
    writes each split's per-example file beside the run's. Returns split → metrics."""
    from safetensors.torch import load_file

    from .files import write_jsonl
    from .record import TRAINABLE
    from .train import evaluate_split, load_trainable_state, split_artefact

    path = run_dir / TRAINABLE
    if not path.is_file():
        raise ConfigError(f"{path}: not found; the run's held-out splits cannot be evaluated without retraining it")
    p = prepare(cfg)
    load_trainable_state(p.model, load_file(str(path)), str(path))
    out = {}
    for split in p.task.held_out:
        ev = evaluate_split(p, split)
        write_jsonl(run_dir / split_artefact(p, split), ev.rows)
        out[split] = ev.metrics
    return out


def format_result(r: RunResult) -> str:
    """The command line's summary of a run's result."""
    f: Mapping[str, Any] = r["final"] or {}
    b = r["best"]

    def num(x: Any, fmt: str) -> str:
        return format(x, fmt) if isinstance(x, int | float) else "-"

    rows = [
        ("status", r["status"]), ("method", r["method"]),
        ("mean of sets (final)" if f.get("sets") else "accuracy (final)", num(f.get("accuracy"), ".4f")),
        *((f"  {name} (final)", num(v, ".4f")) for name, v in (f.get("sets") or {}).items()),
        *([] if f.get("sets") else [("macro-F1 (final)", num(f.get("macro_f1"), ".4f"))]),
        *([("  95% CI", f"[{f['accuracy_ci'][0]:.4f}, {f['accuracy_ci'][1]:.4f}]")] if f.get("accuracy_ci") else []),
        *((f"{split} accuracy (held out)", f"{num(m.get('accuracy'), '.4f')}" + (
            f" [{m['accuracy_ci'][0]:.4f}, {m['accuracy_ci'][1]:.4f}]" if m.get("accuracy_ci") else ""))
          for split, m in (r.get("held_out") or {}).items()),
        ("accuracy (best)", f"{num(b.get('accuracy'), '.4f')} at step {b.get('step')}"),
        ("train_seconds", num(r["train_seconds"], ".1f")), ("samples/s", num(r["samples_per_second"], ".1f")),
        ("peak memory MB", f"{num(r['peak_memory_mb'], '.0f')} ({r['memory_kind']})"),
        ("trainable params", f"{r['trainable_params']:,}"), ("tokens seen", f"{r['tokens_seen']:,}"),
        *([("generated tokens/s", num(r["generation_tokens_per_second"], ".1f"))]
          if r.get("generation_tokens_per_second") is not None else []),
        ("run folder", r["run_dir"]),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)
