"""The training loop (one run, or K fused runs), divergence checks, timing and memory.

Loss normalisation (:mod:`lorabench.losses`). An optimizer step sees one effective batch, split into
micro-batches. Each micro-batch contributes  Σ_tokens ℓ / N  where N is the number of loss tokens in the
whole effective batch, so the accumulated gradient is that of the effective batch's mean loss whatever
the micro-batch size.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import get_scheduler

from . import data as D
from .errors import ConfigError
from .export import finish
from .losses import loss_of_logits, loss_tokens
from .measure import Stopwatch, peak_memory, reset_peak_memory
from .methods import get_method
from .prepare import Prepared, train_order
from .record import TRAINABLE, RunRecord
from .records import BestMetrics, LaneResult, Metrics, Status
from .tasks import Evaluation
from .tasks.base import Evaluate

if TYPE_CHECKING:
    from peft import PeftModel

LAST_LOSSES = 10  # ``train_loss_last`` averages this many final steps
ZERO_GRAD_STEPS = 3  # this many consecutive steps with a zero gradient norm: the run has collapsed
SCHEDULES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


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

    out = {"input_ids": torch.cat([widen(b["input_ids"], pad_id) for b in batches]),
           "attention_mask": torch.cat([widen(b["attention_mask"], 0) for b in batches]),
           "labels": torch.cat([b["labels"] for b in batches])}
    if "loss_mask" in batches[0]:
        out["loss_mask"] = torch.cat([widen(b["loss_mask"], 0) for b in batches])
    return out


def _split(batch: dict[str, torch.Tensor], sizes: list[int]) -> list[dict[str, torch.Tensor]]:
    """The runs' rows of a stacked micro-batch, each at the stacked width (its logits' width)."""
    cols = {k: v.split(sizes) for k, v in batch.items()}
    return [{k: parts[i] for k, parts in cols.items()} for i in range(len(sizes))]


def train_step(optimizers: list[torch.optim.Optimizer], schedulers: list[Any],
               micro_batches: list[list[dict[str, torch.Tensor]]], *, forward: Callable[..., Any], head: str,
               max_grad_norm: float | None, autocast: bool, pad_id: int) -> list[StepStats]:
    """One optimizer step for each of K runs; ``micro_batches[k]`` is run k's effective batch.

    ``forward(batch, sizes)`` returns logits for the K runs' micro-batches stacked (``sizes`` rows
    each): a fused group's routed forward, or one model's when K = 1. The backward pass of
    Σ_k loss_k reaches each run's own parameters only, so each run gets its gradient as if alone.
    """
    ns = [max(1, sum(loss_tokens(b, head) for b in mb)) for mb in micro_batches]  # 1: a batch without targets
    totals = [0.0] * len(optimizers)
    for parts in zip(*micro_batches):
        sizes = [len(b["labels"]) for b in parts]
        stacked = parts[0] if len(parts) == 1 else _stack(list(parts), pad_id)
        with torch.autocast(stacked["input_ids"].device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = forward(stacked, sizes)
            sums = [loss_of_logits(lg, b, head) for lg, b in zip(logits.split(sizes), _split(stacked, sizes))]
        cast(torch.Tensor, sum(s / n for s, n in zip(sums, ns))).backward()  # a sum of K ≥ 1 losses
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


def collapsed(grad_norm: float, zero_steps: int) -> bool:
    """Training no longer moves: a non-finite gradient (with a finite loss), or ``ZERO_GRAD_STEPS`` zero norms."""
    return not math.isfinite(grad_norm) or zero_steps >= ZERO_GRAD_STEPS


def status_of(exc: BaseException) -> Status:
    """The status of a run that raised ``exc``: out of memory, or failed."""
    return Status.OOM if isinstance(exc, torch.OutOfMemoryError) else Status.FAILED


class Forward(Protocol):
    """How the loop runs its K models: alone (K = 1) or fused (:class:`lorabench.fuse.Fused`)."""

    def routing(self) -> AbstractContextManager[None]: ...
    def call(self, sizes: list[int], active: list[int], **model_kwargs: Any) -> Any: ...
    def evaluate(self, due: list[int], evaluate: Evaluate, device: torch.device) -> list[Evaluation]: ...


class Alone:
    """One model, one run: the forward strategy of an unfused run."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def routing(self) -> AbstractContextManager[None]:
        return nullcontext()

    def call(self, sizes: list[int], active: list[int], **model_kwargs: Any) -> Any:
        return self.model(**model_kwargs)

    def evaluate(self, due: list[int], evaluate: Evaluate, device: torch.device) -> list[Evaluation]:
        return evaluate(lambda sizes, **kw: self.model(**kw), 1)


def logits_of(forward: Forward, batch: dict[str, torch.Tensor], sizes: list[int], active: list[int]) -> torch.Tensor:
    return forward.call(sizes, active, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@dataclass
class Lane:
    """One run's state in the training loop: it takes its batches, records its steps and evaluations, checks
    its own divergence and produces its result."""

    p: Prepared
    record: RunRecord
    scheduler: Any
    order: Iterator[list[int]]
    status: Status = Status.RUNNING
    first_loss: float | None = None
    recent: list[float] = field(default_factory=list)  # the last LAST_LOSSES training losses
    best: BestMetrics = field(default_factory=lambda: BestMetrics(accuracy=None, macro_f1=None, step=None))
    final: Metrics | None = None
    last: Evaluation | None = None
    tokens_seen: int = 0
    steps_done: int = 0
    error: str | None = None
    eval_seconds: float = 0.0
    eval_examples: int = 0
    held_out: dict[str, Evaluation] = field(default_factory=dict)  # e.g. the test split, after training
    deferred: list[str] = field(default_factory=list)  # held-out splits left to the sweep's held-out pass
    new_tokens: int = 0  # generated in evaluations (generative tasks)
    generation_seconds: float = 0.0
    zero_steps: int = 0  # consecutive steps with a zero gradient norm
    row: dict[str, Any] = field(default_factory=dict)  # this step's metrics row

    @classmethod
    def of(cls, p: Prepared, record: RunRecord) -> Lane:
        sched = get_scheduler(SCHEDULES[p.cfg.schedule], p.optimizer, num_warmup_steps=p.cfg.warmup(),
                              num_training_steps=p.cfg.steps)
        return cls(p, record, sched, train_order(p.train, p.cfg))

    def next_batch(self, pad_id: int) -> list[dict[str, torch.Tensor]]:
        """This run's next effective batch, as micro-batches on its device."""
        idx, bs = next(self.order), self.p.cfg.batch_size
        return [{k: v.to(self.p.device) for k, v in D.collate(self.p.train, idx[j : j + bs], pad_id).items()}
                for j in range(0, len(idx), bs)]

    def took_step(self, step: int, st: StepStats, log: Callable[[str], None]) -> bool:
        """Record step ``step``; False if the run diverged or collapsed there (it then stops)."""
        self.tokens_seen += st.tokens
        row: dict[str, Any] = {"step": step, "loss": st.loss, "lr": self.scheduler.get_last_lr()[0],
                               "grad_norm": st.grad_norm}
        cfg = self.p.cfg
        self.zero_steps = self.zero_steps + 1 if st.grad_norm == 0 else 0
        bad = (Status.DIVERGED if diverged(st.loss, self.first_loss, cfg.diverge_factor)
               else Status.COLLAPSED if collapsed(st.grad_norm, self.zero_steps) else None)
        if bad is not None:
            self.status, self.steps_done = bad, step - 1
            self.record.log(row)
            log(f"{cfg.method} lr={cfg.lr:g}: {bad.value} at step {step}: loss {st.loss:.4g} "
                f"(first loss {self.first_loss}), gradient norm {st.grad_norm:.3g}")
            return False
        self.first_loss = st.loss if self.first_loss is None else self.first_loss
        self.recent = (self.recent + [st.loss])[-LAST_LOSSES:]
        self.steps_done, self.row = step, row
        return True

    def evaluated(self, ev: Evaluation, seconds: float, step: int) -> None:
        self.last = ev
        self.eval_seconds += seconds
        self.eval_examples += ev.examples
        self.new_tokens += ev.extra.get("new_tokens", 0)
        self.generation_seconds += ev.extra.get("generation_seconds", 0.0)
        m = ev.metrics
        self.row.update({f"eval_{k}": v for k, v in m.items() if isinstance(v, float)})
        self.row.update({f"eval_{name}": v for name, v in m.get("sets", {}).items()})
        if self.best["accuracy"] is None or m["accuracy"] > self.best["accuracy"]:
            self.best = BestMetrics(accuracy=m["accuracy"], macro_f1=m["macro_f1"], step=step)
        self.final = m

    def stop(self, status: Status, error: str | None = None) -> None:
        if self.status is Status.RUNNING:
            self.status, self.error = status, error

    def result(self, seconds: float, memory: tuple[float, str], fused: int) -> LaneResult:
        """Its result (``seconds``: its share of the training time); writes predictions and the adapter if ok."""
        c, ok = self.p.cfg, self.status is Status.OK
        failed_writes = self.write_artefacts()
        ev = self.eval_seconds
        return LaneResult(
            status=self.status, method=c.method, steps_done=self.steps_done,
            final=self.final if ok or self.status is Status.COLLAPSED else None,
            best=self.best, train_seconds=seconds,
            samples_per_second=self.steps_done * c.batch_size * c.grad_accum / seconds if seconds else None,
            eval_seconds=ev, eval_samples_per_second=self.eval_examples / ev if ev else None,
            generation_tokens_per_second=self.new_tokens / self.generation_seconds if self.generation_seconds else None,
            peak_memory_mb=memory[0], memory_kind=memory[1], fused=fused, trainable_params=self.p.trainable_params,
            tokens_seen=self.tokens_seen, one_class=self.last is not None and self.last.one_class,
            majority=self.last.extra.get("majority") if self.last else None,
            held_out={split: ev.metrics for split, ev in self.held_out.items()} if ok else {},
            held_out_deferred=list(self.deferred) if ok else [],
            train_loss_last=sum(self.recent) / len(self.recent) if self.recent and ok else None, error=self.error,
            artefact_errors=failed_writes)

    def write_artefacts(self) -> list[str]:
        """Per-example outputs (ok or collapsed) and the adapter (ok); the writes that failed. A full disk or a lost
        mount costs the artefact, not what was trained."""
        c, failed, artefact = self.p.cfg, [], self.p.task.artefact
        if self.last is not None and self.status in (Status.OK, Status.COLLAPSED):
            named = {artefact: self.last.rows} | {
                split_artefact(self.p, split): ev.rows for split, ev in self.held_out.items()}
            for name, rows in named.items():
                try:
                    self.record.rows(name, rows)
                except OSError as e:
                    failed.append(f"{name}: {e}")
        if self.last is not None and self.status is Status.OK and self.deferred:
            try:
                self.record.trainable(trainable_state(self.p.model))
            except OSError as e:
                failed.append(f"{TRAINABLE}: {e}")
        if self.last is not None and self.status is Status.OK and c.save_adapter:
            model = cast("PeftModel", self.p.model)  # an adapted model
            try:
                self.record.adapter(lambda path: save_adapter(model, path, c))
            except OSError as e:
                failed.append(f"adapter: {e}")
        return failed


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters training changed (adapter and head), by name: with ``prepare``'s deterministic init of the same
    config they restore the trained model exactly."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Put :func:`trainable_state`'s parameters back into ``model`` (prepared from the same config); a state whose
    names are not exactly the model's trainable ones is a ``ConfigError`` naming ``source``."""
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(state) != set(named):
        raise ConfigError(f"{source}: its parameters do not match the run config's trainable ones")
    with torch.no_grad():
        for n, v in state.items():
            named[n].copy_(v.to(named[n].device))


def save_adapter(model: PeftModel, path: str, cfg: Any) -> None:
    """The method's adapter in plain PEFT format, made portable (:func:`lorabench.export.finish`)."""
    method = get_method(cfg.method)
    method.save_adapter(model, path)
    finish(path, cfg, residual=method.residual)


def evaluate_lanes(lanes: list[Lane], due: list[int], forward: Forward, step: int, progress: bool = False,
                   split: str = "validation") -> None:
    """Evaluations of runs ``due`` (in eval mode) on ``split``, the time shared equally between them: the validation
    split during training (it picks the best), a held-out split once after it."""
    p0 = lanes[0].p
    dev = p0.device
    clock = Stopwatch(dev)
    clock.start()
    for i in due:
        lanes[i].p.model.eval()
    try:
        evals = forward.evaluate(due, split_evaluation(p0, split, progress), dev)
    finally:
        for i in due:
            lanes[i].p.model.train()
    clock.pause()
    for i, ev in zip(due, evals, strict=True):
        if split == "validation":
            lanes[i].evaluated(ev, clock.total / len(due), step)
        else:
            lanes[i].held_out[split] = ev


def split_evaluation(p: Prepared, split: str, progress: bool = False) -> Evaluate:
    """The task's evaluation of ``split`` with the run's evaluation settings, for a :class:`Forward` to call."""
    cfg = p.cfg
    return lambda call, k: p.task.evaluate(call, k, batch_size=cfg.eval_batch_size, device=p.device,
                                           autocast=cfg.bf16 and p.device.type == "cuda", progress=progress,
                                           split=split)


def split_artefact(p: Prepared, split: str) -> str:
    """The per-example file of a held-out split, beside the validation one (``predictions.test.jsonl``)."""
    return p.task.artefact.replace(".jsonl", f".{split}.jsonl")


def evaluate_split(p: Prepared, split: str) -> Evaluation:
    """One run's model on ``split``, alone, in eval mode (a kept run's held-out pass)."""
    p.model.eval()
    return Alone(p.model).evaluate([0], split_evaluation(p, split), p.device)[0]


def run_lanes(ps: list[Prepared], records: list[RunRecord], *, forward: Forward, progress: bool = True,
              log: Callable[[str], None] = print, on_step: Callable[[int], None] | None = None,
              held_out: bool = True) -> list[LaneResult]:
    """Train K runs together (one run: K = 1, ``forward`` :class:`Alone`), each as if alone. A run that diverges
    or fails stops; the others go on. Time and memory of a fused group: ``train_seconds`` is the group's
    training time divided by K (each run's share) and ``peak_memory_mb`` the group's peak; ``fused`` is K.
    ``held_out`` False: the held-out splits are not evaluated; each run that finishes ok keeps its trained
    parameters instead (``held_out_deferred``), for a sweep's held-out pass."""
    cfg, dev, pad = ps[0].cfg, ps[0].device, ps[0].tokenizer.pad_token_id
    head = cfg.model.head
    assert head is not None  # set by ModelConfig's validator
    lanes = [Lane.of(p, rec) for p, rec in zip(ps, records, strict=True)]
    clock = Stopwatch(dev)
    for p in ps:
        p.model.train()
    reset_peak_memory(dev)
    bar = tqdm(total=cfg.steps, desc=f"{cfg.method} lr={cfg.lr:g}" if len(ps) == 1 else f"{cfg.method} ×{len(ps)} fused",
               disable=not progress, unit="step", dynamic_ncols=True)
    try:
        with forward.routing():
            for step in range(1, cfg.steps + 1):
                active = [i for i, lane in enumerate(lanes) if lane.status is Status.RUNNING]
                if not active:
                    break
                clock.start()
                stats = train_step([lanes[i].p.optimizer for i in active], [lanes[i].scheduler for i in active],
                                   [lanes[i].next_batch(pad) for i in active],
                                   forward=lambda b, sizes, on=active: logits_of(forward, b, sizes, on),
                                   head=head, max_grad_norm=cfg.max_grad_norm,
                                   autocast=cfg.bf16 and dev.type == "cuda", pad_id=pad)
                alive = [i for i, st in zip(active, stats, strict=True) if lanes[i].took_step(step, st, log)]
                clock.pause()
                if alive and (step % cfg.eval_every == 0 or step == cfg.steps):
                    evaluate_lanes(lanes, alive, forward, step, progress)
                for i in alive:
                    lanes[i].record.log(lanes[i].row)
                _progress(bar, lanes)
                if on_step is not None:
                    on_step(step)
            ok = [i for i, lane in enumerate(lanes) if lane.status is Status.RUNNING]
            for split in ps[0].task.held_out if ok and held_out else ():
                evaluate_lanes(lanes, ok, forward, cfg.steps, progress, split)
            for i in ok if not held_out else ():
                lanes[i].deferred = list(ps[0].task.held_out)
        for lane in lanes:
            lane.stop(Status.OK)
    except Exception as e:  # a run that crashes is a result; KeyboardInterrupt still ends the program
        for lane in lanes:
            lane.stop(status_of(e), traceback.format_exc())
    finally:
        clock.pause()
        bar.close()
    memory = peak_memory(dev)
    return [lane.result(clock.total / len(lanes), memory, len(lanes)) for lane in lanes]


def _progress(bar: Any, lanes: list[Lane]) -> None:
    bar.update(1)
    if len(lanes) > 1:
        bar.set_postfix(running=sum(lane.status is Status.RUNNING for lane in lanes))
    elif lanes[0].status is Status.RUNNING:
        final = lanes[0].final
        bar.set_postfix(loss=f"{lanes[0].recent[-1]:.4f}", **({"acc": f"{final['accuracy']:.3f}"} if final else {}))
