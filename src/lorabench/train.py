"""One run: the training loop, divergence checks, timing and memory.

Loss normalisation. An optimizer step sees one effective batch, split into micro-batches. Each
micro-batch contributes  Σ_tokens ℓ / N  where N is the number of loss tokens (``lm``: predicted
positions; ``cls``: examples) in the whole effective batch, so the accumulated gradient is that of
the effective batch's mean loss whatever the micro-batch size.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import get_scheduler

from . import data as D
from .evaluate import metrics, predict
from .measure import Stopwatch, peak_memory, reset_peak_memory
from .prepare import Prepared
from .record import RunRecord

LAST_LOSSES = 10  # ``train_loss_last`` averages this many final steps
SCHEDULES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


def loss_tokens(batch: dict[str, torch.Tensor], head: str) -> int:
    """How many terms a micro-batch adds to the loss: predicted tokens (lm) or examples (cls)."""
    if head == "cls":
        return int(batch["labels"].numel())
    return int(batch["attention_mask"][:, 1:].sum())


def loss_sum(model: nn.Module, batch: dict[str, torch.Tensor], head: str) -> torch.Tensor:
    """Sum (not mean) of the per-token (lm) or per-example (cls) cross-entropy of a micro-batch."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    if head == "cls":
        return F.cross_entropy(logits.float(), batch["labels"], reduction="sum")
    targets = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, -100)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), reduction="sum",
                           ignore_index=-100)


@dataclass
class StepStats:
    loss: float
    grad_norm: float
    tokens: int


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
               micro_batches: list[dict[str, torch.Tensor]], *, head: str, max_grad_norm: float | None,
               autocast: bool) -> StepStats:
    """One optimizer step over ``micro_batches`` (one effective batch); holds no state of its own."""
    n = sum(loss_tokens(b, head) for b in micro_batches)
    total = 0.0
    for b in micro_batches:
        with torch.autocast(b["input_ids"].device.type, dtype=torch.bfloat16, enabled=autocast):
            s = loss_sum(model, b, head)
        (s / n).backward()
        total += s.item()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm else math.inf)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    tokens = sum(int(b["attention_mask"].sum()) for b in micro_batches)
    return StepStats(total / n, float(norm), tokens)


def diverged(loss: float, first_loss: float | None, factor: float) -> bool:
    return not math.isfinite(loss) or (first_loss is not None and loss > factor * max(first_loss, 1e-8))


def run_training(p: Prepared, record: RunRecord, *, progress: bool = True, log: Callable[[str], None] = print,
                 on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train ``p.model`` as ``p.cfg`` says, writing metrics to ``record``; returns the result dict.

    ``on_step(step)`` is called after each step (a sweep's heartbeat). Ends with status ``ok``,
    ``diverged``, ``oom`` (device out of memory) or ``failed`` (any other exception, traceback kept).
    """
    cfg, head, dev = p.cfg, p.cfg.model.head, p.device
    pad = p.tokenizer.pad_token_id
    scheduler = get_scheduler(SCHEDULES[cfg.schedule], p.optimizer, num_warmup_steps=cfg.warmup_steps,
                              num_training_steps=cfg.steps)
    order = D.train_order(len(p.train), cfg.batch_size * cfg.grad_accum, cfg.seed)
    clock = Stopwatch(dev)
    autocast = cfg.bf16 and dev.type == "cuda"

    def evaluate() -> tuple[dict[str, float], Any]:
        preds = predict(p.model, p.dev, head=head, pad_id=pad, batch_size=cfg.eval_batch_size, device=dev,
                        label_ids=p.label_ids, autocast=autocast)
        return metrics(preds), preds

    status, first_loss, tokens_seen, step, error = "ok", None, 0, 0, None
    recent: list[float] = []  # the last LAST_LOSSES training losses
    best: dict[str, Any] = {"accuracy": None, "macro_f1": None, "step": None}
    final, preds = None, None
    p.model.train()
    reset_peak_memory(dev)
    bar = tqdm(total=cfg.steps, desc=f"{cfg.method} lr={cfg.lr:g}", disable=not progress, unit="step",
               dynamic_ncols=True)
    try:
        for step in range(1, cfg.steps + 1):
            clock.start()
            idx = next(order)
            micro = [{k: v.to(dev) for k, v in D.collate(p.train, idx[i : i + cfg.batch_size], pad).items()}
                     for i in range(0, len(idx), cfg.batch_size)]
            stats = train_step(p.model, p.optimizer, scheduler, micro, head=head,
                               max_grad_norm=cfg.max_grad_norm, autocast=autocast)
            tokens_seen += stats.tokens
            row: dict[str, Any] = {"step": step, "loss": stats.loss, "lr": scheduler.get_last_lr()[0],
                                   "grad_norm": stats.grad_norm}
            if diverged(stats.loss, first_loss, cfg.diverge_factor):
                clock.pause()
                status = "diverged"
                record.log(row)
                log(f"diverged at step {step}: loss {stats.loss:.4g} (first loss {first_loss})")
                break
            first_loss = stats.loss if first_loss is None else first_loss
            recent = (recent + [stats.loss])[-LAST_LOSSES:]
            bar.update(1)
            bar.set_postfix(loss=f"{stats.loss:.4f}")
            if step % cfg.eval_every == 0 or step == cfg.steps:
                clock.pause()
                m, preds = evaluate()
                row.update({f"eval_{k}": v for k, v in m.items()})
                if best["accuracy"] is None or m["accuracy"] > best["accuracy"]:
                    best = {**m, "step": step}
                final = m
                bar.set_postfix(loss=f"{stats.loss:.4f}", acc=f"{m['accuracy']:.3f}")
            record.log(row)
            if on_step is not None:
                on_step(step)
        clock.pause()
    except torch.OutOfMemoryError:
        clock.pause()
        status, error = "oom", traceback.format_exc()
    except Exception:
        clock.pause()
        status, error = "failed", traceback.format_exc()
    finally:
        bar.close()
    mem, kind = peak_memory(dev)
    if preds is not None and status == "ok":
        record.predictions(preds.rows(cfg.data.label_words))
        if cfg.save_adapter:
            record.adapter(p)
    return {
        "status": status,
        "method": cfg.method,
        "steps_done": step if status != "diverged" else step - 1,
        "final": final if status == "ok" else None,
        "best": best,
        "train_seconds": clock.total,
        "samples_per_second": (step * cfg.batch_size * cfg.grad_accum) / clock.total if clock.total else None,
        "peak_memory_mb": mem,
        "memory_kind": kind,
        "trainable_params": p.trainable_params,
        "tokens_seen": tokens_seen,
        "train_loss_last": sum(recent) / len(recent) if recent and status == "ok" else None,
        "error": error,
    }
