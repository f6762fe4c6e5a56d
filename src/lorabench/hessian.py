"""The extreme eigenvalues of the training loss's Hessian with respect to the adapter, at initialisation.

Objective. θ are the adapter's trainable parameters right after ``prepare`` (the run's data, model,
seed and init). On the first ``samples`` examples of the seed's first-epoch permutation (the
examples that training's first epoch draws its batches from), split into batches B_k,

    L(θ) = Σ_k loss_sum(B_k; θ) / Σ_k loss_tokens(B_k)

with ``loss_sum`` and ``loss_tokens`` of :mod:`lorabench.train`: the token-weighted mean cross-entropy
over every loss term (predicted tokens for ``lm``, examples for ``cls``), exactly the objective a
training step minimises. It does not depend on how the examples are batched, so batches are formed
in length order (little padding) and reused for every product. The model is in eval mode (no
dropout), in float32, with eager attention (double backward through CPU SDPA fails).

Blocks. A block θ_b is the trainable parameters of one adapted module (e.g. ``lora_A`` and
``lora_B`` of layer 0's ``query``), as in the "Learning Rate Matters" study, whose block is one module's
``lora_A`` and ``lora_B``: DoRA's trained magnitude vector m is left out (held at its init value, like
every parameter outside the block) unless ``magnitude`` is set; ``whole`` is every block together (the classification head of a
``cls`` model, trained in full beside the adapter and identical for every method, is held fixed and
not measured). For a block, H_b = ∂²L/∂θ_b² with every other parameter at its init value (a
diagonal block of the full Hessian).

Products. Hv = ∂/∂θ_b (∇_b L · v) (Pearlmutter's trick, by double backward), accumulated over the
batches: each batch adds ∂/∂θ_b (∇_b (loss_sum_k / N) · v) with N the total number of loss terms,
so every term weighs the same whatever its batch. H is symmetric; in float32 vᵀHw and wᵀHv agree to
rounding.

Eigensolver. At init H is indefinite (for LoRA, B = 0 makes ∂²L/∂A² = 0 and the A–B cross block
gives eigenvalues of both signs), so power iteration, which finds the largest |λ|, is not used.
:func:`lanczos` (Lanczos with full re-orthogonalisation, one HVP per step) gives λ_max and λ_min from
the same Krylov space and stops each end when its exact residual bound β_j|s_i[j]| is ≤ tol·|λ|.
Unlike a restarted solver (ARPACK) it throws no Krylov vector away and needs no HVP to check a
residual; the basis costs 8·n bytes per step. Blocks of at most ``DENSE_MAX`` parameters are solved
exactly from the dense H built column by column from HVPs.

Cost. Every product for a block differentiates the same gradient graph, so the graphs of all batches
are built once and kept when they fit in memory (see :class:`Objective`): a product is then one
backward pass.

Rates. A method whose parameters train at different rates (LoRA+: η_B = ratio · η_A) is measured on
S^½ H_b S^½, S = diag(rate / lr) (``rate_scaled``, default on): the step θ ← θ − lr·S·g is stable on a quadratic
for lr < 2/λ_max of that operator, so its λ_max is comparable with a one-rate method's. For every other method
S = I and this is H_b.

Defaults: 500 samples; one block, the first adapted module of the lowest layer (layer 0's ``query`` for MiniLM, ``self_attn.q_proj`` for Llama); tol 1e-3; at most
200 HVPs per block.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from tqdm.auto import tqdm
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator
from torch import nn

from . import data as D
from .config import RunConfig
from .errors import ConfigError, config_error
from .measure import free_memory, used_memory
from .methods.registry import get_method, method_options
from .prepare import Prepared, prepare
from .records import HessianBlock, HessianResult
from .losses import loss_sum, loss_tokens

DENSE_MAX = 20  # blocks this small get the exact dense eigenvalues (n HVPs, no more than one Lanczos cycle)


class HessianConfig(BaseModel):
    """What to measure and how. Blocks: ``layers`` × ``modules`` (either alone: all of the other);
    neither: one default block, the first adapted module of the lowest layer (e.g. layer 0's query);
    ``layers: []``: no single block. ``whole``: also the whole adapter."""

    model_config = ConfigDict(extra="forbid")
    samples: PositiveInt = Field(500, description="training examples in the loss (the run's first ones)")
    batch_size: PositiveInt = Field(32, description="examples per forward pass")
    tol: float = Field(1e-3, gt=0, lt=1, description="stop when ‖Hx − λx‖ ≤ tol·|λ| at both ends")
    maxiter: PositiveInt = Field(200, description="most HVPs per block")
    layers: list[int] | None = Field(None, description="layer indices of the blocks")
    modules: list[str] | None = Field(None, description="module names (leaf or path within the layer)")
    whole: bool = Field(False, description="also measure the whole adapter")
    magnitude: bool = Field(False, description="include DoRA's magnitude vector in its blocks (the study: "
                            "lora_A and lora_B only)")
    cache: bool | None = Field(None, description="keep each block's gradient graphs between products "
                               "(None: when they fit in half the free memory)")
    lambda_min: bool = Field(True, description="also converge λ_min (off: stop once λ_max has, which is all a rate "
                             "prediction needs)")
    rate_scaled: bool = Field(True, description="measure S^½ H S^½, S each parameter's learning rate relative to lr "
                              "(LoRA+: loraplus_ratio on B; 1 elsewhere, so H itself): the curvature a step sees")

    @field_validator("layers", "modules", mode="before")
    @classmethod
    def _comma_separated(cls, v: Any) -> Any:
        """``"0,3"`` (as the command line gives it) is ``[0, 3]``; ``""`` is ``[]``."""
        return [x.strip() for x in v.split(",") if x.strip()] if isinstance(v, str) else v


def hessian_config(raw: dict[str, Any] | None, source: str = "hessian") -> HessianConfig:
    """Validate a mapping; a problem is one ``ConfigError`` line naming the key."""
    try:
        return HessianConfig.model_validate(raw or {})
    except ValidationError as e:
        raise config_error(e, source) from None


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


MAGNITUDE = "lora_magnitude_vector."  # DoRA's m in PEFT's parameter names


def adapter_blocks(model: nn.Module, magnitude: bool = False) -> list[Block]:
    """One block per adapted module (a PEFT tuner layer with trainable parameters), in model order; DoRA's
    magnitude vector only if ``magnitude``."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    out = []
    for name, mod in model.named_modules():
        if not isinstance(mod, BaseTunerLayer):
            continue
        params = [(f"{name}.{n}", p) for n, p in cast(nn.Module, mod).named_parameters()
                  if p.requires_grad and not n.startswith("base_layer.") and (magnitude or not n.startswith(MAGNITUDE))]
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
    blocks = adapter_blocks(model, hcfg.magnitude)
    if not blocks:
        raise ConfigError("the model has no trainable adapter parameters")
    layers, modules = hcfg.layers, hcfg.modules
    if layers is None and modules is None:
        layered = [b for b in blocks if b.layer is not None]
        chosen = [min(layered, key=lambda b: cast(int, b.layer))] if layered else blocks[:1]
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
    """L(θ) = Σ_k loss_sum(B_k) / Σ_k loss_tokens(B_k) over fixed batches, and its Hessian-vector products.

    Every product for a block differentiates the same gradient graph ∇_b L (θ does not move), so
    with ``cache`` the graphs of all batches are built once per block and kept, and each product is
    one backward pass through them (no forward, no first-order backward). ``cache=None`` keeps them
    while they take under half the memory that was free when caching began, else recomputes per product.
    """

    def __init__(self, model: nn.Module, batches: list[dict[str, torch.Tensor]], head: str,
                 cache: bool | None = None) -> None:
        self.model, self.batches, self.head, self.cache = model, batches, head, cache
        self.terms = sum(loss_tokens(b, head) for b in batches)
        self.calls = 0
        self._key: tuple[int, ...] | None = None
        self._graphs: list[tuple[torch.Tensor | None, ...]] | None = None
        self.cached = False

    def loss(self) -> float:
        with torch.no_grad():
            return float(sum(loss_sum(self.model, b, self.head) for b in self.batches) / self.terms)

    def _grad(self, b: dict[str, torch.Tensor], params: list[torch.Tensor]) -> tuple[torch.Tensor | None, ...]:
        s = loss_sum(self.model, b, self.head) / self.terms
        return torch.autograd.grad(s, params, create_graph=True, allow_unused=True)

    def _cached_graphs(self, params: list[torch.Tensor]) -> list[tuple[torch.Tensor | None, ...]] | None:
        key = tuple(id(p) for p in params)
        if self._key == key:
            return self._graphs
        self._key, self._graphs, self.cached = key, None, False  # free the previous block's graphs first
        if self.cache is False:
            return None
        device = params[0].device
        budget = free_memory(device) / 2
        start = used_memory(device)
        total = sum(b["input_ids"].numel() for b in self.batches)
        graphs, done = [], 0
        for b in self.batches:
            graphs.append(self._grad(b, params))
            done += b["input_ids"].numel()
            if self.cache is None and (used_memory(device) - start) / done * total > budget:
                return None  # would not fit: recompute per product
        self._graphs, self.cached = graphs, True
        return graphs

    def hvp(self, params: list[torch.Tensor], vec: list[torch.Tensor]) -> list[torch.Tensor]:
        """H v for the block ``params`` (v given per parameter), by double backward, batch by batch."""
        self.calls += 1
        graphs = self._cached_graphs(params)
        out = [torch.zeros_like(p) for p in params]
        for k, b in enumerate(self.batches):
            grads = graphs[k] if graphs is not None else self._grad(b, params)
            dot = sum((g * v).sum() for g, v in zip(grads, vec) if g is not None)
            if not isinstance(dot, torch.Tensor) or not dot.requires_grad:
                continue  # the gradient does not depend on θ_b here: this batch adds nothing
            hv = torch.autograd.grad(dot, params, allow_unused=True, retain_graph=graphs is not None)
            for o, h in zip(out, hv):
                if h is not None:
                    o += h
        return out


class BlockOperator:
    """H_b as a map of flat float64 numpy vectors (for the eigensolver), through the objective's float32 HVPs.

    ``rates``: each parameter's learning rate relative to lr (default 1); the operator is then S^½ H_b S^½ with
    S = diag(rates), whose λ_max is the curvature along which a step lr·S·g is stable below lr < 2/λ_max."""

    def __init__(self, objective: Objective, block: Block, rates: list[float] | None = None) -> None:
        self.objective = objective
        self.params: list[torch.Tensor] = [p for _, p in block.params]
        self.sizes = [p.numel() for p in self.params]
        self.roots = [math.sqrt(r) for r in rates or [1.0] * len(self.params)]
        self.n = sum(self.sizes)
        self.calls = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        flat = torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(-1), dtype=torch.float32)
        vec = [c.reshape(p.shape).to(p.device) * s for c, p, s in zip(flat.split(self.sizes), self.params, self.roots)]
        hv = self.objective.hvp(self.params, vec)
        return torch.cat([(h * s).reshape(-1).double().cpu() for h, s in zip(hv, self.roots)]).numpy()

    def dense(self) -> np.ndarray:
        """H_b column by column (n HVPs, made once)."""
        if getattr(self, "_dense", None) is None:
            self._dense = np.stack([self(e) for e in np.eye(self.n)], axis=1)
        return self._dense


def dense_ends(op: BlockOperator) -> tuple[dict[str, Any], dict[str, Any]]:
    """λ_max and λ_min of a small block from its dense Hessian (n products), in :func:`lanczos`'s records."""
    t0, start = time.perf_counter(), op.calls
    H = op.dense()
    vals, vecs = np.linalg.eigh((H + H.T) / 2)
    ends = []
    for i in (-1, 0):
        res = float(np.linalg.norm(H @ vecs[:, i] - vals[i] * vecs[:, i]))
        ends.append({"lambda": float(vals[i]), "converged": True, "solver": "dense", "hvps": op.calls - start,
                     "residual": res, "history": [], "seconds": time.perf_counter() - t0})
    return ends[0], ends[1]


def lanczos(op: BlockOperator, *, tol: float, maxiter: int, seed: int = 0,
            lambda_min: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """λ_max and λ_min of the symmetric operator ``op`` from one Krylov space; returns (max, min) records.

    Lanczos with full re-orthogonalisation: q₁ = v₀/‖v₀‖, and per product w = H q_j − α_j q_j − β_{j−1} q_{j−1}
    (α_j = q_jᵀ H q_j), projected off every earlier q twice, β_j = ‖w‖, q_{j+1} = w/β_j. The Ritz values θ_i
    of the tridiagonal T_j = tridiag(β, α, β) approximate H's extreme eigenvalues, and with Ritz vector
    y_i = Q_j s_i the residual is exactly ‖H y_i − θ_i y_i‖ = β_j |s_i[j]| (no extra product). Each end
    stops when that bound is ≤ ``tol``·|θ|, which bounds its eigenvalue's error by the same amount (and
    typically by bound²/gap); both ends come from the same products, so λ_min costs nothing once λ_max
    is found. The run ends when both have converged, when the Krylov space is invariant (β ≈ 0: T's
    values are exact), or after ``maxiter`` products (``converged: false``, best estimate kept).
    ``lambda_min`` False: the run ends once λ_max has converged (λ_min's record says whether it had).
    ``history`` holds one ``[hvp, θ]`` pair per product for each end.
    """
    from scipy.linalg import eigh_tridiagonal

    t0, start = time.perf_counter(), op.calls
    n = op.n
    if n <= DENSE_MAX:
        return dense_ends(op)
    steps = min(maxiter, n)
    Q = np.empty((n, steps))
    q = np.random.default_rng(seed).standard_normal(n)
    Q[:, 0] = q / np.linalg.norm(q)
    alpha: list[float] = []
    beta: list[float] = []
    hist_max: list[list[float]] = []
    hist_min: list[list[float]] = []
    done = {"max": False, "min": False}
    bounds = {"max": math.inf, "min": math.inf}
    theta = s = None
    for j in range(steps):
        w = op(Q[:, j])
        alpha.append(float(Q[:, j] @ w))
        basis = Q[:, : j + 1]
        w -= basis @ (basis.T @ w)
        w -= basis @ (basis.T @ w)  # twice is enough (Kahan–Parlett)
        b = float(np.linalg.norm(w))
        theta, s = eigh_tridiagonal(np.array(alpha), np.array(beta))
        for end, i in (("max", -1), ("min", 0)):
            bounds[end] = b * abs(s[-1, i])
            done[end] = bounds[end] <= tol * abs(theta[i])
        hist_max.append([j + 1, float(theta[-1])])
        hist_min.append([j + 1, float(theta[0])])
        invariant = b <= 1e-10 * max(abs(theta[0]), abs(theta[-1]), 1e-30)
        if invariant:
            done = {"max": True, "min": True}
            bounds = {"max": 0.0, "min": 0.0}
        if (done["max"] and (done["min"] or not lambda_min)) or j + 1 == steps:
            break
        beta.append(b)
        Q[:, j + 1] = w / b
    hvps, seconds = op.calls - start, time.perf_counter() - t0
    assert theta is not None
    out = []
    for end, i, hist in (("max", -1, hist_max), ("min", 0, hist_min)):
        out.append({"lambda": float(theta[i]), "converged": bool(done[end]), "solver": "lanczos", "hvps": hvps,
                    "residual": float(bounds[end]), "history": hist, "seconds": seconds})
    return out[0], out[1]


# ------------------------------------------------------------------------------------------- measuring


def block_rates(block: Block, relative: dict[str, float]) -> list[float]:
    """Each of the block's parameters' rate relative to lr: the first ``relative`` entry its name contains, else 1."""
    return [next((r for k, r in relative.items() if k in name), 1.0) for name, _ in block.params]


def measure_prepared(p: Prepared, hcfg: HessianConfig, *, log: Callable[[str], None] = lambda _: None,
                     progress: bool = False) -> HessianResult:
    """Measure λ_max and λ_min of each selected block of ``p.model`` (as ``prepare`` left it); ``progress``: a bar
    over the blocks."""
    start = time.perf_counter()
    model = p.model
    model.float()
    model.eval()
    blocks = select_blocks(model, hcfg)
    relative = get_method(p.cfg.method).relative_rates(method_options(p.cfg.method, p.cfg.options()))
    batches = hessian_batches(p, hcfg.samples, hcfg.batch_size)
    head = p.cfg.model.head
    assert head is not None  # set by ModelConfig's validator
    objective = Objective(model, batches, head, cache=hcfg.cache)
    loss = objective.loss()
    samples = sum(len(b["labels"]) for b in batches)
    log(f"{p.cfg.method}: loss {loss:.4f} at init on {samples} examples ({objective.terms} loss terms), "
        f"{len(blocks)} block(s)")
    out: list[HessianBlock] = []
    bar = tqdm(blocks, desc="Hessian blocks", unit="block", disable=not progress, leave=False, dynamic_ncols=True)
    for block in bar:
        bar.set_postfix_str(block.name)
        t0 = time.perf_counter()
        rates = block_rates(block, relative) if hcfg.rate_scaled else [1.0] * len(block.params)
        op = BlockOperator(objective, block, rates)
        hi, lo = lanczos(op, tol=hcfg.tol, maxiter=hcfg.maxiter, seed=p.cfg.seed, lambda_min=hcfg.lambda_min)
        row: HessianBlock = {"block": block.name, "path": block.path, "layer": block.layer, "module": block.module,
               "params": block.size, "parameters": [n.removeprefix("base_model.model.") for n, _ in block.params],
               "lambda_max": hi["lambda"], "lambda_min": lo["lambda"], "max": hi, "min": lo,
               "hvps": op.calls, "graphs_cached": objective.cached, "seconds": time.perf_counter() - t0}
        if any(r != 1.0 for r in rates):
            row["relative_rates"] = {n.removeprefix("base_model.model."): r for (n, _), r in zip(block.params, rates)}
        out.append(row)
    bar.close()
    summary = next((b for b in out if b["block"] == "whole"), out[0])
    return {"method": p.cfg.method, "lambda_max": summary["lambda_max"], "lambda_min": summary["lambda_min"],
            "summary_block": summary["block"], "samples": samples, "loss_terms": objective.terms, "loss": loss,
            "blocks": out, "hvps": objective.calls, "seconds": time.perf_counter() - start,
            "device": str(p.device), "dtype": "float32",
            "hessian": hcfg.model_dump(mode="json"), "config": p.cfg.dump(), "data_files": p.task.files}


def measure(cfg: RunConfig, hcfg: HessianConfig | None = None, *, log: Callable[[str], None] = lambda _: None,
            progress: bool = False) -> HessianResult:
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
    result = measure_prepared(p, hcfg, log=log, progress=progress)
    result["seconds"] = time.perf_counter() - t0
    return result


def format_result(result: HessianResult, out: Any) -> str:
    """The command line's table of a measurement: one line per block, then the totals."""
    w = max(len(b["block"]) for b in result["blocks"])
    lines = []
    for b in result["blocks"]:
        sought_min = result["hessian"].get("lambda_min", True)
        flag = "" if b["max"]["converged"] and (b["min"]["converged"] or not sought_min) else "  (not converged)"
        lines.append(f"{b['block']:<{w}}  λ_max {b['lambda_max']:.6g}  λ_min {b['lambda_min']:.6g}  "
                     f"{b['params']:,} params  {b['hvps']} HVPs  {b['seconds']:.1f} s{flag}")
    lines.append(f"{result['method']}: {result['samples']} examples, {result['loss_terms']:,} loss terms, "
                 f"loss {result['loss']:.4f}; {result['seconds']:.1f} s in all; wrote {out}")
    lines.append(interpret(result))
    return "\n".join(lines)


def interpret(result: HessianResult) -> str:
    """One line: the sharpness as a step size, beside the configured learning rate."""
    lam, lr = result["lambda_max"], float(result["config"]["lr"])
    if lam <= 0:
        return f"λ_max {lam:.4g} ≤ 0 ({result['summary_block']}): no curvature bound on the step size at init"
    bound = 2 / lam
    return (f"{result['summary_block']}: λ_max {lam:.4g}, so plain gradient descent is stable below 2/λ_max = "
            f"{bound:.3g}; the configured lr {lr:g} is {lr / bound:.3g}× that (the best Adam rates the study finds "
            "track 1/λ_max across methods)")
