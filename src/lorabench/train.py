"""The training loop (one run, or K fused runs), divergence checks, timing and memory.

Loss normalisation. An optimizer step sees one effective batch, split into micro-batches. Each
micro-batch contributes  Σ_tokens ℓ / N  where N is the number of loss tokens (``lm``: predicted
positions; ``cls``: examples) in the whole effective batch, so the accumulated gradient is that of
the effective batch's mean loss whatever the micro-batch size.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import get_scheduler

from . import data as D
from .evaluate import metrics, predict_many
from .measure import Stopwatch, peak_memory, reset_peak_memory
from .prepare import Prepared, train_order
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
    return loss_of_logits(logits, batch, head)


def loss_of_logits(logits: torch.Tensor, batch: dict[str, torch.Tensor], head: str) -> torch.Tensor:
    """``loss_sum`` from the model's output on ``batch``."""
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


def _stack(batches: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Micro-batches of several runs as one, right-padded to the widest (padding is masked everywhere)."""
    width = max(b["input_ids"].shape[1] for b in batches)

    def widen(t: torch.Tensor, fill: int) -> torch.Tensor:
        return F.pad(t, (0, width - t.shape[1]), value=fill)

    return {"input_ids": torch.cat([widen(b["input_ids"], pad_id) for b in batches]),
            "attention_mask": torch.cat([widen(b["attention_mask"], 0) for b in batches]),
            "labels": torch.cat([b["labels"] for b in batches])}


def _split(batch: dict[str, torch.Tensor], sizes: list[int]) -> list[dict[str, torch.Tensor]]:
    """The runs' rows of a stacked micro-batch, each at the stacked width (its logits' width)."""
    cols = {k: v.split(sizes) for k, v in batch.items()}
    return [{k: parts[i] for k, parts in cols.items()} for i in range(len(sizes))]


def train_step(optimizers: list[torch.optim.Optimizer], schedulers: list[Any],
               micro_batches: list[list[dict[str, torch.Tensor]]], *, forward: Callable[..., Any], head: str,
               max_grad_norm: float | None, autocast: bool, pad_id: int) -> list[StepStats]:
    """One optimizer step for each of K runs; ``micro_batches[k]`` is run k's effective batch.

    ``forward(batch, sizes)`` returns logits for the K runs' micro-batches stacked (``sizes`` rows
    each): a fused model's routed forward, or a plain model's when K = 1. The backward pass of
    Σ_k loss_k reaches each run's own parameters only, so each run gets its gradient as if alone.
    """
    ns = [sum(loss_tokens(b, head) for b in mb) for mb in micro_batches]
    totals = [0.0] * len(optimizers)
    for parts in zip(*micro_batches):
        sizes = [len(b["labels"]) for b in parts]
        stacked = parts[0] if len(parts) == 1 else _stack(list(parts), pad_id)
        with torch.autocast(stacked["input_ids"].device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = forward(stacked, sizes)
            sums = [loss_of_logits(lg, b, head) for lg, b in zip(logits.split(sizes), _split(stacked, sizes))]
        sum(s / n for s, n in zip(sums, ns)).backward()
        for k, s in enumerate(sums):
            totals[k] += s.item()
    out = []
    for k, (opt, sched) in enumerate(zip(optimizers, schedulers)):
        params = [p for g in opt.param_groups for p in g["params"]]
        own_clip = getattr(opt, "clip_grad_norm_", None)  # an optimizer that clips what it applies (LoFT)
        norm = own_clip(max_grad_norm) if own_clip else \
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm else math.inf)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        tokens = sum(int(b["attention_mask"].sum()) for b in micro_batches[k])
        out.append(StepStats(totals[k] / ns[k], float(norm), tokens))
    return out


def diverged(loss: float, first_loss: float | None, factor: float) -> bool:
    return not math.isfinite(loss) or (first_loss is not None and loss > factor * max(first_loss, 1e-8))


@dataclass
class Lane:
    """One run's state in the training loop."""

    p: Prepared
    record: RunRecord
    scheduler: Any
    order: Iterator[list[int]]
    status: str = "running"
    first_loss: float | None = None
    recent: list[float] = field(default_factory=list)  # the last LAST_LOSSES training losses
    best: dict[str, Any] = field(default_factory=lambda: {"accuracy": None, "macro_f1": None, "step": None})
    final: dict[str, float] | None = None
    preds: Any = None
    tokens_seen: int = 0
    steps_done: int = 0
    error: str | None = None
    eval_seconds: float = 0.0
    eval_examples: int = 0
    row: dict[str, Any] = field(default_factory=dict)  # this step's metrics row


def run_lanes(ps: list[Prepared], records: list[RunRecord], *, fused: Any = None, progress: bool = True,
              log: Callable[[str], None] = print, on_step: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Train K runs together (one run: K = 1), each as if alone; ``fused``: a :class:`lorabench.fuse.Fused`
    over the K models when K > 1. A run that diverges or fails stops; the others go on.

    Time and memory of a fused group: ``train_seconds`` is the group's training time divided by K
    (each run's share) and ``peak_memory_mb`` the group's peak; ``fused`` records K.
    """
    if len(ps) > 1 and fused is None:
        raise ValueError("several runs need a Fused model")
    p0 = ps[0]
    cfg, head, dev = p0.cfg, p0.cfg.model.head, p0.device
    pad = p0.tokenizer.pad_token_id
    clock = Stopwatch(dev)
    autocast = cfg.bf16 and dev.type == "cuda"
    lanes = [Lane(p, rec, get_scheduler(SCHEDULES[p.cfg.schedule], p.optimizer, num_warmup_steps=p.cfg.warmup_steps,
                                        num_training_steps=p.cfg.steps), train_order(p.train, p.cfg))
             for p, rec in zip(ps, records)]

    def forward(batch: dict[str, torch.Tensor], sizes: list[int], active: list[int]) -> torch.Tensor:
        if fused is None:
            return p0.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        with fused.route(active, sizes) as model:
            return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    def evaluate(due: list[int]) -> None:
        """Predictions of runs ``due`` on the dev set, the time shared equally. On CUDA the runs are stacked in
        one routed pass; on CPU, whose throughput does not grow with the batch, each run evaluates alone."""
        clock_eval = Stopwatch(dev)
        clock_eval.start()
        for i in due:
            lanes[i].p.model.eval()
        kw = dict(head=head, pad_id=pad, batch_size=cfg.eval_batch_size, device=dev, label_ids=p0.label_ids,
                  autocast=autocast)
        try:
            if dev.type == "cuda" or len(due) == 1:
                preds = predict_many(lambda b, sizes: forward(b, sizes, due), len(due), p0.dev, **kw)
            else:
                preds = [predict_many(lambda b, _, m=lanes[i].p.model: m(input_ids=b["input_ids"],
                                                                            attention_mask=b["attention_mask"]).logits,
                                      1, p0.dev, **kw)[0] for i in due]
        finally:
            for i in due:
                lanes[i].p.model.train()
        clock_eval.pause()
        for i, pr in zip(due, preds):
            lanes[i].preds = pr
            lanes[i].eval_seconds += clock_eval.total / len(due)
            lanes[i].eval_examples += len(p0.dev)

    for p in ps:
        p.model.train()
    reset_peak_memory(dev)
    desc = f"{cfg.method} lr={cfg.lr:g}" if len(ps) == 1 else f"{cfg.method} ×{len(ps)} fused"
    bar = tqdm(total=cfg.steps, desc=desc, disable=not progress, unit="step", dynamic_ncols=True)
    step = 0
    try:
        for step in range(1, cfg.steps + 1):
            active = [i for i, lane in enumerate(lanes) if lane.status == "running"]
            if not active:
                break
            clock.start()
            micro = []
            for i in active:
                idx, enc = next(lanes[i].order), lanes[i].p.train
                micro.append([{k: v.to(dev) for k, v in D.collate(enc, idx[j : j + cfg.batch_size], pad).items()}
                              for j in range(0, len(idx), cfg.batch_size)])
            stats = train_step([lanes[i].p.optimizer for i in active], [lanes[i].scheduler for i in active], micro,
                               forward=lambda b, sizes: forward(b, sizes, active), head=head,
                               max_grad_norm=cfg.max_grad_norm, autocast=autocast, pad_id=pad)
            alive = []
            for i, st in zip(active, stats):
                lane = lanes[i]
                lane.tokens_seen += st.tokens
                row: dict[str, Any] = {"step": step, "loss": st.loss, "lr": lane.scheduler.get_last_lr()[0],
                                       "grad_norm": st.grad_norm}
                if diverged(st.loss, lane.first_loss, lane.p.cfg.diverge_factor):
                    lane.status, lane.steps_done = "diverged", step - 1
                    lane.record.log(row)
                    log(f"{lane.p.cfg.method} lr={lane.p.cfg.lr:g}: diverged at step {step}: loss {st.loss:.4g} "
                        f"(first loss {lane.first_loss})")
                    continue
                lane.first_loss = st.loss if lane.first_loss is None else lane.first_loss
                lane.recent = (lane.recent + [st.loss])[-LAST_LOSSES:]
                lane.steps_done = step
                lane.row = row
                alive.append(i)
            clock.pause()
            if alive and (step % cfg.eval_every == 0 or step == cfg.steps):
                evaluate(alive)
                for i in alive:
                    lane = lanes[i]
                    m = metrics(lane.preds)
                    lane.row.update({f"eval_{k}": v for k, v in m.items()})
                    if lane.best["accuracy"] is None or m["accuracy"] > lane.best["accuracy"]:
                        lane.best = {**m, "step": step}
                    lane.final = m
            for i in alive:
                lanes[i].record.log(lanes[i].row)
            bar.update(1)
            if len(ps) == 1 and lanes[0].status == "running":
                bar.set_postfix(loss=f"{lanes[0].recent[-1]:.4f}",
                                **({"acc": f"{lanes[0].final['accuracy']:.3f}"} if lanes[0].final else {}))
            elif len(ps) > 1:
                bar.set_postfix(running=sum(lane.status == "running" for lane in lanes))
            if on_step is not None:
                on_step(step)
        clock.pause()
        for lane in lanes:
            if lane.status == "running":
                lane.status = "ok"
    except torch.OutOfMemoryError:
        clock.pause()
        for lane in lanes:
            if lane.status == "running":
                lane.status, lane.error = "oom", traceback.format_exc()
    except Exception:
        clock.pause()
        for lane in lanes:
            if lane.status == "running":
                lane.status, lane.error = "failed", traceback.format_exc()
    finally:
        bar.close()
    mem, kind = peak_memory(dev)
    results = []
    for lane in lanes:
        c = lane.p.cfg
        if lane.preds is not None and lane.status == "ok":
            lane.record.predictions(lane.preds.rows(c.data.label_words))
            if c.save_adapter:
                lane.record.adapter(lane.p)
        seconds = clock.total / len(lanes)
        ev = lane.eval_seconds
        results.append({
            "status": lane.status,
            "method": c.method,
            "steps_done": lane.steps_done,
            "final": lane.final if lane.status == "ok" else None,
            "best": lane.best,
            "train_seconds": seconds,
            "samples_per_second": lane.steps_done * c.batch_size * c.grad_accum / seconds if seconds else None,
            "eval_seconds": ev,
            "eval_samples_per_second": lane.eval_examples / ev if ev else None,
            "peak_memory_mb": mem,
            "memory_kind": kind,
            "fused": len(lanes),
            "trainable_params": lane.p.trainable_params,
            "tokens_seen": lane.tokens_seen,
            "train_loss_last": sum(lane.recent) / len(lane.recent) if lane.recent and lane.status == "ok" else None,
            "error": lane.error,
        })
    return results
