"""``lorabench eval RUN_DIR --harness TASKS``: lm-evaluation-harness on a trained adapter, beside the study's
generation protocol.

The run's base model is loaded as the run loaded it and its adapter put on with plain
``PeftModel.from_pretrained`` (every method's adapter loads onto the original base, see :mod:`lorabench.export`),
then ``lm_eval.simple_evaluate`` runs the tasks through its ``HFLM`` wrapper. A task named in
:data:`lorabench.harness_tasks.LOCAL` uses the staged file under the data root (offline); any other name is
passed to the harness as it is (its own definition, which fetches its dataset from the hub). The results, with
each local file's sha256, the harness version and the settings, go to ``RUN_DIR/harness/results.json``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .errors import ConfigError, DataError
from .export import trained_model
from .files import atomic_write_json, write_jsonl
from .harness_tasks import LOCAL, task_config


def data_root(root: str | Path | None) -> Path:
    found = root or os.environ.get("LORABENCH_DATA_ROOT")
    if not found:
        raise ConfigError("--data-root: not given and $LORABENCH_DATA_ROOT is not set (the staged evaluation files)")
    return Path(found)


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def task_specs(names: list[str], root: Path | None) -> tuple[list[Any], dict[str, dict[str, str]]]:
    """The harness specs for ``names`` (local configs, or the harness's own names) and each local file's hash."""
    specs: list[Any] = []
    files: dict[str, dict[str, str]] = {}
    for name in names:
        if name not in LOCAL:
            specs.append(name)
            continue
        try:
            conf = task_config(name, data_root(root))
        except FileNotFoundError as e:
            raise DataError(f"--harness {name}: staged file {e} not found (check --data-root)") from None
        specs.append(conf)
        files[name] = {split: _sha256(p) for split, p in conf["dataset_kwargs"]["data_files"].items()}
    return specs, files


def run_harness(run_dir: str | Path, tasks: list[str], *, data_root: str | Path | None = None,
                limit: int | None = None, num_fewshot: int | None = None, batch_size: int = 8,
                device: str | None = None, max_length: int | None = None) -> dict[str, Any]:
    """Evaluate ``run_dir``'s adapter on ``tasks``; returns (and writes) the harness's figures per task."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    run_dir = Path(run_dir)
    if device is not None and device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device: {device!r} is not one of auto, cpu, cuda")
    if not tasks or not all(t.strip() for t in tasks):
        raise ConfigError("--harness: give one or more task names, comma-separated")
    specs, files = task_specs(tasks, Path(data_root) if data_root else None)
    manager = TaskManager(include_defaults=any(isinstance(s, str) for s in specs))  # indexing the harness's own
    for name in (s for s in specs if isinstance(s, str)):  # tasks takes seconds: only when one is asked for
        if name not in manager.all_tasks:
            near = difflib.get_close_matches(name, [*LOCAL, *manager.all_tasks], n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"--harness {name}: not a local task ({', '.join(LOCAL)}) nor one of "
                              f"lm-evaluation-harness's{hint}")
    model, tok, cfg = trained_model(run_dir)
    if cfg.model.head != "lm":
        raise ConfigError(f"{run_dir}: lm-evaluation-harness needs a causal LM (model.head 'lm'), not {cfg.model.head!r}")
    from .prepare import pick_device

    model.to(pick_device(device or cfg.device))  # the run's own device setting unless --device says otherwise
    # the context is the model's own (its config's max_position_embeddings), not the training max_length: a
    # 5-shot prompt is longer than a training example
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, max_length=max_length)
    out = lm_eval.simple_evaluate(model=lm, tasks=specs, num_fewshot=num_fewshot, limit=limit, task_manager=manager,
                                  log_samples=True, bootstrap_iters=0, verbosity="WARNING")
    if out is None:
        raise ConfigError("lm-evaluation-harness returned no results")
    folder = run_dir / "harness"
    for name, samples in (out.get("samples") or {}).items():
        write_jsonl(folder / f"samples_{name}.jsonl", [_sample(x) for x in samples])
    record = {"tasks": tasks, "results": out["results"], "n_samples": out.get("n-samples"),
              "num_fewshot": out.get("n-shot"), "limit": limit, "files_sha256": files,
              "lm_eval_version": getattr(lm_eval, "__version__", None), "run": str(run_dir), "method": cfg.method}
    record = json.loads(json.dumps(record, default=str))
    atomic_write_json(folder / "results.json", record)
    return record


def _sample(x: dict[str, Any]) -> dict[str, Any]:
    """One evaluated document as the harness logged it: prompt(s), responses (log-likelihoods or text), target."""
    keep = ("doc_id", "target", "arguments", "resps", "filtered_resps", "filter", "metrics")
    return json.loads(json.dumps({k: x[k] for k in keep if k in x} | {m: x[m] for m in x.get("metrics", [])},
                                 default=str))


def headline(record: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(task, metric, value) for every figure of every task (stderr columns left out)."""
    rows = []
    for task, figures in record["results"].items():
        for key, value in figures.items():
            if "," in key and "_stderr" not in key and isinstance(value, int | float):
                rows.append((task, key, float(value)))
    return rows
