"""Init[AB]: both factors random, the base compensated, as the "Learning Rate Matters" study ran it (its
``run-lora/utils/init_AB_util.py``, ``AB_1_1_RESET``; also the SST-2 study's Init[AB]).

    A ~ U(−1/√d_in, 1/√d_in),   B ~ U(−1/√d_in, 1/√d_in),   W_res = W − s·B A,   s = α/r

Both bounds use the layer's input width d_in (``in_features``), the fan-in of A and of the adapted layer:
the study's magnitudes 1 and 1 times 1/√fan_in. A gets PEFT's draw range (Kaiming-uniform with a = √5 is
U(±1/√d_in) for A ∈ R^{r×d_in}); B gets the same range instead of zeros. Other readings differ: the Init[A]
/ Init[B] schemes of Hayou, Ghosh, Yu 2024 ("The Impact of Initialization on LoRA Finetuning Dynamics",
arXiv:2406.08447) draw each non-zero factor with its own fan-in, which for B ∈ R^{d_out×r} is
U(±1/√r): √(d_in / r) times larger (6.9× for MiniLM at r = 8), and with it a far larger curvature at
init. The study's form is implemented.

Since s·B A ≠ 0, the frozen weight is replaced by W_res (formed in float32, stored in W's dtype), so
W_res + s·B A = W and the model output is unchanged at step 0. No PEFT init does this; lorabench's own
code after PEFT injects plain LoRA layers. The saved adapter (PEFT format) applies to W_res, not to W,
as for PiSSA here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pydantic import BaseModel

from .base import ADAPTER, Calibration, Choice, Method
from .registry import register

if TYPE_CHECKING:
    import torch
    from peft import PeftModel


def uniform(shape: tuple[int, int], fan_in: int, device: torch.device) -> torch.Tensor:
    """A matrix of ``shape`` ~ U(−1/√fan_in, 1/√fan_in)."""
    import torch

    bound = 1 / math.sqrt(fan_in)
    return torch.empty(shape, device=device).uniform_(-bound, bound)


@register
class InitAB(Method):
    name = "init_ab"
    summary = "Init[AB]: A, B ~ U(±1/√d_in), frozen W_res = W − s·B A"
    paper = "the 'Learning Rate Matters' study's Init[AB]; cf. Hayou et al. 2024, arXiv:2406.08447"
    residual = True
    choices = (Choice("init", "A, B ~ U(±1/√d_in), d_in the layer's in_features", "the study's code (AB_1_1)",
                      "Hayou et al.'s fan-in reading bounds B by 1/√r (√(d_in/r) times larger)"),
               Choice("base", "W_res = W − s·B A (frozen)", "the study's code (RESET)"))

    def initialise(self, model: PeftModel, opts: BaseModel, calibration: Calibration | None) -> None:
        from .layers import lora_layers, set_with_residual

        for _, layer in lora_layers(model):
            a = layer.lora_A[ADAPTER].weight
            r, d_in = a.shape
            d_out = layer.lora_B[ADAPTER].weight.shape[0]
            set_with_residual(layer, uniform((r, d_in), d_in, a.device), uniform((d_out, r), d_in, a.device))
