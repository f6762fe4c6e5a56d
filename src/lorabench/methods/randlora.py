"""RandLoRA (Albert, Zhang, Saratchandran, Rodriguez-Opazo, van den Hengel, Abbasnejad 2025, "RandLoRA:
Full-rank parameter-efficient fine-tuning of large models", arXiv:2502.00987).

For a layer with d = min(d_in, d_out), D = max(d_in, d_out) and basis rank r, n = ⌈d / r⌉ frozen random
bases B_i ∈ R^{D×r} (one set shared by all layers, sliced to size) and one shared A ∈ R^{r×d} give

    ΔW = s · Σ_{i=1..n} B_i Λ_i A Γ_i,   Λ_i = diag(λ_i) ∈ R^{r×r},   Γ_i = diag(γ_i) ∈ R^{d×d}

(transposed when d_out < d_in), a full-rank update. Only λ (r × n) and γ (n × d) train: n·(r + d) per layer.
λ = 0 at init, so ΔW = 0 at step 0. Built on PEFT's ``RandLoraConfig`` (dense Kaiming bases, normalised to
unit std; the run's target modules, dropout and ``modules_to_save``).

Choice of r. RandLoRA's count falls as r grows (fewer bases), unlike LoRA's. With ``randlora_r`` unset, r is
the basis rank whose count, Σ_layers ⌈d/r⌉ (r + d), is closest to LoRA's at the run's rank,
Σ_layers rank · (d_in + d_out), over r = 1 … max d (ties: the larger r, fewer bases, faster); if even that
one is more than 5 % away, ConfigError asks for an explicit ``randlora_r``. The count is computed from
PEFT's layer shapes by formula, with no model built.

Scale. ΔW carries s = ``randlora_alpha`` / r, PEFT's and the authors' form. RandLoRA's α does not share
LoRA's meaning (its update passes through unit-std random bases and γ), so the run's α is not used.
``randlora_alpha`` defaults to 640, what the "Learning Rate Matters" study ran (its ``train.sh``; s = 320 at
its r = 2), whatever the rank. PEFT documents randlora_alpha = 20·r ("typically 20 times the rank", s = 20),
and the study's own parameter-count script uses that ratio; the study's training runs did not.
"""

from __future__ import annotations

import math

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from ..errors import ConfigError
from .base import Choice, Fusion, Method, option
from .registry import register

if TYPE_CHECKING:
    from peft import PeftConfig
    from torch import nn

TOLERANCE = 0.05


class RandLoraOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    randlora_r: int | None = option(None, ge=1, description="random-basis rank; None: match LoRA's trainable count",
                                    source="the study (ranks chosen to match LoRA's count, count_randlora.py)")
    randlora_alpha: float = option(640.0, gt=0, description="scale numerator, s = randlora_alpha / r",
                                   source="the study (train.sh)",
                                   elsewhere="PEFT's docs: 20·r (s = 20), as the study's count script")


def layer_dims(model: nn.Module, target_modules: str | list[str]) -> list[tuple[int, int]]:
    """(d_in, d_out) of every targeted linear layer."""
    from ..models import targeted_linears

    return [(lin.in_features, lin.out_features) for _, lin in targeted_linears(model, target_modules)]


def lora_count(dims: list[tuple[int, int]], rank: int) -> int:
    return sum(rank * (d_in + d_out) for d_in, d_out in dims)


def randlora_count(dims: list[tuple[int, int]], r: int) -> int:
    """Trainable parameters of PEFT's RandLoRA: λ (r × n) and γ (n × d) per layer, n = ⌈d / r⌉."""
    total = 0
    for d_in, d_out in dims:
        d = min(d_in, d_out)
        total += math.ceil(d / r) * (r + d)
    return total


def matching_r(dims: list[tuple[int, int]], rank: int) -> int:
    """The basis rank whose RandLoRA count is closest to LoRA's at ``rank`` (within 5 %)."""
    target = lora_count(dims, rank)
    best = min(range(1, max(min(d) for d in dims) + 1),
               key=lambda r: (abs(randlora_count(dims, r) - target), -r))
    err = abs(randlora_count(dims, best) - target) / target
    if err > TOLERANCE:
        raise ConfigError(f"randlora_r: no basis rank matches LoRA's {target} trainable parameters at rank {rank} "
                          f"within 5% (closest: r = {best}, {randlora_count(dims, best)}); set randlora_r")
    return best


@register
class RandLora(Method):
    name = "randlora"
    summary = "RandLoRA: full-rank ΔW from frozen random bases, trained diagonal scales; LoRA's count by default"
    paper = "Albert et al. 2025, arXiv:2502.00987"
    Options = RandLoraOptions
    fusion = Fusion.OWN_MODULE
    lr_note = ("trains the diagonal scales λ and γ between frozen random bases: λ_max of those")
    choices = (Choice("bases", "PEFT's dense Kaiming bases, unit std, shared across layers", "PEFT"),)

    def peft_config(self, model: nn.Module, *, rank: int, alpha: float, target_modules: str | list[str],
                    dropout: float, task_type: str, modules_to_save: list[str] | None, opts: BaseModel) -> PeftConfig:
        from peft import RandLoraConfig

        assert isinstance(opts, RandLoraOptions)
        r = opts.randlora_r or matching_r(layer_dims(model, target_modules), rank)
        # PEFT annotates randlora_alpha as int but takes any real
        return RandLoraConfig(r=r, randlora_alpha=opts.randlora_alpha,  # type: ignore[arg-type]
                              randlora_dropout=dropout, target_modules=target_modules,
                              task_type=task_type, modules_to_save=modules_to_save)
