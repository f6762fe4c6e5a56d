"""Fused training: K runs that differ only in learning rate or method options, through one forward/backward.

Each run is prepared exactly as if it ran alone (same data, seed, init), so its adapter, optimizer
and schedule are its own. The K models then share one copy of every frozen parameter that is equal
across them, and the first model (the *primary*) runs the K runs' micro-batches stacked along the
batch axis: its adapted modules are routed, so rows of run k pass through run k's adapter (and its
own classification head), while every unadapted module (embeddings, norms, attention) runs once
over all K·B rows. For a plain LoRA layer whose frozen weight is shared, the base product W x is one
matrix product over all rows and only the rank-r updates are per run:

    y_k = W x_k + s_k B_k A_k x_k,   [y_1; …; y_K] = W [x_1; …; x_K] + [s_1 B_1 A_1 x_1; …].

Each method declares how it fuses (:class:`lorabench.methods.Fusion`): ``shared_base`` methods (plain
PEFT LoRA layers) take the shared base product wherever the K runs' frozen weights are one tensor (a
residual W_res that differs per run does not); ``own_module`` methods (DoRA, GraLoRA, RandLoRA), and every
trained head, run run k's own module on its rows; ``none`` never fuses. The loss is Σ_k loss_k, and since the runs' trainable
parameters are disjoint, one backward pass gives each run exactly the gradient it would get alone.

What must be equal for runs to fuse (:func:`fuse_key`): everything but ``lr``, ``seed`` and the
method's options, since the runs share their forward (model, data, targets, rank, batch size). Runs
of different seeds take their own batches (their own order) and each run's rows are padded to the
widest of the step, which attention masks make exact.

Evaluation: on CUDA the K runs' predictions (or generations, every decoding step routed the same way) come
from one routed pass over the repeated batches; on a CPU, whose throughput does not grow with the batch, each
run evaluates alone (measured faster there). Dropout draws from one random stream, so runs
with ``dropout > 0`` or ``base_dropout`` do not fuse.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any, cast

import torch
from peft.tuners.lora.layer import Linear as LoraLinear
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils.other import ModulesToSaveWrapper
from torch import nn

from .config import RunConfig
from .generate import ModelCall
from .methods import ADAPTER, Fusion, get_method
from .tasks import Evaluation
from .tasks.base import Evaluate


def fuse_key(cfg: RunConfig) -> str | None:
    """Runs with equal keys can be fused; ``None``: this run cannot be fused with any other."""
    method = get_method(cfg.method)
    if cfg.dropout > 0 or cfg.base_dropout or method.fusion is Fusion.NONE:
        return None
    d = cfg.dump()
    for name in ("lr", "seed", "report_to", "tracker_project", "tracking_uri", "save_adapter", *method.Options.model_fields):
        d.pop(name, None)
    return json.dumps(d, sort_keys=True)


def share_frozen(primary: nn.Module, other: nn.Module) -> int:
    """Make ``other`` use ``primary``'s tensor for every frozen parameter equal in both; returns bytes saved."""
    mine = dict(primary.named_parameters(remove_duplicate=False))
    saved = 0
    for name, p in list(other.named_parameters(remove_duplicate=False)):
        q = mine.get(name)
        if p.requires_grad or q is None or q is p or q.shape != p.shape or q.dtype != p.dtype:
            continue
        if torch.equal(p, q):
            owner, _, leaf = name.rpartition(".")
            other.get_submodule(owner)._parameters[leaf] = q
            saved += p.numel() * p.element_size()
    return saved


def _routed_modules(model: nn.Module) -> list[str]:
    """Paths of the outermost adapted modules: PEFT tuner layers and trained-in-full heads."""
    out: list[str] = []
    for name, mod in model.named_modules():
        if isinstance(mod, BaseTunerLayer | ModulesToSaveWrapper) and not any(
                name.startswith(o + ".") for o in out):
            out.append(name)
    return out


def _shares_base(peers: list[nn.Module]) -> bool:
    """PEFT LoRA layers over one frozen tensor: the base product can run once over every row."""
    if not all(isinstance(m, LoraLinear) and not m.merged and not m.disable_adapters and ADAPTER in m.lora_A
               for m in peers):
        return False
    layers = cast(list[LoraLinear], peers)  # each checked above
    base = layers[0].get_base_layer()
    return all(m.get_base_layer().weight is base.weight and m.get_base_layer().bias is base.bias for m in layers)


def _alone(model: nn.Module) -> ModelCall:
    """``model`` run on a batch of its own rows only."""
    return lambda sizes, **kw: model(**kw)


class Fused:
    """K prepared models of one fusable group (their frozen parameters shared, see :func:`share_frozen`),
    as one forward strategy: inside :meth:`routing`, the first model runs all K runs' rows stacked."""

    def __init__(self, models: list[nn.Module], fusion: Fusion) -> None:
        if fusion is Fusion.NONE:
            raise ValueError("a method declared not fusable cannot train fused")
        self.models = models
        self.routes = {name: [m.get_submodule(name) for m in models] for name in _routed_modules(models[0])}
        self.fast = {name for name, peers in self.routes.items()
                     if fusion is Fusion.SHARED_BASE and _shares_base(peers)}
        self._rows: tuple[list[int], list[int]] | None = None

    @contextlib.contextmanager
    def routing(self) -> Iterator[None]:
        """Install the routed forwards on the first model's adapted modules; removed on exit."""
        patched = [peers[0] for peers in self.routes.values()]
        for name, peers in self.routes.items():
            peers[0].forward = self._router(peers, name in self.fast)
        try:
            yield
        finally:
            for m in patched:
                del m.forward  # back to the class's forward

    def _router(self, peers: list[Any], fast: bool) -> Callable[..., torch.Tensor]:
        # peers: PEFT tuner layers or trained heads, typed Any as PEFT's layers are dynamically typed
        def alone(i: int, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            return type(peers[i]).forward(peers[i], x, *args, **kwargs)

        def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            if self._rows is None:
                return alone(0, x, *args, **kwargs)
            active, sizes = self._rows
            parts = x.split(sizes)
            if not fast:
                return torch.cat([alone(i, xk, *args, **kwargs) for i, xk in zip(active, parts, strict=True)])
            result = peers[0].get_base_layer()(x, *args, **kwargs)
            deltas = []
            for i, xk in zip(active, parts, strict=True):
                m = peers[i]
                a, b = m.lora_A[ADAPTER], m.lora_B[ADAPTER]
                deltas.append(b(a(m.lora_dropout[ADAPTER](xk.to(a.weight.dtype)))) * m.scaling[ADAPTER])
            return result + torch.cat(deltas).to(result.dtype)

        return forward

    def call(self, sizes: list[int], active: list[int], **model_kwargs: Any) -> Any:
        """The first model's output on runs ``active``'s rows (``sizes`` rows each, stacked), each row through its
        own run's adapter: training and evaluation batches, and every decoding step of a generation."""
        self._rows = (active, sizes)
        try:
            return self.models[0](**model_kwargs)
        finally:
            self._rows = None

    def evaluate(self, due: list[int], evaluate: Evaluate, device: torch.device) -> list[Evaluation]:
        """Evaluations of runs ``due``: one routed pass on CUDA, each run alone on a CPU."""
        if device.type == "cuda" or len(due) == 1:
            return evaluate(lambda sizes, **kw: self.call(sizes, due, **kw), len(due))
        return [evaluate(_alone(self.models[i]), 1)[0] for i in due]
