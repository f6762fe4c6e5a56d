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
from .train import run_training


def default_run_dir(cfg: RunConfig) -> Path:
    return Path("runs") / f"{cfg.method}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def run(cfg: RunConfig, run_dir: str | Path | None = None, *, progress: bool = True,
        log: Callable[[str], None] = print, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train and evaluate one configured run; returns ``result.json``'s content.

    Bad input raises ``LorabenchError`` before the run folder exists. A diverging or crashing run
    is a result: its status says so and the folder holds what was measured up to then.
    """
    p = prepare(cfg)
    for split, counts in p.label_counts.items():
        log(f"{split}: {sum(counts.values())} examples, labels " + ", ".join(
            f"{cfg.data.label_words[y]}={n} ({n / max(1, sum(counts.values())):.1%})" for y, n in counts.items()))
    log(f"{cfg.method}: {p.trainable_params:,} trainable parameters on {p.device}")
    config = cfg.dump()
    out = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    record = RunRecord(out, config)
    record.trackers = open_trackers(cfg.report_to, out, config)
    body = run_training(p, record, progress=progress, log=log, on_step=on_step)
    result = {"status": body.pop("status"), "method": body.pop("method"), "config": config, **body,
              "label_counts": p.label_counts, "provenance": provenance(p.device, p.data_files),
              "run_dir": str(out)}
    record.result(result)
    return result
