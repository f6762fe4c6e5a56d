"""LoRA-GA's machinery (see :mod:`lorabench.methods.lora_ga`): the full-weight gradient of the training loss,
estimated from layer inputs and output gradients, and the init of one layer from its SVD."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from peft import PeftModel
from torch import nn

from ..errors import ConfigError
from ..losses import loss_sum, loss_tokens
from ..models import is_classifier
from .base import ADAPTER, Calibration
from .layers import base_weight, lora_layers

STABLE_GAMMA = 16


@contextmanager
def _output_gradients(layers: dict[str, nn.Linear], grads: dict[str, torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """While active, every backward adds Σ gᵀx (float32) of each layer to ``grads[name]``.

    Each output gets a 0-d zero "anchor" that requires grad, so ``autograd.grad(loss, anchors)`` reaches
    every layer without touching any parameter's ``.grad``.
    """
    anchors, handles = [], []
    for name, linear in layers.items():
        anchor = torch.zeros((), device=linear.weight.device, requires_grad=True)
        anchors.append(anchor)

        def hook(mod: nn.Module, args: tuple[Any, ...], out: torch.Tensor, *, acc: torch.Tensor = grads[name],
                 anchor: torch.Tensor = anchor) -> torch.Tensor:
            x = args[0].detach()

            def accumulate(g: torch.Tensor) -> None:
                acc.addmm_(g.reshape(-1, g.shape[-1]).float().T, x.reshape(-1, x.shape[-1]).float())

            out = out + anchor
            out.register_hook(accumulate)
            return out

        handles.append(linear.register_forward_hook(hook))
    try:
        yield anchors
    finally:
        for h in handles:
            h.remove()


def estimate_gradients(model: PeftModel, calibration: Calibration, n: int) -> dict[str, torch.Tensor]:
    """∇_W of the mean training loss over ``n`` calibration examples for each LoRA layer's base W (float32)."""
    head = "cls" if is_classifier(model.get_base_model()) else "lm"
    layers = {name: layer.get_base_layer() for name, layer in lora_layers(model)}
    grads = {name: torch.zeros(lin.weight.shape, dtype=torch.float32, device=lin.weight.device)
             for name, lin in layers.items()}
    was_training, total = model.training, 0
    model.train()
    try:
        with model.disable_adapter(), _output_gradients(layers, grads) as anchors:
            for batch in calibration.batches(n):
                total += loss_tokens(batch, head)
                torch.autograd.grad(loss_sum(model, batch, head), anchors, allow_unused=True)
    finally:
        model.train(was_training)
    if total == 0:
        raise ConfigError("lora_ga: the calibration batches contain no loss tokens")
    return {name: g / total for name, g in grads.items()}


@torch.no_grad()
def init_from_gradient(layer: Any, grad: torch.Tensor) -> None:  # a PEFT LoraLayer (dynamically typed)
    """Set A, B of one PEFT LoRA layer from its gradient and compensate the base weight."""
    r, s = layer.r[ADAPTER], layer.scaling[ADAPTER]
    lora_a, lora_b = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
    w = base_weight(layer)
    u, _, vh = torch.linalg.svd(grad, full_matrices=False)
    c = w.shape[0] ** 0.25 / STABLE_GAMMA**0.5
    a = (c * vh[:r]).to(lora_a.dtype)
    b = (c * u[:, r : 2 * r]).to(lora_b.dtype)
    lora_a.copy_(a)
    lora_b.copy_(b)
    w.copy_((w.float() - s * (b.float() @ a.float())).to(w.dtype))
