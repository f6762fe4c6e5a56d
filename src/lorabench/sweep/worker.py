"""A task of one trial or a fused group, wherever it runs (a worker process, a Ray task): claim, run, record."""

from __future__ import annotations

import shutil
import time
import traceback
from pathlib import Path
import torch

from ..config import validate
from ..records import RunResult
from .store import Store, owner_id

BEAT_EVERY_S = 2.0


def run_trials(store_url: str, sweep_dir: str, keys: list[str], threads: int | None = None) -> list[str]:
    """Run the trials ``keys`` that are still pending, fused into one group when there are several (they
    must be fusable: see ``lorabench.fuse``); returns each one's final status (or ``skipped``)."""
    from ..runner import run_group  # imported here: worker processes start clean
    from ..train import status_of

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the sweep's own bars report progress
    if threads:
        torch.set_num_threads(threads)
    store = Store(store_url)
    owner = owner_id()
    try:
        mine = [k for k in keys if store.claim(k, owner)]
        if not mine:
            return ["skipped"] * len(keys)
        rows = {r["key"]: r for r in store.rows() if r["key"] in mine}
        dirs: list[str | Path] = [Path(sweep_dir) / "trials" / k for k in mine]
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)  # a half-written folder from a killed attempt
        last = [0.0]

        def beat(step: int) -> None:
            if time.monotonic() - last[0] >= BEAT_EVERY_S:
                last[0] = time.monotonic()
                for k in mine:
                    store.beat(k, owner, step)

        results: list[RunResult | None] = [None] * len(mine)
        try:
            cfgs = [validate(rows[k]["config"], f"trial {k}") for k in mine]
            results = list(run_group(cfgs, dirs, progress=False, log=lambda m: None, on_step=beat))
            outcome = [(r["status"], r["error"]) for r in results if r is not None]
        except Exception as e:  # preparing the group failed: every trial of it is a result with the cause
            outcome = [(status_of(e), traceback.format_exc())] * len(mine)
        for k, result, (status, error) in zip(mine, results, outcome, strict=True):
            store.finish(k, owner, status, dict(result) if result else None, error)
        done = dict(zip(mine, (s for s, _ in outcome)))
        return [done.get(k, "skipped") for k in keys]
    finally:
        store.close()
