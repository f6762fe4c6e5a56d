"""Which pending trials run together: fusable trials in groups of at most K, K chosen from free memory."""

from __future__ import annotations

from typing import Any

from ..config import RunConfig, validate
from ..records import TrialRow

MAX_AUTO = 16  # ``--fuse auto`` never fuses more runs than this


def activation_bytes(cfg: RunConfig) -> int:
    """A generous estimate of one run's training activations: per token and layer, about 34 tensors of the
    model's width (attention, MLP, norms; the usual transformer estimate) at 4 bytes, for a full micro-batch
    of ``max_length`` tokens (the optimizer state of the adapter is small beside it and left out)."""
    from transformers import AutoConfig

    from ..models import model_source
    from ..archs import ARCHS

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


def fused_tasks(rows: list[TrialRow], fuse: int | None, free_bytes: float | None = None) -> list[list[str]]:
    """Pending trials as tasks: trials with the same ``fuse_key`` (they differ only in lr, seed or method
    options) in groups of at most ``fuse`` (``None``: :func:`auto_fuse` from ``free_bytes``,
    the memory free to each worker); every other trial alone. Groups keep the store's order."""
    from ..fuse import fuse_key

    groups: dict[Any, list[tuple[str, Any]]] = {}
    for r in rows:
        cfg = validate(r["config"], f"trial {r['key']}")
        key = fuse_key(cfg)
        groups.setdefault(key if key is not None else ("alone", r["key"]), []).append((r["key"], cfg))
    tasks = []
    for members in groups.values():
        k = fuse if fuse is not None else auto_fuse(members[0][1], free_bytes or 0)
        keys = [m[0] for m in members]
        tasks += [keys[i : i + max(1, k)] for i in range(0, len(keys), max(1, k))]
    return tasks
