"""LoFT (Tastan et al. 2025, arXiv:2505.21289): vanilla LoRA layers trained by the authors' ``LoFTAdamW``, as the
"Learning Rate Matters" study ran it. The update rule, its sources and where it departs from the paper are in
:mod:`lorabench.methods.loft_optimizer`; this module is the method: its options and optimizer groups.

Options: ``loft_eps`` (1e-4) and ``loft_weight_decay`` (1e-2, applied as p ← p − wd·p on each step that moves
p), the authors' defaults, which the study used by passing neither. The run's ``weight_decay`` must stay 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from ..errors import ConfigError
from .base import ADAPTER, Choice, LrRule, Method, option
from .registry import register

if TYPE_CHECKING:
    import torch
    from torch import nn


class LoftOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    loft_eps: float = option(1e-4, gt=0, description="Adam ε", source="authors' default, which the study ran",
                             elsewhere="torch's AdamW and every other method here: 1e-8")
    loft_weight_decay: float = option(1e-2, ge=0, description="decay p ← p − wd·p on each step that moves p",
                                      source="authors' default and form, which the study ran",
                                      elsewhere="decoupled AdamW decays p·(1 − lr·wd); the study's other methods: 0")


@register
class Loft(Method):
    name = "loft"
    summary = "LoFT: AdamW alternating A/B with full-space moments re-projected onto the factors"
    paper = "Tastan et al. 2025, arXiv:2505.21289"
    Options = LoftOptions
    lr_rule = LrRule.APPROXIMATE
    lr_note = ("its optimiser alternates A and B and re-projects Adam's moments, not a per-group step: the "
               "prediction uses λ_max of H and is a heuristic here")
    choices = (Choice("order", "B moves on odd steps, A on even; A processed before B", "authors' code"),
               Choice("re-projection", "m_A ← R m_A, P_A ← Rᵀ P_A R (B: m_B R, R P_B Rᵀ)", "authors' code",
                      "R P Rᵀ (A) / Rᵀ P R (B) keeps the full-space second moment exact"),
               Choice("clipping", "by the projected full gradient, at the run's max_grad_norm", "authors' code, the study",
                      "other methods clip the raw factor gradients"))

    def build_optimizer(self, model: nn.Module, *, lr: float, weight_decay: float,
                        opts: BaseModel) -> torch.optim.Optimizer:
        from .layers import lora_layers
        from .loft_optimizer import LoftAdamW

        assert isinstance(opts, LoftOptions)
        if weight_decay:
            raise ConfigError(f"weight_decay: loft decays its own way (loft_weight_decay = {opts.loft_weight_decay}); "
                              f"set weight_decay to 0 (got {weight_decay})")
        pairs = []
        for _, layer in lora_layers(model):
            a, b = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
            if a.requires_grad and b.requires_grad:
                pairs.append((a, b, float(layer.scaling[ADAPTER])))
        paired = {id(p) for a, b, _ in pairs for p in (a, b)}
        factors = [p for a, b, _ in pairs for p in (a, b)]
        others = [p for p in model.parameters() if p.requires_grad and id(p) not in paired]
        groups = [{"params": ps} for ps in (factors, others) if ps]
        return LoftAdamW(groups, pairs, lr=lr, eps=opts.loft_eps, weight_decay=opts.loft_weight_decay)
