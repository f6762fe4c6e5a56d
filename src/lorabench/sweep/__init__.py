"""Sweeps: search spaces, strategies, the trial store and executors."""

from .config import Sweep, SweepConfig, load_sweep
from .runner import run_sweep
from .summary import best, format_best, open_store, status

__all__ = ["Sweep", "SweepConfig", "best", "format_best", "load_sweep", "open_store", "run_sweep", "status"]
