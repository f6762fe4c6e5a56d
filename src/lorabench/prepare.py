"""Everything before the first step: data, tokenisation, model, adapter, optimizer.

Any bad input surfaces here as a ``LorabenchError``, before a run folder is created.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import data as D
from .adapters import adapt, build_optimizer, count_trainable, silence_base_dropout
from .config import RunConfig
from .errors import ConfigError
from .models import load_model
from .tasks import Classification, Task, load_task
from .trackers import check_trackers


@dataclass
class Prepared:
    cfg: RunConfig
    model: nn.Module
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    task: Task
    device: torch.device
    trainable_params: int

    @property
    def train(self) -> D.Encoded:
        return self.task.train


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda requested but no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train_order(enc: D.Encoded, cfg: RunConfig) -> Iterator[list[int]]:
    """The run's effective batches of training examples (length-grouped unless ``cfg.length_grouping`` is off)."""
    lengths = [len(ids) for ids in enc.input_ids] if cfg.length_grouping else None
    return D.train_order(len(enc), cfg.batch_size * cfg.grad_accum, cfg.seed, lengths)


class TrainingBatches:
    """The run's :class:`~lorabench.methods.Calibration`: its first training examples, in the run's order, made on
    demand (for data-driven inits)."""

    def __init__(self, enc: D.Encoded, cfg: RunConfig, pad_id: int, device: torch.device) -> None:
        self.enc, self.cfg, self.pad_id, self.device = enc, cfg, pad_id, device

    def batches(self, n: int) -> Iterator[dict[str, torch.Tensor]]:
        """``n`` examples in micro-batches of ``batch_size``."""
        order = train_order(self.enc, self.cfg)
        seen = 0
        while seen < n:
            idx = next(order)[: n - seen]
            seen += len(idx)
            for i in range(0, len(idx), self.cfg.batch_size):
                part = idx[i : i + self.cfg.batch_size]
                yield {k: v.to(self.device) for k, v in D.collate(self.enc, part, self.pad_id).items()}


def prepare(cfg: RunConfig, *, attn_implementation: str | None = None) -> Prepared:
    """``attn_implementation`` (e.g. ``"eager"``) overrides the model's attention kernel."""
    device = pick_device(cfg.device)
    if cfg.bf16 and device.type != "cuda":
        raise ConfigError(f"bf16: bf16 autocast needs a CUDA device; this run would be on {device.type} in float32 "
                          "(set bf16: false, or model.dtype: bfloat16 for bf16 weights)")
    check_trackers(cfg.report_to)
    task = load_task(cfg)  # bad data fails before a model loads
    if task.size < cfg.batch_size * cfg.grad_accum:
        raise ConfigError(f"batch_size × grad_accum = {cfg.batch_size * cfg.grad_accum} exceeds the "
                          f"{task.size} training examples")
    torch.manual_seed(cfg.seed)  # a new classifier head's init depends on the run seed only
    classes = len(task.names) if isinstance(task, Classification) else 2
    model, tok = load_model(cfg.model, num_labels=classes, attn_implementation=attn_implementation)
    task.tokenize(tok)
    train = task.train
    model.to(device)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if not cfg.base_dropout:  # before adapt: a data-driven init (LoRA-GA) sees the objective training minimises
        silence_base_dropout(model)
    torch.manual_seed(cfg.seed)  # adapter init depends on the run seed only
    model = adapt(model, cfg.method, rank=cfg.rank, alpha=cfg.alpha, target_modules=cfg.target_modules,
                  dropout=cfg.dropout, calibration=TrainingBatches(train, cfg, tok.pad_token_id, device), **cfg.options())
    optimizer = build_optimizer(model, cfg.method, lr=cfg.lr, weight_decay=cfg.weight_decay, **cfg.options())
    return Prepared(cfg, model, tok, optimizer, task, device, count_trainable(model))

