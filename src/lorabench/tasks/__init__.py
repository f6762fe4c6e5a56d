"""Task kinds: what a run trains on and how it is evaluated.

``classification`` (SST-2): class predictions scored by accuracy and macro-F1. ``sft``: supervised fine-tuning
on instruction/response pairs, evaluated by generating answers and scoring them per evaluation set. Both give
the training loop the same things: the encoded training examples, an ``evaluate`` for K models at once, and
what to record (data files, counts). The headline figure (``accuracy``) is what sweeps choose the best on.
"""

from __future__ import annotations

from ..config import RunConfig, SftData
from .base import Evaluation, Task
from .classification import Classification
from .sft import Sft


def load_task(cfg: RunConfig) -> Task:
    """The task of ``cfg`` with its data read and checked, not yet tokenised (bad input: a ``LorabenchError``)."""
    if isinstance(cfg.data, SftData):
        return Sft(cfg)
    return Classification(cfg)


def data_files(cfg: RunConfig) -> dict[str, str] | None:
    """The sha256 of each local file the task reads, without tokenising; None if one is not there (or on the hub)."""
    if isinstance(cfg.data, SftData):
        from .sft import file_hashes

        return file_hashes(cfg.data)
    from .classification import file_hashes as classification_hashes

    return classification_hashes(cfg)


__all__ = ["Classification", "Evaluation", "Sft", "Task", "data_files", "load_task"]
