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

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ..errors import ConfigError
from .base import ADAPTER, Calibration, Choice, Method, option
from .registry import register

if TYPE_CHECKING:
    from peft import PeftModel


class LoraGAOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lora_ga_samples: int = option(32, ge=1, description="training examples for the gradient estimate",
                                  source="the study's init_loraga.py (grad_num_samples)")


@register
class LoraGA(Method):
    name = "lora_ga"
    summary = "LoRA-GA: A, B from the SVD of the estimated full gradient, stable scale, W_res = W − s·B·A"
    paper = "Wang et al. 2024, arXiv:2407.05000"
    residual = True
    Options = LoraGAOptions
    choices = (Choice("split", "A = top-r right, B = next-r left singular vectors (ArB2r)", "paper, PEFT"),
               Choice("scale", "both factors × d_out^¼ / √γ, γ = 16", "paper, reference code",
                      "PEFT 0.21 scales B only, by S[r:2r]"),
               Choice("gradient", "dropout-free training loss, token-weighted, the run's first examples",
                      "lorabench (the run's own objective)", "PEFT averages per backward call"),
               Choice("SVD", "exact, float32", "lorabench", "reference code: svd_lowrank(q = 4r, niter = 4)"))

    def lora_kwargs(self, opts: BaseModel) -> dict[str, Any]:
        from peft.tuners.lora import LoraGAConfig

        from .lora_ga_gradient import STABLE_GAMMA

        return {"init_lora_weights": "lora_ga",
                "lora_ga_config": LoraGAConfig(direction="ArB2r", scale="stable", stable_gamma=STABLE_GAMMA)}

    def initialise(self, model: PeftModel, opts: BaseModel, calibration: Calibration | None) -> None:
        from . import lora_ga_gradient as gradient
        from .layers import base_weight, lora_layers

        assert isinstance(opts, LoraGAOptions)
        if calibration is None:
            raise ConfigError("lora_ga: needs training batches (calibration) to estimate the gradient")
        layers = list(lora_layers(model))
        for name, layer in layers:
            r, (m, n) = layer.r[ADAPTER], base_weight(layer).shape
            if 2 * r > min(m, n):
                raise ConfigError(f"rank: lora_ga needs 2·rank <= {min(m, n)}, the smaller dimension of targeted "
                                  f"layer {name.removeprefix('base_model.model.')!r} (got rank {r})")
        grads = gradient.estimate_gradients(model, calibration, opts.lora_ga_samples)
        for name, layer in layers:
            gradient.init_from_gradient(layer, grads.pop(name))
