"""One trial, wherever it runs (this process, a worker process, a Ray task): claim, run, record."""

from __future__ import annotations

import shutil
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from ..config import validate
from .store import Store, owner_id

BEAT_EVERY_S = 2.0


def run_trial(store_url: str, sweep_dir: str, key: str, threads: int | None = None) -> str:
    """Run trial ``key`` if it is still pending; returns its final status (or ``skipped``)."""
    from ..runner import run  # imported here: worker processes start clean

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the sweep's own bars report progress
    if threads:
        torch.set_num_threads(threads)
    store = Store(store_url)
    owner = owner_id()
    try:
        if not store.claim(key, owner):
            return "skipped"
        row = next(r for r in store.rows() if r["key"] == key)
        run_dir = Path(sweep_dir) / "trials" / key
        shutil.rmtree(run_dir, ignore_errors=True)  # a half-written folder from a killed attempt
        last = [0.0]

        def beat(step: int) -> None:
            if time.monotonic() - last[0] >= BEAT_EVERY_S:
                last[0] = time.monotonic()
                store.beat(key, owner, step)

        result: dict[str, Any] | None = None
        error = None
        try:
            result = run(validate(row["config"], f"trial {key}"), run_dir, progress=False, log=lambda m: None,
                         on_step=beat)
            status, error = result["status"], result.get("error")
        except torch.OutOfMemoryError:
            status, error = "oom", traceback.format_exc()
        except Exception:
            status, error = "failed", traceback.format_exc()
        store.finish(key, owner, status, result, error)
        return status
    finally:
        store.close()
