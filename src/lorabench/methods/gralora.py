"""GraLoRA (Jung et al. 2025, "GraLoRA: Granular Low-Rank Adaptation for Parameter-Efficient Fine-Tuning",
arXiv:2505.20355).

W (d_out × d_in) is split into k × k blocks, each with its own rank-r/k adapter:

    ΔW_{ij} = s · B_{ij} A_{ij},   B_{ij} ∈ R^{(d_out/k) × (r/k)},   A_{ij} ∈ R^{(r/k) × (d_in/k)},   s = α / r

so the trainable count equals LoRA's, Σ r · (d_in + d_out) per layer, while ΔW can reach rank k·r.
Every B starts at 0 (A Kaiming-uniform), so ΔW = 0 at step 0.

Built on PEFT's ``GraloraConfig`` (pure GraLoRA: ``hybrid_r = 0``), with the run's target modules, rank, α,
dropout and ``modules_to_save``. ``gralora_k`` defaults to 2 at every rank, as the "Learning Rate Matters"
study ran it (its ``train.sh``). PEFT's documentation and the paper advise k = 2 for r ≤ 32 and k = 4 for
r ≥ 64; set ``gralora_k: 4`` for that reading at high rank. k must divide the rank and both dimensions of
every targeted layer; otherwise a ConfigError names the option and the layer before anything is injected.
GraLoRA layers are not PEFT LoRA layers: ``lora_layers`` does not see them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from ..errors import ConfigError
from .base import Choice, Fusion, Method, option
from .registry import register

if TYPE_CHECKING:
    from peft import PeftConfig
    from torch import nn


class GraloraOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gralora_k: int = option(2, ge=1, description="blocks per side", source="the study (train.sh: 2 at every rank)",
                            elsewhere="PEFT's docs and the paper advise k = 4 at r ≥ 64")


def check_divisible(model: nn.Module, target_modules: str | list[str], rank: int, k: int) -> None:
    """ConfigError naming ``gralora_k`` unless k divides the rank and every targeted layer's dimensions."""
    from ..models import targeted_linears

    if rank % k:
        raise ConfigError(f"gralora_k: {k} does not divide the rank {rank}")
    for name, linear in targeted_linears(model, target_modules):
        for what, dim in (("in_features", linear.in_features), ("out_features", linear.out_features)):
            if dim % k:
                raise ConfigError(f"gralora_k: {k} does not divide {what} = {dim} of targeted layer {name!r}")


@register
class Gralora(Method):
    name = "gralora"
    summary = "GraLoRA: k×k blocks with rank r/k adapters each; LoRA's parameter count, rank up to k·r"
    paper = "Jung et al. 2025, arXiv:2505.20355"
    Options = GraloraOptions
    fusion = Fusion.OWN_MODULE
    lr_note = ("trains its k×k blocks' A and B with one rate: λ_max of all of them")
    choices = (Choice("hybrid_r", "0 (pure GraLoRA)", "the study, PEFT's GraloraConfig"),)

    def peft_config(self, model: nn.Module, *, rank: int, alpha: float, target_modules: str | list[str],
                    dropout: float, task_type: str, modules_to_save: list[str] | None, opts: BaseModel) -> PeftConfig:
        assert isinstance(opts, GraloraOptions)
        from peft import GraloraConfig

        k = opts.gralora_k
        check_divisible(model, target_modules, rank, k)
        # PEFT annotates alpha as int but takes any real
        return GraloraConfig(r=rank, alpha=alpha,  # type: ignore[arg-type]
                             gralora_k=k, hybrid_r=0, gralora_dropout=dropout,
                             target_modules=target_modules, task_type=task_type, modules_to_save=modules_to_save)
