"""The extreme eigenvalues of the training loss's Hessian with respect to the adapter, at initialisation.

Objective. θ are the adapter's trainable parameters right after ``prepare`` (the run's data, model,
seed and init). On the first ``samples`` examples of the run's first epoch (the order training
uses at that seed), split into batches B_k,

    L(θ) = Σ_k loss_sum(B_k; θ) / Σ_k loss_tokens(B_k)

with ``loss_sum`` and ``loss_tokens`` of :mod:`lorabench.train`: the token-weighted mean cross-entropy
over every loss term (predicted tokens for ``lm``, examples for ``cls``), exactly the objective a
training step minimises. It does not depend on how the examples are batched, so batches are formed
in length order (little padding) and reused for every product. The model is in eval mode (no
dropout), in float32, with eager attention (double backward through CPU SDPA fails).

Blocks. A block θ_b is the trainable parameters of one adapted module (e.g. ``lora_A`` and
``lora_B`` of layer 0's ``query``); ``whole`` is every block together (the classification head of a
``cls`` model, trained in full beside the adapter and identical for every method, is held fixed and
not measured). For a block, H_b = ∂²L/∂θ_b² with every other parameter at its init value (a
diagonal block of the full Hessian).

Products. Hv = ∂/∂θ_b (∇_b L · v) (Pearlmutter's trick, by double backward), accumulated over the
batches: each batch adds ∂/∂θ_b (∇_b (loss_sum_k / N) · v) with N the total number of loss terms,
so every term weighs the same whatever its batch. H is symmetric; in float32 vᵀHw and wᵀHv agree to
rounding.

Eigensolver. At init H is indefinite (for LoRA, B = 0 makes ∂²L/∂A² = 0 and the A–B cross block
gives eigenvalues of both signs), so power iteration, which finds the largest |λ|, is not used.
``scipy.sparse.linalg.eigsh`` (ARPACK's implicitly restarted Lanczos) runs on a ``LinearOperator``
whose matvec is one HVP: ``which="LA"`` gives λ_max, ``which="SA"`` λ_min, each from the same
seeded start vector. ARPACK stops when the Ritz pair (λ, x) has ‖Hx − λx‖ ≤ tol·|λ|, which bounds
the eigenvalue's error by tol·|λ| (and typically by (tol·λ)²/gap). A solve that reaches ``maxiter``
HVPs stops there and reports its best estimate with ``converged: false``. Blocks of at most
``DENSE_MAX`` parameters are solved exactly from the dense H built column by column from HVPs.

History. After each HVP, the Rayleigh–Ritz estimate on the span S of every vector H has been
applied to so far (the extreme eigenvalue of QᵀHQ for an orthonormal basis Q of S, updated in
O(n·m) per product from the stored HQ) records how the estimate converged: ``history`` holds one
``[hvp, ritz]`` pair per product. The final ``residual`` ‖Hx − λx‖ (‖x‖ = 1) costs one more HVP.

Defaults: 500 samples; blocks: the whole adapter plus one block, the first adapted module of the
lowest layer (layer 0's ``query`` for MiniLM, ``self_attn.q_proj`` for Llama); tol 1e-3; at most
300 HVPs per eigenvalue.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError
from torch import nn

from . import data as D
from .config import RunConfig
from .errors import ConfigError
from .prepare import Prepared, prepare
from .train import loss_sum, loss_tokens

DENSE_MAX = 20  # blocks this small get the exact dense eigenvalues (n HVPs, no more than one Lanczos cycle)
HISTORY_BYTES = 1 << 30  # memory for the history's basis; beyond it, history entries carry no estimate


class HessianConfig(BaseModel):
    """What to measure and how. Blocks: ``layers`` × ``modules`` (either alone: all of the other);
    neither: one default block, the first adapted module of the lowest layer (e.g. layer 0's query);
    ``layers: []``: no single block. ``whole``: also the whole adapter."""

    model_config = ConfigDict(extra="forbid")
    samples: PositiveInt = Field(500, description="training examples in the loss (the run's first ones)")
    batch_size: PositiveInt = Field(32, description="examples per forward pass")
    tol: float = Field(1e-3, gt=0, lt=1, description="ARPACK's relative tolerance: ‖Hx − λx‖ ≤ tol·|λ|")
    maxiter: PositiveInt = Field(300, description="most HVPs per eigenvalue")
    ncv: int | None = Field(None, ge=3, description="Lanczos vectors per restart (None: ARPACK's 20)")
    layers: list[int] | None = Field(None, description="layer indices of the blocks")
    modules: list[str] | None = Field(None, description="module names (leaf or path within the layer)")
    whole: bool = Field(True, description="also measure the whole adapter")


def hessian_config(raw: dict[str, Any] | None, source: str = "hessian") -> HessianConfig:
    """Validate a mapping; a problem is one ``ConfigError`` line naming the key."""
    try:
        return HessianConfig.model_validate(raw or {})
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise ConfigError(f"{source}: {key}: {msg}") from None


# ----------------------------------------------------------------------------------------------- blocks


@dataclass
class Block:
    name: str  # "layer 0 attention.self.query", or "whole"
    path: str | None  # the module's path in the base model
    layer: int | None
    module: str | None  # the path within its layer
    params: list[tuple[str, nn.Parameter]]

    @property
    def size(self) -> int:
        return sum(p.numel() for _, p in self.params)


_LAYERED = re.compile(r"^(.*?)\.(\d+)\.(.+)$")


def adapter_blocks(model: nn.Module) -> list[Block]:
    """One block per adapted module (a PEFT tuner layer with trainable parameters), in model order."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    out = []
    for name, mod in model.named_modules():
        if not isinstance(mod, BaseTunerLayer):
            continue
        params = [(f"{name}.{n}", p) for n, p in mod.named_parameters()
                  if p.requires_grad and not n.startswith("base_layer.")]
        if not params:
            continue
        path = name.removeprefix("base_model.model.")
        m = _LAYERED.match(path)
        layer, module = (int(m.group(2)), m.group(3)) if m else (None, path)
        out.append(Block(f"layer {layer} {module}" if m else module, path, layer, module, params))
    return out


def _matches(block: Block, module: str) -> bool:
    return block.module == module or (block.module or "").endswith("." + module)


def select_blocks(model: nn.Module, hcfg: HessianConfig) -> list[Block]:
    """The blocks ``hcfg`` asks for (see :class:`HessianConfig`), then the whole adapter if ``whole``."""
    blocks = adapter_blocks(model)
    if not blocks:
        raise ConfigError("the model has no trainable adapter parameters")
    layers, modules = hcfg.layers, hcfg.modules
    if layers is None and modules is None:
        layered = [b for b in blocks if b.layer is not None]
        chosen = [min(layered, key=lambda b: b.layer)] if layered else blocks[:1]
    else:
        known_layers = sorted({b.layer for b in blocks if b.layer is not None})
        for i in layers or []:
            if i not in known_layers:
                raise ConfigError(f"layers: no adapted layer {i} (adapted layers: "
                                  f"{known_layers[0]}..{known_layers[-1]})" if known_layers else
                                  f"layers: no adapted layer {i} (no numbered layers)")
        for m in modules or []:
            if not any(_matches(b, m) for b in blocks):
                names = sorted({b.module for b in blocks if b.module}, key=str)
                raise ConfigError(f"modules: {m!r} matches no adapted module (known: {', '.join(names)})")
        chosen = [b for b in blocks if (layers is None or b.layer in layers)
                  and (modules is None or any(_matches(b, m) for m in modules))]
        if not chosen and layers != []:
            raise ConfigError(f"layers {layers} × modules {modules}: no adapted module is in both")
    if hcfg.whole:
        chosen.append(Block("whole", None, None, None, [pair for b in blocks for pair in b.params]))
    if not chosen:
        raise ConfigError("nothing to measure: no block selected and whole is false")
    return chosen


# ------------------------------------------------------------------------------------------- objective


def hessian_batches(p: Prepared, samples: int, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """The first ``samples`` examples of the run's first epoch, in length-sorted batches on the device."""
    n = min(samples, len(p.train))
    idx = next(D.train_order(len(p.train), len(p.train), p.cfg.seed))[:n]
    idx.sort(key=lambda i: len(p.train.input_ids[i]))
    pad = p.tokenizer.pad_token_id
    return [{k: v.to(p.device) for k, v in D.collate(p.train, idx[i : i + batch_size], pad).items()}
            for i in range(0, n, batch_size)]


class Objective:
    """L(θ) = Σ_k loss_sum(B_k) / Σ_k loss_tokens(B_k) over fixed batches, and its Hessian-vector products."""

    def __init__(self, model: nn.Module, batches: list[dict[str, torch.Tensor]], head: str) -> None:
        self.model, self.batches, self.head = model, batches, head
        self.terms = sum(loss_tokens(b, head) for b in batches)
        self.calls = 0

    def loss(self) -> float:
        with torch.no_grad():
            return float(sum(loss_sum(self.model, b, self.head) for b in self.batches) / self.terms)

    def hvp(self, params: list[torch.Tensor], vec: list[torch.Tensor]) -> list[torch.Tensor]:
        """H v for the block ``params`` (v given per parameter), by double backward, batch by batch."""
        self.calls += 1
        out = [torch.zeros_like(p) for p in params]
        for b in self.batches:
            s = loss_sum(self.model, b, self.head) / self.terms
            grads = torch.autograd.grad(s, params, create_graph=True, allow_unused=True)
            dot = sum((g * v).sum() for g, v in zip(grads, vec) if g is not None)
            if not isinstance(dot, torch.Tensor) or not dot.requires_grad:
                continue  # the gradient does not depend on θ_b here: this batch adds nothing
            hv = torch.autograd.grad(dot, params, allow_unused=True)
            for o, h in zip(out, hv):
                if h is not None:
                    o += h
        return out


class BlockOperator:
    """H_b as a map of flat float64 numpy vectors (for ARPACK), through the objective's float32 HVPs."""

    def __init__(self, objective: Objective, block: Block) -> None:
        self.objective = objective
        self.params = [p for _, p in block.params]
        self.sizes = [p.numel() for p in self.params]
        self.n = sum(self.sizes)
        self.calls = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        flat = torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(-1), dtype=torch.float32)
        vec = [c.reshape(p.shape).to(p.device) for c, p in zip(flat.split(self.sizes), self.params)]
        hv = self.objective.hvp(self.params, vec)
        return torch.cat([h.reshape(-1).double().cpu() for h in hv]).numpy()

    def dense(self) -> np.ndarray:
        """H_b column by column (n HVPs, made once)."""
        if getattr(self, "_dense", None) is None:
            self._dense = np.stack([self(e) for e in np.eye(self.n)], axis=1)
        return self._dense


class RitzTracker:
    """Rayleigh–Ritz on the span of every vector H was applied to: T = QᵀHQ, grown by one column per product.

    With v = Qc + r·q (q ⟂ Q, ‖q‖ = 1) and w = Hv:  Hq = (w − HQ·c)/r,  T's new column Qᵀ Hq, corner qᵀHq.
    A v with r < ``min_r``·‖v‖ adds nothing (it lies in the span, and dividing by r would amplify the
    HVP's float32 rounding). Q and HQ (float64) take at most ``budget_bytes``; past that the span stops growing.
    """

    min_r = 1e-2

    def __init__(self, n: int, budget_bytes: int = HISTORY_BYTES) -> None:
        self.n, self.max_cols = n, max(0, budget_bytes // (16 * n))
        cols = min(32, self.max_cols)
        self.Q, self.HQ = np.empty((n, cols)), np.empty((n, cols))
        self.T = np.zeros((0, 0))
        self.m = 0

    def add(self, v: np.ndarray, w: np.ndarray) -> None:
        if self.m >= self.max_cols:
            return
        Q, HQ = self.Q[:, : self.m], self.HQ[:, : self.m]
        c = Q.T @ v
        u = v - Q @ c
        c2 = Q.T @ u  # classical Gram–Schmidt, twice
        u -= Q @ c2
        c += c2
        r = float(np.linalg.norm(u))
        if r < self.min_r * float(np.linalg.norm(v)):
            return
        q = u / r
        hq = (w - HQ @ c) / r
        t = Q.T @ hq
        T = np.zeros((self.m + 1, self.m + 1))
        T[: self.m, : self.m], T[: self.m, self.m], T[self.m, : self.m] = self.T, t, t
        T[self.m, self.m] = float(q @ hq)
        if self.m == self.Q.shape[1]:
            cols = min(2 * self.m, self.max_cols)
            for name in ("Q", "HQ"):
                grown = np.empty((self.n, cols))
                grown[:, : self.m] = getattr(self, name)[:, : self.m]
                setattr(self, name, grown)
        self.Q[:, self.m], self.HQ[:, self.m] = q, hq
        self.T, self.m = T, self.m + 1

    def value(self, which: str) -> float | None:
        """The extreme Ritz value: ``LA`` the largest, ``SA`` the smallest."""
        if self.m == 0:
            return None
        vals = np.linalg.eigvalsh(self.T)
        return float(vals[-1] if which == "LA" else vals[0])

    def pair(self, which: str) -> tuple[float, np.ndarray] | None:
        """The extreme Ritz value and its Ritz vector."""
        if self.m == 0:
            return None
        vals, vecs = np.linalg.eigh(self.T)
        i = -1 if which == "LA" else 0
        return float(vals[i]), self.Q[:, : self.m] @ vecs[:, i]


class _Cap(Exception):
    pass


def extreme_eigenvalue(op: BlockOperator, which: str, *, tol: float, maxiter: int, ncv: int | None,
                       seed: int = 0) -> dict[str, Any]:
    """λ_max (``which="LA"``) or λ_min (``"SA"``) of the symmetric operator ``op`` by ARPACK's Lanczos."""
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    t0, start = time.perf_counter(), op.calls
    n = op.n
    if n <= DENSE_MAX:
        H = op.dense()
        vals, vecs = np.linalg.eigh((H + H.T) / 2)
        i = -1 if which == "LA" else 0
        lam, x = float(vals[i]), vecs[:, i]
        res = float(np.linalg.norm(H @ x - lam * x))
        return {"lambda": lam, "converged": True, "solver": "dense", "hvps": op.calls - start, "residual": res,
                "history": [], "seconds": time.perf_counter() - t0}
    tracker, history = RitzTracker(n), []

    def matvec(x: np.ndarray) -> np.ndarray:
        if op.calls - start >= maxiter:
            raise _Cap
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        w = op(x)
        tracker.add(x, w)
        history.append([op.calls - start, tracker.value(which)])
        return w

    A = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(n)
    converged = True
    try:
        vals, vecs = eigsh(A, k=1, which=which, tol=tol, maxiter=maxiter, ncv=min(ncv or 20, n - 1), v0=v0)
        lam, x = float(vals[0]), vecs[:, 0]
    except (_Cap, ArpackNoConvergence):
        converged = False
        lam, x = tracker.pair(which) or (float("nan"), None)
    hvps = op.calls - start
    residual = None
    if x is not None:
        x = x / np.linalg.norm(x)
        residual = float(np.linalg.norm(op(x) - lam * x))
    return {"lambda": lam, "converged": converged, "solver": "eigsh", "hvps": hvps, "residual": residual,
            "history": history, "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------------------------------- measuring


def measure_prepared(p: Prepared, hcfg: HessianConfig, *,
                     log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Measure λ_max and λ_min of each selected block of ``p.model`` (as ``prepare`` left it)."""
    start = time.perf_counter()
    model = p.model
    model.float()
    model.eval()
    blocks = select_blocks(model, hcfg)
    batches = hessian_batches(p, hcfg.samples, hcfg.batch_size)
    objective = Objective(model, batches, p.cfg.model.head)
    loss = objective.loss()
    samples = sum(len(b["labels"]) for b in batches)
    log(f"{p.cfg.method}: loss {loss:.4f} at init on {samples} examples ({objective.terms} loss terms), "
        f"{len(blocks)} block(s)")
    out = []
    for block in blocks:
        t0 = time.perf_counter()
        op = BlockOperator(objective, block)
        hi = extreme_eigenvalue(op, "LA", tol=hcfg.tol, maxiter=hcfg.maxiter, ncv=hcfg.ncv, seed=p.cfg.seed)
        lo = extreme_eigenvalue(op, "SA", tol=hcfg.tol, maxiter=hcfg.maxiter, ncv=hcfg.ncv, seed=p.cfg.seed)
        row = {"block": block.name, "path": block.path, "layer": block.layer, "module": block.module,
               "params": block.size, "parameters": [n.removeprefix("base_model.model.") for n, _ in block.params],
               "lambda_max": hi["lambda"], "lambda_min": lo["lambda"], "max": hi, "min": lo,
               "hvps": op.calls, "seconds": time.perf_counter() - t0}
        out.append(row)
        flag = "" if hi["converged"] and lo["converged"] else " (not converged)"
        log(f"  {block.name}: λ_max {hi['lambda']:.6g}, λ_min {lo['lambda']:.6g}{flag}, "
            f"{op.calls} HVPs, {row['seconds']:.1f} s")
    summary = next((b for b in out if b["block"] == "whole"), out[0])
    return {"method": p.cfg.method, "lambda_max": summary["lambda_max"], "lambda_min": summary["lambda_min"],
            "summary_block": summary["block"], "samples": samples, "loss_terms": objective.terms, "loss": loss,
            "blocks": out, "hvps": objective.calls, "seconds": time.perf_counter() - start,
            "device": str(p.device), "dtype": "float32",
            "hessian": hcfg.model_dump(mode="json"), "config": p.cfg.dump(), "data_files": p.data_files}


def measure(cfg: RunConfig, hcfg: HessianConfig | None = None, *,
            log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Prepare ``cfg`` as a run does (eager attention, no checkpointing, no trackers) and measure its Hessian.

    Returns a dict: ``lambda_max`` / ``lambda_min`` (the whole adapter's, else the first block's:
    ``summary_block``), ``blocks`` (per block: ``lambda_max``, ``lambda_min``, ``params``, ``hvps``,
    ``seconds`` and each solve's ``converged``, ``hvps``, ``residual``, ``history``), ``samples``,
    ``loss_terms``, ``loss`` at init, ``hvps``, ``seconds`` (wall time, loading included), ``device``,
    ``hessian`` (the settings), ``config`` (the resolved run config), ``data_files``.
    """
    hcfg = hcfg or HessianConfig()
    t0 = time.perf_counter()
    cfg = cfg.model_copy(update={"gradient_checkpointing": False, "report_to": []})
    p = prepare(cfg, attn_implementation="eager")
    result = measure_prepared(p, hcfg, log=log)
    result["seconds"] = time.perf_counter() - t0
    return result
