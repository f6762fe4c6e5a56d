"""LoRA+ (Hayou, Ghosh, Yu 2024, "LoRA+: Efficient Low Rank Adaptation of Large Models", arXiv:2402.12354).

Vanilla LoRA's parameterisation with two learning rates:  η_B = λ · η_A,  λ = ``loraplus_ratio``.

Built on PEFT's ``create_loraplus_optimizer``. Decision, following PEFT and the paper's reference code:
every trainable 1-D parameter (biases, e.g. the classifier bias of the ``cls`` head) joins B's group
at λ·η_A; other full matrices (the classifier weight) stay at η_A. Weight decay applies to A, B and
the classifier weight, never to biases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from pydantic import BaseModel, ConfigDict

from .base import Choice, LrRule, Method, option
from .registry import register

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from torch import nn


class LoraPlusOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    loraplus_ratio: float = option(16.0, gt=0, description="η_B / η_A", source="the paper's recommended 2⁴",
                                   elsewhere="the SST-2 study's grid found 4 best; PEFT has no default")


@register
class LoraPlus(Method):
    name = "loraplus"
    summary = "LoRA+: LoRA with η_B = loraplus_ratio · η_A"
    paper = "Hayou et al. 2024, arXiv:2402.12354"
    choices = (Choice("groups", "biases join B's rate; weight decay never on biases", "PEFT, the paper's code"),)
    Options = LoraPlusOptions
    rate_axes = {"lr_b": "loraplus_ratio"}  # a sweep may give η_B directly: loraplus_ratio = lr_b / lr
    lr_rule = LrRule.SCALED
    lr_note = ("two rates: λ_max of S^½ H S^½ with S = 1 on A and loraplus_ratio on B (the step's curvature); "
               "the predicted rate is η_A, and η_B = loraplus_ratio · η_A")

    def relative_rates(self, opts: BaseModel) -> dict[str, float]:
        assert isinstance(opts, LoraPlusOptions)
        return {"lora_B": opts.loraplus_ratio}

    def build_optimizer(self, model: nn.Module, *, lr: float, weight_decay: float,
                        opts: BaseModel) -> torch.optim.Optimizer:
        import torch
        from peft.optimizers import create_loraplus_optimizer

        assert isinstance(opts, LoraPlusOptions)
        opt = create_loraplus_optimizer(cast("PeftModel", model), torch.optim.AdamW, lr=lr,
                                        loraplus_lr_ratio=opts.loraplus_ratio, loraplus_weight_decay=weight_decay)
        # PEFT always creates all four groups; drop the empty ones so that groups map to parameters.
        opt.param_groups = [g for g in opt.param_groups if g["params"]]
        return opt
