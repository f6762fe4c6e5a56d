"""The training objective: per-micro-batch loss sums and how many terms they hold.

``lm``: the causal-LM cross-entropy over every predicted token (the whole prompt, padding masked), or, when
the batch has a ``loss_mask`` (supervised fine-tuning), over the response tokens only;
``cls``: the cross-entropy of the classifier's logits, one term per example. The mean loss of a set of
batches is Σ ``loss_sum`` / Σ ``loss_tokens``, whatever the batching: training, LoRA-GA's gradient
estimate and the Hessian all minimise or differentiate exactly this.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def loss_tokens(batch: dict[str, torch.Tensor], head: str) -> int:
    """How many terms a micro-batch adds to the loss: predicted tokens (lm) or examples (cls)."""
    if head == "cls":
        return int(batch["labels"].numel())
    return int(_targets(batch)[:, 1:].sum())


def _targets(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """1 where a token is a loss target: the response (``loss_mask``, generative tasks) or every real token."""
    return batch.get("loss_mask", batch["attention_mask"])


def loss_sum(model: nn.Module, batch: dict[str, torch.Tensor], head: str) -> torch.Tensor:
    """Sum (not mean) of the per-token (lm) or per-example (cls) cross-entropy of a micro-batch."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return loss_of_logits(logits, batch, head)


def loss_of_logits(logits: torch.Tensor, batch: dict[str, torch.Tensor], head: str) -> torch.Tensor:
    """``loss_sum`` from the model's output on ``batch``."""
    if head == "cls":
        return F.cross_entropy(logits.float(), batch["labels"], reduction="sum")
    targets = batch["input_ids"][:, 1:].masked_fill(_targets(batch)[:, 1:] == 0, -100)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), reduction="sum",
                           ignore_index=-100)
