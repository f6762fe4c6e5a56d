"""LoRA-XS's trainable mixing on PEFT's ``lora_A`` slot: x ↦ R (A x) (see :mod:`lorabench.methods.lora_xs`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ProjectThenMix(nn.Module):
    """x ↦ R (A x): the frozen projection A (``weight``, r×n) followed by the trainable R (r×r)."""

    def __init__(self, a: torch.Tensor, r_init: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(a, requires_grad=False)  # named like nn.Linear's for PEFT's dtype checks
        self.mix = nn.Parameter(r_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.weight), self.mix)

    def folded(self) -> nn.Linear:
        """The equivalent plain projection R A."""
        lin = nn.Linear(self.weight.shape[1], self.mix.shape[0], bias=False,
                        device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            lin.weight.copy_(self.mix @ self.weight)
        return lin
