"""``run``: config → data → model → adapter → training → evaluation → run folder."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from .config import RunConfig
from .prepare import prepare
from .provenance import provenance
from .record import RunRecord
from .trackers import open_trackers
from .errors import ConfigError
from .fuse import Fused, fuse_key, share_frozen
from .train import run_lanes


def default_run_dir(cfg: RunConfig) -> Path:
    return Path("runs") / f"{cfg.method}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def run(cfg: RunConfig, run_dir: str | Path | None = None, *, progress: bool = True,
        log: Callable[[str], None] = print, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train and evaluate one configured run; returns ``result.json``'s content.

    Bad input raises ``LorabenchError`` before the run folder exists. A diverging or crashing run
    is a result: its status says so and the folder holds what was measured up to then.
    """
    out = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    return run_group([cfg], [out], progress=progress, log=log, on_step=on_step)[0]


def run_group(cfgs: list[RunConfig], run_dirs: list[str | Path], *, progress: bool = True,
              log: Callable[[str], None] = print, on_step: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Train K runs, fused into one forward/backward per micro-batch when K > 1 (see :mod:`lorabench.fuse`);
    each gets its own run folder and result, equal to what it would get alone (up to float rounding).
    All K must have the same :func:`~lorabench.fuse.fuse_key`."""
    if len({fuse_key(c) for c in cfgs}) != 1 or (len(cfgs) > 1 and fuse_key(cfgs[0]) is None):
        raise ConfigError("these runs cannot be fused: they differ in more than lr, seed and method options, "
                          "or use dropout")
    ps = []
    for cfg in cfgs:
        ps.append(prepare(cfg))
        if len(ps) > 1:
            share_frozen(ps[0].model, ps[-1].model)  # one frozen base in memory as soon as possible
    p0 = ps[0]
    for split, counts in p0.label_counts.items():
        log(f"{split}: {sum(counts.values())} examples, labels " + ", ".join(
            f"{p0.cfg.data.label_words[y]}={n} ({n / max(1, sum(counts.values())):.1%})" for y, n in counts.items()))
    log(f"{p0.cfg.method}: {p0.trainable_params:,} trainable parameters on {p0.device}"
        + (f"; {len(ps)} runs fused" if len(ps) > 1 else ""))
    records, configs = [], []
    for p, d in zip(ps, run_dirs):
        configs.append(p.cfg.dump())
        records.append(RunRecord(Path(d), configs[-1]))
        records[-1].trackers = open_trackers(p.cfg.report_to, Path(d), configs[-1])
    fused = Fused([p.model for p in ps]) if len(ps) > 1 else None
    bodies = run_lanes(ps, records, fused=fused, progress=progress, log=log, on_step=on_step)
    results = []
    for p, d, config, record, body in zip(ps, run_dirs, configs, records, bodies):
        result = {"status": body.pop("status"), "method": body.pop("method"), "config": config, **body,
                  "label_counts": p.label_counts, "provenance": provenance(p.device, p.data_files),
                  "run_dir": str(d)}
        record.result(result)
        results.append(result)
    return results
