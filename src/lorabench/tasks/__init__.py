"""Task kinds: what a run trains on and how it is evaluated.

``classification`` (SST-2): class predictions scored by accuracy and macro-F1. ``sft``: supervised fine-tuning
on instruction/response pairs, evaluated by generating answers and scoring them per evaluation set. Both give
the training loop the same things: the encoded training examples, an ``evaluate`` for K models at once, and
what to record (data files, counts). The headline figure (``accuracy``) is what sweeps choose the best on.
"""

from __future__ import annotations

from ..config import RunConfig, SftData
from ..errors import LorabenchError
from .base import Evaluation, Task
from .classification import Classification
from .sft import Sft


def load_task(cfg: RunConfig) -> Task:
    """The task of ``cfg`` with its data read and checked, not yet tokenised (bad input: a ``LorabenchError``)."""
    if isinstance(cfg.data, SftData):
        return Sft(cfg)
    return Classification(cfg)


def data_files(cfg: RunConfig) -> dict[str, str] | None:
    """The sha256 of each local file the task reads (its :attr:`Task.files`, read as a run reads them, without
    tokenising); None when a source is on the hub (not fetched just to hash it) or cannot be read."""
    d = cfg.data
    sources = [d.train, *d.eval] if isinstance(d, SftData) else [d.train, d.validation, *([d.test] if d.test else [])]
    if any(s.hub is not None for s in sources):
        return None
    try:
        return {k: v["sha256"] for k, v in load_task(cfg).files.items()}
    except LorabenchError:
        return None


__all__ = ["Classification", "Evaluation", "Sft", "Task", "data_files", "load_task"]
