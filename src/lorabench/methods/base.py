"""The contract every method fulfils, and helpers shared by the methods' modules.

A method is a small class: its PEFT config, an optional initialisation pass over the
PEFT LoRA layers after injection, and its optimizer parameter groups. Everything
else (targets, rank, alpha, dropout, the trainer) is common, so methods differ only
where their papers differ.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from peft import LoraConfig, PeftConfig, PeftModel
from peft.tuners.lora import LoraLayer
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

ADAPTER = "default"


class Calibration(Protocol):
    """Training data for inits that need it (e.g. LoRA-GA's gradient estimate)."""

    def batches(self, n: int) -> Iterator[dict[str, torch.Tensor]]: ...


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

    def lora_kwargs(self, opts: BaseModel) -> dict[str, Any]:
        """Extra ``LoraConfig`` arguments (for example ``init_lora_weights``)."""
        return {}

    def peft_config(self, model: nn.Module, *, rank: int, alpha: float, target_modules: str | list[str],
                    dropout: float, task_type: str, modules_to_save: list[str] | None, opts: BaseModel) -> PeftConfig:
        """The PEFT config to inject (``model`` is the frozen base, for methods whose shape depends on it)."""
        return LoraConfig(r=rank, lora_alpha=alpha, target_modules=target_modules, lora_dropout=dropout,
                          task_type=task_type, modules_to_save=modules_to_save, **self.lora_kwargs(opts))

    def initialise(self, model: PeftModel, opts: BaseModel, calibration: Calibration | None) -> None:
        """Adjust the freshly injected adapter in place (default: keep PEFT's init)."""

    def param_groups(self, model: nn.Module, *, lr: float, weight_decay: float,
                     opts: BaseModel) -> list[dict[str, Any]]:
        """One AdamW group holding every trainable parameter."""
        params = [p for p in model.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr, "weight_decay": weight_decay}]

    def build_optimizer(self, model: nn.Module, *, lr: float, weight_decay: float,
                        opts: BaseModel) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.param_groups(model, lr=lr, weight_decay=weight_decay, opts=opts))

    def save_adapter(self, model: PeftModel, path: str) -> None:
        """Save in PEFT format (safetensors)."""
        model.save_pretrained(path, safe_serialization=True)


def lora_layers(model: nn.Module) -> Iterator[tuple[str, LoraLayer]]:
    """The PEFT LoRA layers of ``model`` that carry the lorabench adapter."""
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and ADAPTER in module.lora_A:
            yield name, module


def base_weight(layer: LoraLayer) -> torch.Tensor:
    """The frozen base weight W (out x in) of a LoRA layer, as stored."""
    return layer.get_base_layer().weight


def set_with_residual(layer: LoraLayer, a: torch.Tensor, b: torch.Tensor) -> None:
    """Set the adapter to A = ``a``, B = ``b`` and freeze W_res = W − s·B A in W's dtype, so W_res + s·B A = W.

    For inits whose s·B A is not zero (MiLoRA, Init[AB]); the residual is formed in float32.
    """
    lora_a, lora_b = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
    w = base_weight(layer)
    with torch.no_grad():
        lora_a.copy_(a)
        lora_b.copy_(b)
        delta = layer.scaling[ADAPTER] * (lora_b.float() @ lora_a.float())
        w.copy_((w.float() - delta.to(w.device)).to(w.dtype))
