"""LoFT (Tastan, Laskaridis, Takáč, Nandakumar, Horváth 2025, "LoFT: Low-Rank Adaptation That Behaves Like
Full Fine-Tuning", arXiv:2505.21289, ICLR 2026): vanilla LoRA layers, trained by an AdamW variant whose
moments live in the full weight space, projected onto the current factors.

``LoftAdamW`` is the authors' ``LoFTAdamW`` (github.com/tnurbek/loft, ``loft_optim/optimizer.py``,
``optim_helper.py``, ``clipping.py``) as the "Learning Rate Matters" study ran it (its ``run-lora/utils/LoFT``,
built with every flag on and no ε or weight decay passed, so with the authors' defaults). ΔW = s·B A,
B ∈ R^{m×r}, A ∈ R^{r×n}, s = α/r; the factor seen by the other carries s, B̃ = s·B and Ã = s·A (the authors
use the raw factors and assume α = r, where the two agree; with s on the factors W's update does not depend
on α). Per optimizer step, each pair is processed A first, then B (the model's parameter order):

1. Alternation: B moves on odd steps (1, 3, …), A on even steps ("update B first as it is usually
   initialized to zero"). Both factors' moments are updated every step.
2. Rescaling with the *current* other factor: ĝ_A = S_A ∇_A L, S_A = (B̃ᵀB̃ + 1e-6·I)⁻¹, and
   ĝ_B = ∇_B L · S_B, S_B = (ÃÃᵀ + 1e-8·I)⁻¹. When A has just moved in this step, B's gradient (taken at
   the old A) is rescaled with the new A, exactly as in the authors' loop.
3. Re-projection, before the new gradient enters, onto the other factor's change since this factor was
   last processed (Õ_old → Õ): for A, R = S_A B̃ᵀ B̃_old, m_A ← R m_A, P_A[j] ← Rᵀ P_A[j] R; for B,
   R = Ã_old Ãᵀ S_B, m_B ← m_B R, P_B[i] ← R P_B[i] Rᵀ. (The form that keeps v below exact would be
   R P Rᵀ for A and Rᵀ P R for B; the two agree when R is symmetric. The authors' form is kept.)
4. Moments: m ← β₁m + (1−β₁)ĝ; per column j of A the r×r EMA P_A[j] of ĝ_A[:, j]ĝ_A[:, j]ᵀ (per row
   i of B likewise), so that v[i, j] = b̃_iᵀ P_A[j] b̃_i is the full-space second moment.
5. Update of the moving factor: weight decay p ← p − wd·p (the authors' form: no learning rate, applied
   only on the steps that move p), then U = (B̃ m_A) / (√(v / bc₂) + ε) and A ← A − (lr / bc₁)·S_A B̃ᵀ U
   (B ← B − (lr / bc₁)·U Ãᵀ S_B), so W moves by the projected full-space Adam step.
6. Clipping (``clip_grad_norm_``, the authors' ``clipping.py``): the norm is taken over the projected full
   gradients B̃ĝ_A (ĝ_BÃ) of the factors that move this step and the raw gradients of every other
   parameter; every gradient is scaled by min(1, max_norm / (norm + 1e-6)). The study turns the
   trainer's own clipping off for LoFT and clips this way with the run's ``max_grad_norm``; so does
   lorabench.

Every other trainable parameter (the ``cls`` head) gets the authors' plain branch: Adam with the same ε,
decay p ← p − wd·p, every step. Options and where their defaults come from:

- ``loft_eps`` = 1e-4: the authors' default, which the study used (PEFT has no LoFT; torch's AdamW has 1e-8).
  Most full-weight gradient entries of SST-2 + MiniLM are below 1e-4, so ε sets the step size there.
- ``loft_weight_decay`` = 1e-2: the authors' default, applied their way (above). The run's
  ``weight_decay`` (decoupled AdamW form) is not used by LoFT and must stay 0.

Precision: state is float32; the r×r Gram matrices are formed and inverted in float64 (the authors: in
the parameters' dtype), so moments stay finite when a factor is rank-deficient. The arXiv text itself was
not available; the formulas and the order come from the authors' code, not from the paper's algorithm box.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

EPS_A_GRAM = 1e-6  # regulariser of B̃ᵀB̃ (the authors' values)
EPS_B_GRAM = 1e-8  # regulariser of ÃÃᵀ


def _inv_gram(x: torch.Tensor, eps: float) -> torch.Tensor:
    """(x xᵀ + eps·I)⁻¹ for x of shape r × k, formed and inverted in float64 (r × r: cheap)."""
    x64 = x.double()
    gram = x64 @ x64.T + eps * torch.eye(x.shape[0], device=x.device, dtype=torch.float64)
    return torch.linalg.inv(gram).float()


def _full_second_moment(rows: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """v[k, l] = basis[:, l]ᵀ rows[k] basis[:, l] for rows (K, r, r) and basis (r, L); clamped at 0."""
    return (basis.unsqueeze(0) * (rows @ basis)).sum(dim=1).clamp_(min=0)


def _rescaled(grad: torch.Tensor, other: torch.Tensor, is_a: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(ĝ, S): the factor's gradient rescaled by the other factor's inverse Gram matrix (other carries s)."""
    if is_a:
        s_a = _inv_gram(other.T, EPS_A_GRAM)
        return s_a @ grad.float(), s_a
    s_b = _inv_gram(other, EPS_B_GRAM)
    return grad.float() @ s_b, s_b


class LoftAdamW(torch.optim.Optimizer):
    """LoFT for the (A, B, s) ``pairs``; the authors' plain Adam branch for any other parameter in ``params``."""

    def __init__(self, params: Iterable[Any], pairs: list[tuple[nn.Parameter, nn.Parameter, float]], *,
                 lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-4,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.pairs = pairs
        self.steps_taken = 0
        group_of = {id(p): g for g in self.param_groups for p in g["params"]}
        for a, b, _ in pairs:
            if id(a) not in group_of or group_of[id(a)] is not group_of[id(b)]:
                raise ValueError("LoftAdamW: each (A, B) pair must sit in one parameter group")
        self._group_of = group_of
        self._paired = {id(p) for a, b, _ in pairs for p in (a, b)}
        self._old: dict[int, torch.Tensor] = {}  # the other factor (times s) when this one was last processed

    def updates_a(self) -> bool:
        """Whether the next step moves A (even steps) rather than B (odd steps)."""
        return (self.steps_taken + 1) % 2 == 0

    def _others(self) -> Iterable[tuple[nn.Parameter, dict[str, Any]]]:
        for group in self.param_groups:
            for p in group["params"]:
                if id(p) not in self._paired and p.grad is not None:
                    yield p, group

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float | None) -> torch.Tensor:
        """Scale every gradient so that the norm of what this step applies is at most ``max_norm``; returns it."""
        move_a = self.updates_a()
        parts = [p.grad.float().flatten() for p, _ in self._others() if p.grad is not None]
        for a, b, s in self.pairs:
            if a.grad is None or b.grad is None:
                continue
            p, other = (a, s * b.detach().float()) if move_a else (b, s * a.detach().float())
            assert p.grad is not None  # checked above
            g, _ = _rescaled(p.grad, other, move_a)
            parts.append((other @ g if move_a else g @ other).flatten())
        total = torch.linalg.vector_norm(torch.cat(parts)) if parts else torch.tensor(0.0)
        if max_norm is not None:
            coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.mul_(coef.to(p.grad.device))
        return total

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        move_a = self.updates_a()
        self.steps_taken += 1
        for p, group in self._others():
            self._adam(p, group)
        for a, b, s in self.pairs:
            if a.grad is not None and b.grad is not None:
                group = self._group_of[id(a)]
                self._factor(a, b, s, group, is_a=True, move=move_a)
                self._factor(b, a, s, group, is_a=False, move=not move_a)
        return loss

    def _adam(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if not state:
            state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        beta1, beta2 = group["betas"]
        state["step"] += 1
        state["exp_avg"].mul_(beta1).add_(p.grad, alpha=1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        bc1, bc2 = 1 - beta1 ** state["step"], 1 - beta2 ** state["step"]
        p.mul_(1 - group["weight_decay"])
        denom = (state["exp_avg_sq"].sqrt() / math.sqrt(bc2)).add_(group["eps"])
        p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / bc1)

    def _factor(self, p: nn.Parameter, other_p: nn.Parameter, s: float, group: dict[str, Any], *,
                is_a: bool, move: bool) -> None:
        """One factor's share of a step (the authors' per-parameter loop body)."""
        beta1, beta2 = group["betas"]
        other = s * other_p.detach().float()
        assert p.grad is not None  # step() calls this only for pairs whose factors both have a gradient
        g, inv = _rescaled(p.grad, other, is_a)
        st = self.state[p]
        if not st:
            (r, k) = p.shape if is_a else (p.shape[1], p.shape[0])  # k: columns of A / rows of B
            st.update(step=0, exp_avg=torch.zeros(p.shape, device=p.device),
                      rows=torch.zeros(k, r, r, device=p.device))
        old = self._old.get(id(other_p))
        if old is not None:
            if is_a:
                rot = inv @ (other.T @ old)
                st["exp_avg"], st["rows"] = rot @ st["exp_avg"], rot.T.unsqueeze(0) @ st["rows"] @ rot.unsqueeze(0)
            else:
                rot = (old @ other.T) @ inv
                st["exp_avg"], st["rows"] = st["exp_avg"] @ rot, rot.unsqueeze(0) @ st["rows"] @ rot.T.unsqueeze(0)
        self._old[id(other_p)] = other.clone()
        st["step"] += 1
        st["exp_avg"].mul_(beta1).add_(g, alpha=1 - beta1)
        vec = g.T if is_a else g  # one r-vector per column of A / row of B
        st["rows"].mul_(beta2).baddbmm_(vec.unsqueeze(2), vec.unsqueeze(1), alpha=1 - beta2)
        if not move:
            return
        bc1, bc2 = 1 - beta1 ** st["step"], 1 - beta2 ** st["step"]
        new = p.detach().float() * (1 - group["weight_decay"])
        if is_a:
            full = other @ st["exp_avg"]  # m × n
            full /= (_full_second_moment(st["rows"], other.T).T / bc2).sqrt_() + group["eps"]
            new -= (group["lr"] / bc1) * (inv @ (other.T @ full))
        else:
            full = st["exp_avg"] @ other
            full /= (_full_second_moment(st["rows"], other) / bc2).sqrt_() + group["eps"]
            new -= (group["lr"] / bc1) * ((full @ other.T) @ inv)
        p.copy_(new)
