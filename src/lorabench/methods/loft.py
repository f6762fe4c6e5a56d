"""LoFT (Tastan, Laskaridis, Takáč, Nandakumar, Horváth 2025, "LoFT: Low-Rank Adaptation That Behaves Like
Full Fine-Tuning", arXiv:2505.21289, ICLR 2026): vanilla LoRA layers, trained by an AdamW variant whose
moments live in the full weight space, projected onto the current factors.

What is implemented (``LoftAdamW``; checked against the authors' code, github.com/tnurbek/loft,
``loft_optim/optimizer.py`` and ``optim_helper.py``). ΔW = s·B A with B ∈ R^{m×r}, A ∈ R^{r×n}, s = α/r.
The factor seen by the other one carries s, B̃ = s·B and Ã = s·A (the authors assume α = r, s = 1; with
this convention W's update does not depend on α, as the paper claims). With G = ∂L/∂W:

1. Alternating updates: one factor per optimizer step, B on odd steps (1, 3, 5, …) and A on even steps,
   as in the authors' code ("update B first as it is usually initialized to zero"). Both factors'
   moments are updated every step; only the chosen factor moves.
2. Gradient rescaling: ĝ_A = S_A ∇_A L with S_A = (B̃ᵀB̃ + 1e-6·I)⁻¹, and ĝ_B = ∇_B L · S_B with
   S_B = (ÃÃᵀ + 1e-8·I)⁻¹, so B̃ ĝ_A = P_B G and ĝ_B Ã = G P_A are the projected full gradients.
3. Moments: m_A, m_B (Adam's first moment, in factor coordinates) and, for the second moment, per
   column j of A the r×r EMA P_A[j] of ĝ_A[:, j] ĝ_A[:, j]ᵀ (per row i of B likewise, P_B[i]), so that
   the full-space second moment is exact for the current factors: v[i, j] = b̃_iᵀ P_A[j] b̃_i.
4. Update of A (B likewise): U = (B̃ m_A / bc1) / (√(v / bc2) + ε), a full-space Adam step;
   A ← A·(1 − lr·wd) − lr · S_A B̃ᵀ U, so W moves by −lr·P_B U.
5. Moment re-projection (optimizer-state calibration) when a factor changes: after B moves from B_old to
   B_new, A's moments are re-expressed on B_new: R = S_A(B_new) B̃_newᵀ B̃_old, m_A ← R m_A,
   P_A[j] ← R P_A[j] Rᵀ (after A moves: R = Ã_old Ã_newᵀ S_B(A_new), m_B ← m_B R, P_B[i] ← Rᵀ P_B[i] R).
   All state is float32; the r×r Gram matrices are formed and inverted in float64 with the regularisers
   above (entries of the inverses ≤ 1/1e-8), so moments stay finite even when a factor is rank-deficient.

Every other trainable parameter (the ``cls`` head) gets plain AdamW (torch's formula) every step.

Deviations and what could not be verified:

- The authors' code applies the second-moment re-projection as Rᵀ P R for A (R P Rᵀ for B), which
  maps the row-products consistently only if R is symmetric; the consistent form above is used.
- Their code re-projects A's state at A's next step and rescales a factor's gradient with the other
  factor after any update earlier in the same step (parameter order dependent); here both gradients
  are rescaled with the factors they were computed at, and re-projection happens right after the update:
  the same quantities without the order dependence.
- Weight decay: their code decays by p ← p − wd·p (no lr); standard decoupled AdamW (p ← p(1 − lr·wd)) here.
- ε = 1e-8 (torch's AdamW default, as every other method here); the authors' default is 1e-4.
- Not implemented: the paper's gradient clipping on the norm of the projected full gradients. lorabench's
  trainer clips the raw factor gradients before ``step`` as for every method.
- The arXiv text itself was not available here. Its six building blocks (alternating updates, gradient scaling,
  first- and second-moment calibration, projected full update, clipping) and the full-rank-limit claim
  (LoFT = AdamW on W; tested) come from the abstract and summaries; the formulas and the B-first order come
  from the authors' code, not from the paper's algorithm box.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from pydantic import BaseModel
from torch import nn

from .base import ADAPTER, Method, lora_layers
from .registry import register

EPS_A_GRAM = 1e-6  # regulariser of B̃ᵀB̃ (the authors' values)
EPS_B_GRAM = 1e-8  # regulariser of ÃÃᵀ


def _inv_gram(x: torch.Tensor, eps: float) -> torch.Tensor:
    """(x xᵀ + eps·I)⁻¹ for x of shape r × k, formed and inverted in float64 (r × r: cheap).

    In float32 eps = 1e-8 is below the rounding of x xᵀ, and a rank-deficient factor makes the matrix singular.
    """
    x64 = x.double()
    gram = x64 @ x64.T + eps * torch.eye(x.shape[0], device=x.device, dtype=torch.float64)
    return torch.linalg.inv(gram).float()


def _full_second_moment(rows: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """v[k, l] = basis[:, l]ᵀ rows[k] basis[:, l] for rows (K, r, r) and basis (r, L); clamped at 0."""
    return (basis.unsqueeze(0) * (rows @ basis)).sum(dim=1).clamp_(min=0)


class LoftAdamW(torch.optim.Optimizer):
    """LoFT for the (A, B, s) ``pairs``; plain AdamW for any other parameter in ``params``."""

    def __init__(self, params: Iterable[Any], pairs: list[tuple[nn.Parameter, nn.Parameter, float]], *,
                 lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.pairs = pairs
        self.steps_taken = 0
        group_of = {id(p): g for g in self.param_groups for p in g["params"]}
        for a, b, _ in pairs:
            if id(a) not in group_of or group_of[id(a)] is not group_of[id(b)]:
                raise ValueError("LoftAdamW: each (A, B) pair must sit in one parameter group")
        self._group_of = group_of
        self._paired = {id(p) for a, b, _ in pairs for p in (a, b)}

    def updates_a(self) -> bool:
        """Whether the next step moves A (even steps) rather than B (odd steps)."""
        return (self.steps_taken + 1) % 2 == 0

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        move_a = self.updates_a()
        self.steps_taken += 1
        for group in self.param_groups:
            for p in group["params"]:
                if id(p) not in self._paired and p.grad is not None:
                    self._adamw(p, group)
        for a, b, s in self.pairs:
            if a.grad is not None and b.grad is not None:
                self._loft(a, b, s, self._group_of[id(a)], move_a)
        return loss

    def _adamw(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if not state:
            state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        beta1, beta2 = group["betas"]
        state["step"] += 1
        grad = p.grad
        state["exp_avg"].lerp_(grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bc1, bc2 = 1 - beta1 ** state["step"], 1 - beta2 ** state["step"]
        p.mul_(1 - group["lr"] * group["weight_decay"])
        denom = (state["exp_avg_sq"].sqrt() / math.sqrt(bc2)).add_(group["eps"])
        p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / bc1)

    def _loft(self, a: nn.Parameter, b: nn.Parameter, s: float, group: dict[str, Any], move_a: bool) -> None:
        beta1, beta2 = group["betas"]
        af, bf = a.detach().float(), b.detach().float()
        at, bt = s * af, s * bf  # Ã (r × n), B̃ (m × r)
        s_a, s_b = _inv_gram(bt.T, EPS_A_GRAM), _inv_gram(at, EPS_B_GRAM)
        g_a = s_a @ a.grad.float()  # r × n
        g_b = b.grad.float() @ s_b  # m × r
        st_a, st_b = self.state[a], self.state[b]
        if not st_a:
            r, (m, n) = af.shape[0], (bf.shape[0], af.shape[1])
            st_a.update(step=0, exp_avg=torch.zeros_like(af), rows=torch.zeros(n, r, r, device=a.device))
            st_b.update(step=0, exp_avg=torch.zeros_like(bf), rows=torch.zeros(m, r, r, device=b.device))
        for st, g in ((st_a, g_a.T), (st_b, g_b)):  # g: one r-vector per column of A / row of B
            st["step"] += 1
            st["rows"].mul_(beta2).baddbmm_(g.unsqueeze(2), g.unsqueeze(1), alpha=1 - beta2)
        st_a["exp_avg"].lerp_(g_a, 1 - beta1)
        st_b["exp_avg"].lerp_(g_b, 1 - beta1)
        st = st_a if move_a else st_b
        bc1, bc2 = 1 - beta1 ** st["step"], 1 - beta2 ** st["step"]
        lr, eps = group["lr"], group["eps"]
        if move_a:
            full = bt @ st_a["exp_avg"]  # m × n: B̃ m_A
            v = _full_second_moment(st_a["rows"], bt.T).T
            step = s_a @ bt.T @ (full / ((v / bc2).sqrt_() + eps))
            new_a = af * (1 - lr * group["weight_decay"]) - (lr / bc1) * step
            a.copy_(new_a)
            new_at = s * a.detach().float()
            new_s_b = _inv_gram(new_at, EPS_B_GRAM)
            rot = at @ new_at.T @ new_s_b  # r × r
            st_b["exp_avg"] = st_b["exp_avg"] @ rot
            st_b["rows"] = rot.T.unsqueeze(0) @ st_b["rows"] @ rot.unsqueeze(0)
        else:
            full = st_b["exp_avg"] @ at  # m × n: m_B Ã
            v = _full_second_moment(st_b["rows"], at)
            step = (full / ((v / bc2).sqrt_() + eps)) @ at.T @ s_b
            new_b = bf * (1 - lr * group["weight_decay"]) - (lr / bc1) * step
            b.copy_(new_b)
            new_bt = s * b.detach().float()
            new_s_a = _inv_gram(new_bt.T, EPS_A_GRAM)
            rot = new_s_a @ new_bt.T @ bt  # r × r
            st_a["exp_avg"] = rot @ st_a["exp_avg"]
            st_a["rows"] = rot.unsqueeze(0) @ st_a["rows"] @ rot.T.unsqueeze(0)


@register
class Loft(Method):
    name = "loft"
    summary = "LoFT: AdamW alternating A/B with full-space moments re-projected onto the factors"
    paper = "Tastan et al. 2025, arXiv:2505.21289"

    def build_optimizer(self, model: nn.Module, *, lr: float, weight_decay: float,
                        opts: BaseModel) -> torch.optim.Optimizer:
        pairs = []
        for _, layer in lora_layers(model):
            a, b = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
            if a.requires_grad and b.requires_grad:
                pairs.append((a, b, float(layer.scaling[ADAPTER])))
        paired = {id(p) for a, b, _ in pairs for p in (a, b)}
        factors = [p for a, b, _ in pairs for p in (a, b)]
        others = [p for p in model.parameters() if p.requires_grad and id(p) not in paired]
        groups = [{"params": ps, "lr": lr, "weight_decay": weight_decay} for ps in (factors, others) if ps]
        return LoftAdamW(groups, pairs, lr=lr, weight_decay=weight_decay)
