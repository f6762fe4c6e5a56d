"""The contract every method fulfils, and helpers shared by the methods' modules.

A method is a small class: its PEFT config, an optional initialisation pass over the
PEFT LoRA layers after injection, and its optimizer parameter groups. Everything
else (targets, rank, alpha, dropout, the trainer) is common, so methods differ only
where their papers differ.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # the method contract is importable without torch (``lorabench methods`` lists it)
    import torch
    from peft import PeftConfig, PeftModel
    from torch import nn

ADAPTER = "default"


class Calibration(Protocol):
    """Training data for inits that need it (e.g. LoRA-GA's gradient estimate)."""

    def batches(self, n: int) -> Iterator[dict[str, torch.Tensor]]: ...


class Fusion(StrEnum):
    """How a method's adapted layers train fused with other runs of the same method (:mod:`lorabench.fuse`)."""

    SHARED_BASE = "shared_base"  # plain PEFT LoRA layers: W x once over every run's rows, s·B A x per run
    OWN_MODULE = "own_module"  # each run's own module on its rows (DoRA's norm, GraLoRA's blocks, RandLoRA)
    NONE = "none"  # never fused


def option(default: Any, *, description: str, source: str, elsewhere: str = "", **constraints: Any) -> Any:
    """A method option: a pydantic field that also says where its default comes from (``source``) and what
    the paper, the authors' code, PEFT or the studies use instead (``elsewhere``); ``lorabench methods
    --verbose`` and ``docs/methods.md`` list them."""
    return Field(default, description=description, json_schema_extra={"source": source, "elsewhere": elsewhere},
                 **constraints)


@dataclass(frozen=True)
class Choice:
    """A fixed setting of a method (not an option): what lorabench does, on whose authority, and how the
    paper, the authors' code, PEFT or the studies differ."""

    setting: str
    value: str
    source: str
    elsewhere: str = ""


class LrRule(StrEnum):
    """How the learning-rate prediction lr_m = lr_ref · (λ_ref / λ_m)^γ applies to a method
    (:mod:`lorabench.sweep.prediction`)."""

    DIRECT = "direct"  # one AdamW group over the block's A and B (or whatever the block trains): as it stands
    SCALED = "scaled"  # per-parameter rates: λ of S^½ H S^½, S the rates relative to lr (LoRA+)
    APPROXIMATE = "approximate"  # the optimiser is not a plain per-group step (LoFT): λ of H, a heuristic


DIRECT_NOTE = "trains its block's parameters with one rate: the 2/λ argument applies as it stands"


class NoOptions(BaseModel):
    """Options of a method that takes none."""

    model_config = ConfigDict(extra="forbid")


class Method:
    """Base class: vanilla LoRA behaviour that subclasses override where their paper differs."""

    name: ClassVar[str]
    summary: ClassVar[str]
    paper: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    choices: ClassVar[tuple[Choice, ...]] = ()  # fixed settings and their sources, listed with the options
    fusion: ClassVar[Fusion] = Fusion.SHARED_BASE
    residual: ClassVar[bool] = False  # the init moves s·B₀A₀ ≠ 0 out of the frozen weight: W_res = W − s·B₀A₀
    rate_axes: ClassVar[dict[str, str]] = {}  # a second learning-rate sweep axis → the option set to axis / lr
    lr_rule: ClassVar[LrRule] = LrRule.DIRECT
    lr_note: ClassVar[str] = DIRECT_NOTE  # how the λ_max-based rate prediction treats it, in one clause

    def relative_rates(self, opts: BaseModel) -> dict[str, float]:
        """Each trained parameter's learning rate relative to ``lr``, by a substring of its name (default: none
        differs); the Hessian scaled by these is the curvature the optimiser's steps see."""
        return {}

    def lora_kwargs(self, opts: BaseModel) -> dict[str, Any]:
        """Extra ``LoraConfig`` arguments (for example ``init_lora_weights``)."""
        return {}

    def peft_config(self, model: nn.Module, *, rank: int, alpha: float, target_modules: str | list[str],
                    dropout: float, task_type: str, modules_to_save: list[str] | None, opts: BaseModel) -> PeftConfig:
        """The PEFT config to inject (``model`` is the frozen base, for methods whose shape depends on it)."""
        from peft import LoraConfig

        # PEFT annotates lora_alpha as int but takes any real (scaling = lora_alpha / r)
        return LoraConfig(r=rank, lora_alpha=alpha,  # type: ignore[arg-type]
                          target_modules=target_modules, lora_dropout=dropout, task_type=task_type,
                          modules_to_save=modules_to_save, **self.lora_kwargs(opts))

    def initialise(self, model: PeftModel, opts: BaseModel, calibration: Calibration | None) -> None:
        """Adjust the freshly injected adapter in place (default: keep PEFT's init)."""

    def param_groups(self, model: nn.Module, *, lr: float, weight_decay: float,
                     opts: BaseModel) -> list[dict[str, Any]]:
        """One AdamW group holding every trainable parameter."""
        params = [p for p in model.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr, "weight_decay": weight_decay}]

    def build_optimizer(self, model: nn.Module, *, lr: float, weight_decay: float,
                        opts: BaseModel) -> torch.optim.Optimizer:
        import torch

        return torch.optim.AdamW(self.param_groups(model, lr=lr, weight_decay=weight_decay, opts=opts))

    def save_adapter(self, model: PeftModel, path: str) -> None:
        """Save in PEFT format (safetensors), loadable by plain PEFT onto the original base model: a residual
        method's adapter is saved as the rank-2r LoRA s·(B A − B₀A₀) (see :func:`layers.save_residual`)."""
        from .layers import save_residual

        if self.residual:
            save_residual(model, path)
        else:
            model.save_pretrained(path, safe_serialization=True)
