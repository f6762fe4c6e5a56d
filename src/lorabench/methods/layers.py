"""Helpers over PEFT's LoRA layers shared by the methods' modules: finding them, residual inits, saving.

A residual init (PiSSA, MiLoRA, OLoRA, Init[AB], LoRA-GA) starts from A₀, B₀ with s·B₀A₀ ≠ 0 and trains
on the frozen W_res = W − s·B₀A₀. Its trained model is W_res + s·B A = W + s·(B A − B₀A₀), a rank-2r
update of the original W:

    B' = [B, −B₀],   A' = [A; A₀],   r' = 2r,   α' = 2α   (so s' = α'/r' = s)

which :func:`save_residual` writes as a plain PEFT LoRA adapter (``init_lora_weights = True``), the
conversion PEFT itself applies to PiSSA/OLoRA adapters. PEFT then loads it onto the unmodified base.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file
from torch import nn

from .base import ADAPTER

if TYPE_CHECKING:
    from peft import LoraConfig

INIT_FACTORS = "lorabench_init_factors"  # attribute of a PeftModel: layer name → (A₀, B₀) of a residual init


def lora_layers(model: nn.Module) -> Iterator[tuple[str, Any]]:
    """The PEFT LoRA layers of ``model`` that carry the lorabench adapter.

    Typed ``Any``: PEFT's layers are dynamically typed (``lora_A[...]`` and friends are nn.Module attributes).
    """
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and ADAPTER in module.lora_A:
            yield name, module


def base_weight(layer: Any) -> torch.Tensor:  # a PEFT LoraLayer (dynamically typed)
    """The frozen base weight W (out x in) of a LoRA layer, as stored."""
    return layer.get_base_layer().weight


def set_with_residual(layer: Any, a: torch.Tensor, b: torch.Tensor) -> None:
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


def remember_init(model: PeftModel) -> None:
    """Keep a copy of every layer's A₀, B₀ (right after a residual init) for :func:`save_residual`."""
    setattr(model, INIT_FACTORS, {name: (layer.lora_A[ADAPTER].weight.detach().clone(),
                                         layer.lora_B[ADAPTER].weight.detach().clone())
                                  for name, layer in lora_layers(model)})


def save_residual(model: PeftModel, path: str) -> None:
    """Save a residual method's trained adapter as the rank-2r PEFT LoRA adapter on the original W (see above)."""
    init: dict[str, tuple[torch.Tensor, torch.Tensor]] = getattr(model, INIT_FACTORS)
    state = get_peft_model_state_dict(model, adapter_name=ADAPTER)
    for name, layer in lora_layers(model):
        a0, b0 = init[name]
        a, b = layer.lora_A[ADAPTER].weight.detach(), layer.lora_B[ADAPTER].weight.detach()
        state[f"{name}.lora_A.weight"] = torch.cat([a, a0.to(a.dtype)], dim=0).contiguous()
        state[f"{name}.lora_B.weight"] = torch.cat([b, -b0.to(b.dtype)], dim=1).contiguous()
    config = cast("LoraConfig", copy.deepcopy(model.peft_config[ADAPTER]))  # residual methods are LoRA
    config.r, config.lora_alpha, config.init_lora_weights = 2 * config.r, 2 * config.lora_alpha, True
    config.rank_pattern = {k: 2 * v for k, v in (config.rank_pattern or {}).items()}
    config.alpha_pattern = {k: 2 * v for k, v in (config.alpha_pattern or {}).items()}
    if hasattr(config, "lora_ga_config"):
        config.lora_ga_config = None
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.cpu() for k, v in state.items()}, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(str(out))
    (out / "RESIDUAL.json").write_text(json.dumps({"note": "rank-2r adapter s·(B A − B0 A0) on the original base "
                                                           "weights; load it with plain PEFT"}) + "\n")
