"""DoRA (Liu et al. 2024, "DoRA: Weight-Decomposed Low-Rank Adaptation", arXiv:2402.09353).

    W' = m ⊙ (W + s·B A) / ‖W + s·B A‖,   s = α/r,   m initialised to ‖W‖ and trained with A and B

B = 0 and A Kaiming-uniform as in LoRA, so W' = W at step 0. Built on PEFT's ``use_dora=True``.

Which norm: the paper's ‖·‖_c is "the norm of each column" of its W ∈ R^{d×k}, which the paper lays out as
in_features × out_features (the authors, github.com/nbasyl/DoRA issue #1): one magnitude per OUTPUT unit. In
PEFT's (and torch's) out × in layout that is the norm of each ROW, over the input dimension:
m_i = ‖W_{i,:}‖₂, m ∈ R^{d_out}, stored in ``layer.lora_magnitude_vector["default"].weight``. PEFT and the
authors' code agree; kept.

PEFT, kept: ‖W + s·B A‖ is recomputed at each forward but detached from the graph (the paper's Sec. 4.3
memory saving), so gradients treat it as a constant; the value of the forward is the formula above. With
lora dropout, PEFT's forward is W x + (m/‖·‖ − 1) ⊙ W d(x) + (m/‖·‖) ⊙ s·B A d(x) (d = dropout, the authors'
form); without dropout, and in eval, that is the formula above. A layer's bias is added once, unscaled.
"""

from typing import Any

from pydantic import BaseModel

from .base import Choice, Fusion, Method
from .registry import register


@register
class Dora(Method):
    name = "dora"
    summary = "DoRA: W' = m ⊙ (W + s·B A)/‖W + s·B A‖ (row norms), magnitude m trained"
    paper = "Liu et al. 2024, arXiv:2402.09353"
    fusion = Fusion.OWN_MODULE
    lr_note = ("λ_max of lora_A and lora_B with the magnitude m held at its init (the study's block; hessian_config.magnitude adds m), though m trains at the same rate")
    choices = (Choice("magnitude", "m = row norms of W (one per output unit), trained", "paper, authors, PEFT"),
               Choice("norm gradient", "‖W + s·B A‖ detached in backward", "PEFT, the paper's Sec. 4.3"),
               Choice("Hessian block", "lora_A and lora_B (m held fixed)", "the study's Hessian script",
                      "hessian magnitude: true adds m"))

    def lora_kwargs(self, opts: BaseModel) -> dict[str, Any]:
        return {"use_dora": True}
