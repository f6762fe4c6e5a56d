"""Swapped initialisation ("Better Call LoRA" SST-2 study): the roles of A and B at init are exchanged.

    A = 0,   B ~ U(-0.01, 0.01),   ΔW = s · B A = 0 at step 0.

With A = 0 the first gradient reaches A only (∂L/∂B = s · g xᵀ Aᵀ = 0), so B stays at its random
draw until A moves; the opposite of vanilla LoRA.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from .base import ADAPTER, Calibration, Choice, Method
from .registry import register

if TYPE_CHECKING:
    from peft import PeftModel

B_BOUND = 0.01


@register
class InitB(Method):
    name = "init_b"
    summary = "swapped init: A = 0, B ~ U(-0.01, 0.01)"
    paper = "SST-2 study ('Better Call LoRA'); cf. Hayou et al. 2024, arXiv:2406.08447"
    choices = (Choice("init", "A = 0, B ~ U(−0.01, 0.01)", "SST-2 study",
                      "Hayou et al.'s Init[A]/Init[B] draw the non-zero factor with its own fan-in bound"),)

    def initialise(self, model: PeftModel, opts: BaseModel, calibration: Calibration | None) -> None:
        import torch

        from .layers import lora_layers

        with torch.no_grad():
            for _, layer in lora_layers(model):
                layer.lora_A[ADAPTER].weight.zero_()
                layer.lora_B[ADAPTER].weight.uniform_(-B_BOUND, B_BOUND)
