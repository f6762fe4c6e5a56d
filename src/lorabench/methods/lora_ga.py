"""LoRA-GA (Wang, Yu, Li 2024, "LoRA-GA: Low-Rank Adaptation with Gradient Approximation", arXiv:2407.05000).

    G = ∇_W L(W)   (estimated on ``lora_ga_samples`` training examples),   G = U S Vᵀ
    A = c · V[:, :r]ᵀ,   B = c · U[:, r:2r],   c = d_out^{1/4} / √γ   (the paper's "stable" scale, γ = 16)
    W_res = W − s · B A,   s = α / r

so W_res + s·B A = W and the output is unchanged at step 0, while the first step of (A, B) moves
s·B A along the top-2r singular directions of the full gradient (A takes the top r right singular
vectors, B the next r left ones: the paper's and PEFT's default "ArB2r" split).

The gradient is that of lorabench's training loss: Σ over the calibration micro-batches of
``loss_sum`` divided by the total ``loss_tokens`` (the mean over predicted tokens, or examples, of
the whole calibration set), taken on the base model (adapter disabled), in train mode as in PEFT
and the reference code, on the run's first training examples in the run's order. The base's dropout is
as training has it: ``prepare`` silences it before the adapter is injected (unless ``base_dropout``),
so the estimate is the gradient of the very objective the run minimises, free of any dropout mask. It is accumulated in float32 as Σ gᵀx from each targeted layer's input x
and output gradient g, whatever the model's dtype.

Deliberate deviations from PEFT 0.21.2 (``init_lora_weights="lora_ga"``):

- PEFT expects the gradient on ``base_layer._peft_loraga_grad``, filled by ``preprocess_loraga``
  *before* ``get_peft_model``, and averages it over the number of backward calls. lorabench only
  has the data after injection (``initialise``) and normalises by loss tokens, so the gradient is
  estimated here; injection records ``init_lora_weights="lora_ga"`` (PEFT then falls back to its
  default init, B = 0, which this init overwrites) so that the saved config names the method.
- PEFT's "stable" scale multiplies B by the gradient's singular values S[r:2r] and scales B only;
  the paper (Algorithm 1) and its reference code (Outsider565/LoRA-GA) scale both factors by
  d_out^{1/4}/√γ and use no singular values. The paper's version is implemented.
- Exact SVD (``torch.linalg.svd``, float32) instead of the reference's ``svd_lowrank(q=4r, niter=4)``:
  deterministic, and exact on the top-2r directions. 2·rank must not exceed any targeted layer's
  smaller dimension.

Like PiSSA, the saved adapter applies to W_res, not to W.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from peft import PeftModel
from peft.tuners.lora import LoraGAConfig, LoraLayer
from pydantic import BaseModel, ConfigDict
from torch import nn

from ..errors import ConfigError
from .base import ADAPTER, Calibration, Choice, Method, base_weight, lora_layers, option
from .registry import register

STABLE_GAMMA = 16


class LoraGAOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lora_ga_samples: int = option(32, ge=1, description="training examples for the gradient estimate",
                                  source="the study's init_loraga.py (grad_num_samples)")


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
    from ..adapters import is_classifier
    from ..train import loss_sum, loss_tokens

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


@register
class LoraGA(Method):
    name = "lora_ga"
    summary = "LoRA-GA: A, B from the SVD of the estimated full gradient, stable scale, W_res = W − s·B·A"
    paper = "Wang et al. 2024, arXiv:2407.05000"
    Options = LoraGAOptions
    choices = (Choice("split", "A = top-r right, B = next-r left singular vectors (ArB2r)", "paper, PEFT"),
               Choice("scale", "both factors × d_out^¼ / √γ, γ = 16", "paper, reference code",
                      "PEFT 0.21 scales B only, by S[r:2r]"),
               Choice("gradient", "dropout-free training loss, token-weighted, the run's first examples",
                      "lorabench (the run's own objective)", "PEFT averages per backward call"),
               Choice("SVD", "exact, float32", "lorabench", "reference code: svd_lowrank(q = 4r, niter = 4)"))

    def lora_kwargs(self, opts: BaseModel) -> dict[str, Any]:
        return {"init_lora_weights": "lora_ga",
                "lora_ga_config": LoraGAConfig(direction="ArB2r", scale="stable", stable_gamma=STABLE_GAMMA)}

    def initialise(self, model: PeftModel, opts: BaseModel, calibration: Calibration | None) -> None:
        assert isinstance(opts, LoraGAOptions)
        if calibration is None:
            raise ConfigError("lora_ga: needs training batches (calibration) to estimate the gradient")
        layers = list(lora_layers(model))
        for name, layer in layers:
            r, (m, n) = layer.r[ADAPTER], base_weight(layer).shape
            if 2 * r > min(m, n):
                raise ConfigError(f"rank: lora_ga needs 2·rank <= {min(m, n)}, the smaller dimension of targeted "
                                  f"layer {name.removeprefix('base_model.model.')!r} (got rank {r})")
        grads = estimate_gradients(model, calibration, opts.lora_ga_samples)
        for name, layer in layers:
            init_from_gradient(layer, grads.pop(name))


@torch.no_grad()
def init_from_gradient(layer: LoraLayer, grad: torch.Tensor) -> None:
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
