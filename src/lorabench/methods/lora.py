"""Vanilla LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", arXiv:2106.09685).

    h = W x + s · B A x,   B ∈ R^{m×r}, A ∈ R^{r×n},   s = α / r

B = 0 and A ~ Kaiming-uniform(a = √5), so ΔW = 0 at step 0. PEFT implements it as is.
"""

from .base import Choice, Method
from .registry import register


@register
class Lora(Method):
    name = "lora"
    summary = "LoRA: B = 0, A Kaiming-uniform, ΔW = (α/r)·B·A"
    paper = "Hu et al. 2021, arXiv:2106.09685"
    choices = (Choice("init", "B = 0, A ~ Kaiming-uniform(a = √5)", "PEFT, the studies",
                      "the paper draws A ~ N(0, σ²)"),
               Choice("scale", "s = α / r", "paper, PEFT"))
