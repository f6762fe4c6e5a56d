"""rsLoRA (Kalajdzievski 2023, "A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA", arXiv:2312.03732).

    h = W x + (α/√r) · B A x,   B = 0, A Kaiming-uniform (as LoRA)

Vanilla LoRA with the rank-stabilised scale γ_r = α/√r instead of α/r, so that the update's size does not
shrink with r. PEFT's ``use_rslora=True`` implements exactly this (``layer.scaling = α/√r``); no deviation.
Note that at the same (r, α) rsLoRA's scale is √r times LoRA's, which sweeps over α must keep in mind.
"""

from typing import Any

from pydantic import BaseModel

from .base import Choice, Method
from .registry import register


@register
class RsLora(Method):
    name = "rslora"
    summary = "rsLoRA: LoRA with scale α/√r instead of α/r"
    paper = "Kalajdzievski 2023, arXiv:2312.03732"
    choices = (Choice("scale", "s = α / √r", "paper, PEFT (use_rslora)"),)

    def lora_kwargs(self, opts: BaseModel) -> dict[str, Any]:
        return {"use_rslora": True}
