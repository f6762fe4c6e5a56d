"""MiLoRA (Wang et al. 2024, "MiLoRA: Harnessing Minor Singular Components for Parameter-Efficient LLM
Finetuning", arXiv:2406.09044).

PiSSA's construction on the other end of the spectrum: the adapter starts from the r SMALLEST singular triplets
and the principal part stays frozen.

    W = U S Vᵀ (thin SVD, min(d_out, d_in) triplets, S descending),
    B = U_[-r:] (S_[-r:]/s)^{1/2},   A = (S_[-r:]/s)^{1/2} V_[-r:]ᵀ,   W_res = W − s·B A,   s = α/r

so s·B A = U_[-r:] S_[-r:] V_[-r:]ᵀ (the r minor components) and W_res + s·B A = W at step 0.

PEFT has no MiLoRA init; this is lorabench's own code, run after PEFT injects plain LoRA layers. Decisions:

- Dividing S by s follows the authors' code (github.com/deondou/reproduce_lora, ``svd_init.py``), which runs
  with α = r (s = 1) but divides by s so that α ≠ r keeps s·B A the minor part; the paper's formulas are the
  α = r case. The adapter's effective update therefore does not depend on α, as with PiSSA here.
- "Minor" means the r smallest of the min(d_out, d_in) singular values of the thin SVD; for a non-square W
  the null space beyond them (singular value 0) is not used, as in the authors' code.
- Exact SVD in float32 (no randomised option: the smallest triplets are what a randomised SVD gets worst);
  W_res is formed in float32 and stored in the base weight's dtype.
- The saved adapter (PEFT format) applies to W_res, not to W, as for PiSSA here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from .base import ADAPTER, Calibration, Choice, Method
from .registry import register

if TYPE_CHECKING:
    import torch
    from peft import PeftModel


def minor_factors(w: torch.Tensor, r: int, s: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) with s·B A = the r minor singular components of ``w``, in float32."""
    import torch

    u, sv, vh = torch.linalg.svd(w.detach().float(), full_matrices=False)
    root = (sv[-r:] / s).sqrt()
    return root[:, None] * vh[-r:], u[:, -r:] * root


@register
class MiLora(Method):
    name = "milora"
    summary = "MiLoRA: A, B from the r smallest singular triplets of W, principal part frozen"
    paper = "Wang et al. 2024, arXiv:2406.09044"
    residual = True
    choices = (Choice("init", "the r smallest triplets, S divided by s; W_res = W − s·B A", "authors' code",
                      "the paper's formulas are the α = r case; PEFT has no MiLoRA"),
               Choice("SVD", "exact, float32", "lorabench", "the study's code: exact SVD as well"))

    def initialise(self, model: PeftModel, opts: BaseModel, calibration: Calibration | None) -> None:
        from .layers import base_weight, lora_layers, set_with_residual

        for _, layer in lora_layers(model):
            a, b = minor_factors(base_weight(layer), layer.r[ADAPTER], layer.scaling[ADAPTER])
            set_with_residual(layer, a, b)
