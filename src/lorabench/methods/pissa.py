"""PiSSA (Meng, Wang, Zhang 2024, "PiSSA: Principal Singular Values and Singular Vectors Adaptation",
arXiv:2404.02948).

    W = U S Vᵀ,   B = U_r (S_r/s)^{1/2},   A = (S_r/s)^{1/2} V_rᵀ,   W_res = W − s·B A

so s·B A is the best rank-r approximation of W (Eckart–Young) and W_res + s·B A = W at step 0.
The singular values are split evenly between the factors and divided by s, as PEFT does, so the
adapter's effective update does not depend on α. ``pissa_niter`` switches to PEFT's randomised SVD
with that many subspace iterations (fast on large models; exact SVD when unset).
"""

from typing import Any

from pydantic import BaseModel, ConfigDict

from .base import Choice, Method, option
from .registry import register


class PissaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pissa_niter: int | None = option(None, ge=1, description="randomised-SVD iterations; exact SVD when unset",
                                     source="PEFT's init 'pissa' (exact SVD)",
                                     elsewhere="the study ran pissa_niter_16, which approximates the exact SVD")


@register
class Pissa(Method):
    name = "pissa"
    summary = "PiSSA: A, B from the top-r singular triplets of W, frozen residual"
    paper = "Meng et al. 2024, arXiv:2404.02948"
    residual = True
    choices = (Choice("init", "B = U_r (S_r/s)^½, A = (S_r/s)^½ V_rᵀ; W_res = W − s·B A", "paper, PEFT"),)
    Options = PissaOptions

    def lora_kwargs(self, opts: BaseModel) -> dict[str, Any]:
        assert isinstance(opts, PissaOptions)
        return {"init_lora_weights": "pissa" if opts.pissa_niter is None else f"pissa_niter_{opts.pissa_niter}"}
