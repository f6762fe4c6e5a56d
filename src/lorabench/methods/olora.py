"""OLoRA (Büyükakyüz 2024, "OLoRA: Orthonormal Low-Rank Adaptation of Large Language Models", arXiv:2406.01775).

    W = Q R (reduced QR of W ∈ R^{d_out×d_in}),   B = Q_r = Q[:, :r],   A = R_r = R[:r, :],
    W_res = W − s·B A,   s = α/r

B has orthonormal columns and A is upper trapezoidal; since R = Qᵀ W, s·B A = s·Q_r Q_rᵀ W, the projection of
W onto the span of its first r columns, times s. W_res + s·B A = W, so the output is unchanged at step 0.

PEFT's ``init_lora_weights="olora"`` (contributed by the paper's author) does exactly this: QR in float32, the
residual written back in the base weight's dtype. Decision: follow PEFT. The paper writes the adapted weight
as W + Q_r R_r (the s = 1 case); PEFT, and lorabench, keep the run's s = α/r both in the forward and in the
compensation. Unlike PiSSA/MiLoRA the factors are not divided by s, so the size of the frozen part moved
into the adapter, s·Q_r R_r, grows with α (the output at step 0 does not). The saved adapter (PEFT format)
applies to W_res, not to W, as for PiSSA here.
"""

from typing import Any

from pydantic import BaseModel

from .base import Choice, Method
from .registry import register


@register
class Olora(Method):
    name = "olora"
    summary = "OLoRA: B = Q_r, A = R_r from the QR of W, frozen residual"
    paper = "Büyükakyüz 2024, arXiv:2406.01775"
    residual = True
    choices = (Choice("init", "B = Q_r, A = R_r of W = Q R; W_res = W − s·B A", "PEFT (by the paper's author)",
                      "the paper writes W + Q_r R_r (s = 1); PEFT and lorabench keep s = α/r"),)

    def lora_kwargs(self, opts: BaseModel) -> dict[str, Any]:
        return {"init_lora_weights": "olora"}
