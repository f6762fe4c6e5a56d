"""Sweeps: search spaces, strategies, the trial store, scheduling and executors.

Names load on first use, so ``lorabench status`` and ``best`` read a store without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {"Sweep": "config", "SweepConfig": "config", "load_sweep": "config", "run_sweep": "runner",
        "best": "summary", "format_best": "summary", "open_store": "summary", "status": "summary"}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'lorabench.sweep' has no attribute {name!r}")
