"""A task of one trial or a fused group, wherever it runs (a worker process, a Ray task): claim, run, record."""

from __future__ import annotations

import shutil
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from ..config import validate
from ..files import atomic_write_json
from ..records import RunResult, Status
from .store import Store, owner_id

BEAT_EVERY_S = 2.0


def attempt_dir(sweep_dir: str | Path, key: str, attempt: int) -> Path:
    """Where attempt ``attempt`` of trial ``key`` writes; it becomes ``trials/KEY`` only once it is recorded."""
    return Path(sweep_dir) / "trials" / f".{key}.attempt-{attempt}"


def publish(store: Store, key: str, owner: str, folder: Path, final: Path, status: Status,
            result: dict[str, Any] | None, error: str | None) -> bool:
    """Record an attempt's outcome only if the store still says ``owner`` runs the trial (the fence: a worker that
    stalled past its lease and lost the trial to another records nothing), then move its folder into place."""
    if result is not None:
        result["run_dir"] = str(final)
        if (folder / "result.json").is_file():
            atomic_write_json(folder / "result.json", result)
    if not store.finish(key, owner, status, result, error):
        shutil.rmtree(folder, ignore_errors=True)
        return False
    if folder.is_dir():
        shutil.rmtree(final, ignore_errors=True)  # what a killed earlier attempt left; never a finished run
        folder.rename(final)
    return True


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
        dirs = [attempt_dir(sweep_dir, k, rows[k]["attempts"]) for k in mine]
        for k in mine:  # folders of earlier attempts that were killed before they were recorded
            for stale in (Path(sweep_dir) / "trials").glob(f".{k}.attempt-*"):
                shutil.rmtree(stale, ignore_errors=True)
        last = [0.0]

        def beat(step: int) -> None:
            if time.monotonic() - last[0] >= BEAT_EVERY_S:
                last[0] = time.monotonic()
                for k in mine:
                    store.beat(k, owner, step)

        results: list[RunResult | None] = [None] * len(mine)
        try:
            cfgs = [validate(rows[k]["config"], f"trial {k}") for k in mine]
            # test splits only where they are reported: the sweep's held-out pass (lorabench.sweep.held_out)
            results = list(run_group(cfgs, list(dirs), progress=False, log=lambda m: None, on_step=beat,
                                     held_out=False))
            outcome = [(r["status"], r["error"]) for r in results if r is not None]
        except Exception as e:  # preparing the group failed: every trial of it is a result with the cause
            outcome = [(status_of(e), traceback.format_exc())] * len(mine)
        for k, d, result, (status, error) in zip(mine, dirs, results, outcome, strict=True):
            publish(store, k, owner, d, Path(sweep_dir) / "trials" / k, status, dict(result) if result else None, error)
        done = dict(zip(mine, (s for s, _ in outcome)))
        return [done.get(k, "skipped") for k in keys]
    finally:
        store.close()
