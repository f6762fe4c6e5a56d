"""LoRA-XS (Bałazy, Banaei, Aberer, Tabor 2024, "LoRA-XS: Low-Rank Adaptation with Extremely Small Number
of Parameters", arXiv:2405.17604).

    W = U S Vᵀ,   B = U_r (frozen),   A = S_r V_rᵀ (frozen),   ΔW = s · B R A = s · U_r R S_r V_rᵀ,
    R ∈ R^{r×r} trained

R ~ N(0, σ²) with σ = ``lora_xs_init_std`` (1e-5), so ΔW ≈ 0 at step 0 and the base W is kept as is.
The singular values sit on the input side, A = S_r V_rᵀ, as in the authors' code
(github.com/MohammadrezaBanaei/LoRA-XS, which the SST-2 study ran), not on B = U_r S_r as the paper's
ΔW = U_r Σ_r R V_rᵀ reads. The two agree at init (ΔW ≈ 0) but train differently: with G = ∂L/∂W,
R's gradient is s·U_rᵀ G V_r S_r here (columns scaled by the singular values) against s·S_r U_rᵀ G V_r
with S_r on B (rows scaled), so a learning rate means another step for each. The scale s = α/r is kept so that every method
shares one (rank, α); the authors' plain B R A is α = r.

R sits on PEFT's own LoRA layer: ``lora_A`` becomes x ↦ R (A x), which keeps PEFT's forward, dtype
handling and dropout. The saved adapter folds R into A (A' = R A), so it is a plain PEFT LoRA
adapter that PEFT loads without lorabench.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from .base import ADAPTER, Calibration, Choice, Method, option
from .registry import register

if TYPE_CHECKING:
    from peft import PeftModel


class LoraXSOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lora_xs_init_std: float = option(1e-5, ge=0, description="standard deviation of R at init",
                                     source="authors' code (init_module_weights, sigma = 1e-5)")


@register
class LoraXS(Method):
    name = "lora_xs"
    summary = "LoRA-XS: frozen SVD factors B = U_r, A = S_r V_rᵀ; only r×r R trained"
    paper = "Bałazy et al. 2024, arXiv:2405.17604"
    Options = LoraXSOptions
    lr_note = ("trains R (r×r) between frozen SVD factors: λ_max of R's block, the parameters it trains")
    choices = (Choice("factors", "B = U_r, A = S_r V_rᵀ (frozen)", "authors' code",
                      "the paper writes U_r Σ_r R V_rᵀ (S_r on B)"),
               Choice("scale", "s = α / r", "lorabench (one (rank, α) for every method)", "authors: α = r"))

    def initialise(self, model: PeftModel, opts: BaseModel, calibration: Calibration | None) -> None:
        import torch

        from .layers import base_weight, lora_layers
        from .lora_xs_layer import ProjectThenMix

        assert isinstance(opts, LoraXSOptions)
        for _, layer in lora_layers(model):
            r = layer.r[ADAPTER]
            w = base_weight(layer)
            u, s, vh = torch.linalg.svd(w.detach().float(), full_matrices=False)
            lora_b = layer.lora_B[ADAPTER]
            with torch.no_grad():
                lora_b.weight.copy_(u[:, :r])
            lora_b.weight.requires_grad_(False)
            r_init = torch.randn(r, r, device=w.device) * opts.lora_xs_init_std
            dtype = layer.lora_A[ADAPTER].weight.dtype
            layer.lora_A[ADAPTER] = ProjectThenMix((s[:r, None] * vh[:r]).to(dtype), r_init.to(dtype))

    def save_adapter(self, model: PeftModel, path: str) -> None:
        from .layers import lora_layers
        from .lora_xs_layer import ProjectThenMix

        swapped = []
        for _, layer in lora_layers(model):
            xs = layer.lora_A[ADAPTER]
            if isinstance(xs, ProjectThenMix):
                layer.lora_A[ADAPTER] = xs.folded()
                swapped.append((layer, xs))
        try:
            model.save_pretrained(path, safe_serialization=True)
        finally:
            for layer, xs in swapped:
                layer.lora_A[ADAPTER] = xs
        Path(path, "LORA_XS.md").write_text("lora_A holds R·A folded; load it as a plain PEFT LoRA adapter.\n")
