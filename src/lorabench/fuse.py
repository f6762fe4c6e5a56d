"""Fused training: K runs that differ only in learning rate or method options, through one forward/backward.

Each run is prepared exactly as if it ran alone (same data, seed, init), so its adapter, optimizer
and schedule are its own. The K models then share one copy of every frozen parameter that is equal
across them, and the first model (the *primary*) runs the K runs' micro-batches stacked along the
batch axis: its adapted modules are routed, so rows of run k pass through run k's adapter (and its
own classification head), while every unadapted module (embeddings, norms, attention) runs once
over all K·B rows. For a plain LoRA layer whose frozen weight is shared, the base product W x is one
matrix product over all rows and only the rank-r updates are per run:

    y_k = W x_k + s_k B_k A_k x_k,   [y_1; …; y_K] = W [x_1; …; x_K] + [s_1 B_1 A_1 x_1; …].

Any other adapted module (DoRA, GraLoRA, RandLoRA, a residual W_res that differs per run, a trained
head) runs run k's own module on its rows. The loss is Σ_k loss_k, and since the runs' trainable
parameters are disjoint, one backward pass gives each run exactly the gradient it would get alone.

What must be equal for runs to fuse (:func:`fuse_key`): everything but ``lr``, ``seed`` and the
method's options, since the runs share their forward (model, data, targets, rank, batch size). Runs
of different seeds take their own batches (their own order) and each run's rows are padded to the
widest of the step, which attention masks make exact. Dropout draws from one random stream, so runs
with ``dropout > 0`` or ``base_dropout`` do not fuse.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import torch
from peft.tuners.lora.layer import Linear as LoraLinear
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils.other import ModulesToSaveWrapper
from torch import nn

from .config import RunConfig
from .methods import get_method

ADAPTER = "default"


def fuse_key(cfg: RunConfig) -> str | None:
    """Runs with equal keys can be fused; ``None``: this run cannot be fused with any other."""
    if cfg.dropout > 0 or cfg.base_dropout:
        return None
    d = cfg.dump()
    for name in ("lr", "seed"):
        d.pop(name, None)
    for name in get_method(cfg.method).Options.model_fields:
        d.pop(name, None)
    for name in ("report_to", "save_adapter"):
        d.pop(name, None)
    return json.dumps(d, sort_keys=True)


MAX_AUTO = 16  # ``--fuse auto`` never fuses more runs than this


def activation_bytes(cfg: RunConfig) -> int:
    """A generous estimate of one run's training activations: per token and layer, about 34 tensors of the
    model's width (attention, MLP, norms; the usual transformer estimate) at 4 bytes, for a full micro-batch
    of ``max_length`` tokens, plus 16 bytes per adapter-sized parameter is small beside it and left out."""
    from transformers import AutoConfig

    from .models import model_source
    from .tiny_llama import ARCHS

    if cfg.model.name in ARCHS:
        spec = ARCHS[cfg.model.name]
        width, layers = spec["hidden_size"], spec["num_hidden_layers"]
    else:
        try:
            c = AutoConfig.from_pretrained(model_source(cfg.model.name), trust_remote_code=False)
            width, layers = c.hidden_size, c.num_hidden_layers
        except Exception:  # unknown model: assume a large one
            width, layers = 4096, 32
    return 34 * 4 * width * layers * cfg.batch_size * cfg.model.max_length


def auto_fuse(cfg: RunConfig, free_bytes: float) -> int:
    """How many runs like ``cfg`` to fuse: as many as fit in half the free memory (at most ``MAX_AUTO``)."""
    return int(max(1, min(MAX_AUTO, free_bytes // 2 // activation_bytes(cfg))))


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
        if isinstance(mod, (BaseTunerLayer, ModulesToSaveWrapper)) and not any(
                name.startswith(o + ".") for o in out):
            out.append(name)
    return out


def _plain_lora(peers: list[nn.Module]) -> bool:
    """Vanilla PEFT LoRA on one shared frozen layer: the base product can run once over every row."""
    if not all(type(m) is LoraLinear and not m.merged and not m.disable_adapters and ADAPTER in m.lora_A
               and ADAPTER not in m.lora_variant for m in peers):
        return False
    base = peers[0].get_base_layer()
    return all(m.get_base_layer().weight is base.weight and m.get_base_layer().bias is base.bias for m in peers)


class Fused:
    """K prepared models of one fusable group; ``route`` makes the primary run them all at once."""

    def __init__(self, models: list[nn.Module]) -> None:
        self.models = models
        self.primary = models[0]
        self._route: tuple[list[int], list[int]] | None = None
        for m in models[1:]:
            share_frozen(self.primary, m)
        self.fast = 0
        for name in _routed_modules(self.primary):
            peers = [m.get_submodule(name) for m in models]
            fast = _plain_lora(peers)
            self.fast += fast
            peers[0].forward = self._router(peers, fast)

    def _router(self, peers: list[nn.Module], fast: bool):
        def alone(i: int, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            return type(peers[i]).forward(peers[i], x, *args, **kwargs)

        def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            if self._route is None:
                return alone(0, x, *args, **kwargs)
            active, sizes = self._route
            parts = x.split(sizes)
            if not fast:
                return torch.cat([alone(i, xk, *args, **kwargs) for i, xk in zip(active, parts)])
            result = peers[0].get_base_layer()(x, *args, **kwargs)
            deltas = []
            for i, xk in zip(active, parts):
                m = peers[i]
                a, b = m.lora_A[ADAPTER], m.lora_B[ADAPTER]
                deltas.append(b(a(m.lora_dropout[ADAPTER](xk.to(a.weight.dtype)))) * m.scaling[ADAPTER])
            return result + torch.cat(deltas).to(result.dtype)

        return forward

    @contextlib.contextmanager
    def route(self, active: list[int], sizes: list[int]) -> Iterator[nn.Module]:
        """Within this block, the primary takes runs ``active``'s rows stacked (``sizes`` rows each)."""
        self._route = (active, sizes)
        try:
            yield self.primary
        finally:
            self._route = None
