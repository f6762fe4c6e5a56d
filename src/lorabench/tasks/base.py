"""What a task gives the training loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from ..data import Encoded
from ..generate import ModelCall
from ..records import Metrics


@dataclass
class Evaluation:
    """One model's evaluation: its metrics (``accuracy`` is the headline figure), the rows written to the run
    folder's ``artefact`` file, and whether it predicts a single class where the data has several."""

    metrics: Metrics
    rows: list[dict[str, Any]]
    examples: int
    one_class: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. generation throughput


class Task(Protocol):
    """Made from a config (the data read and checked, no tokenizer needed), then tokenised (:meth:`tokenize`)."""

    size: int  # training examples
    train: Encoded  # set by tokenize
    artefact: str  # the run folder's file of per-example outputs
    held_out: tuple[str, ...]  # splits evaluated once, after training (e.g. a classification task's "test")
    files: dict[str, dict[str, str]]  # every data file read: its source and sha256
    counts: dict[str, Any]  # recorded in result.json (label counts, examples without loss …)

    def tokenize(self, tokenizer: Any) -> None: ...

    def describe(self) -> list[str]:
        """Lines for the log: what was loaded."""
        ...

    def evaluate(self, call: ModelCall, k: int, *, batch_size: int, device: torch.device, autocast: bool,
                 progress: bool, split: str = "validation") -> list[Evaluation]:
        """Evaluate K models on ``split`` (``call`` runs them on a stacked batch, see :mod:`lorabench.generate`)."""
        ...


Evaluate = Callable[[ModelCall, int], list[Evaluation]]
