"""Init[AB]: both factors random, the base compensated ("Better Call LoRA" SST-2 study; the Init[A] / Init[B]
schemes of Hayou, Ghosh, Yu 2024, "The Impact of Initialization on LoRA Finetuning Dynamics", arXiv:2406.08447,
with neither factor at zero).

    A ~ U(−1/√d_in, 1/√d_in),   B ~ U(−1/√r, 1/√r),   W_res = W − s·B A,   s = α/r

The bound is 1/√fan_in with fan_in the factor's own input dimension: d_in (the layer's in_features) for
A ∈ R^{r×d_in}, and r for B ∈ R^{d_out×r}. That is PyTorch's default ``nn.Linear`` init (Kaiming-uniform,
a = √5), the same draw as PEFT's A; B gets the same rule instead of zeros. Since s·B A ≠ 0, the frozen weight
is replaced by W_res (formed in float32, stored in W's dtype), so W_res + s·B A = W and the model output is
unchanged at step 0. No PEFT init does this; lorabench's own code after PEFT injects plain LoRA layers.
The saved adapter (PEFT format) applies to W_res, not to W, as for PiSSA here.
"""

import math

import torch
from peft import PeftModel
from pydantic import BaseModel

from .base import ADAPTER, Calibration, Method, lora_layers, set_with_residual
from .registry import register


def uniform_fan_in(rows: int, fan_in: int, device: torch.device) -> torch.Tensor:
    """A rows × fan_in matrix ~ U(−1/√fan_in, 1/√fan_in)."""
    bound = 1 / math.sqrt(fan_in)
    return torch.empty(rows, fan_in, device=device).uniform_(-bound, bound)


@register
class InitAB(Method):
    name = "init_ab"
    summary = "Init[AB]: A, B ~ U(±1/√fan_in), frozen W_res = W − s·B A"
    paper = "SST-2 study ('Better Call LoRA'); cf. Hayou et al. 2024, arXiv:2406.08447"

    def initialise(self, model: PeftModel, opts: BaseModel, calibration: Calibration | None) -> None:
        for _, layer in lora_layers(model):
            a = layer.lora_A[ADAPTER].weight
            r, d_in = a.shape
            d_out = layer.lora_B[ADAPTER].weight.shape[0]
            set_with_residual(layer, uniform_fan_in(r, d_in, a.device), uniform_fan_in(d_out, r, a.device))
