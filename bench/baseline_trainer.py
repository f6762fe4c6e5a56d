"""The baseline: train a lorabench run config with PEFT + ``transformers.Trainer``, as research scripts do.

What it shares with lorabench, so that only the training machinery differs:
  * the base model and tokenizer, loaded by lorabench's own loader (``lorabench.models.load_model``)
    after the same ``torch.manual_seed(seed)``, so a new classifier head starts from the same weights;
  * the training subset and dev rows (``lorabench.tasks.classification.load_data``) and their token ids
    (``lorabench.data.encode``: the sentence for ``cls``; the SST-2 prompt with its label for ``lm``
    training and without it for ``lm`` evaluation, over-long prompts shortened the same way);
  * the adapter: a plain ``peft.LoraConfig`` with the config's rank, alpha, dropout and targets
    (``all-linear``), the classifier trained in full through ``modules_to_save``, injected after
    the same seeding, so A starts equal;
  * batch size, gradient accumulation, steps (``max_steps``), learning rate, schedule, warmup,
    weight decay, ``max_grad_norm``, seed and bf16 autocast;
  * the frozen base's dropout: switched off when the config's ``base_dropout`` is false (lorabench's
    default where the key exists), kept otherwise.

What is the Trainer's own: its sampler (``--sampler``: ``random`` by default, a different batch
order from lorabench's, which also groups lengths when ``length_grouping`` is on), its
default optimizer (``adamw_torch_fused`` in transformers 5 with torch >= 2.8), its loss normalisation
(the model's mean loss per micro-batch for ``cls``; for the causal LM, the token sum divided by the
effective batch's predicted tokens, as lorabench does), ``DataCollatorWithPadding``
(``cls``) or ``DataCollatorForLanguageModeling(mlm=False)`` (``lm``: loss on every non-pad token).

Timing: a ``TrainerCallback`` reads the clock (CUDA synchronised) at ``on_train_begin`` and
``on_train_end``. Evaluation runs once after training: ``Trainer.predict`` for ``cls``; for ``lm``
a loop over the dev set taking the logits of the label words' first tokens at the last prompt
position, as ``lorabench.evaluate`` defines the prediction.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Any

_STARTED = time.perf_counter()

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402

from benchlib import (BenchError, add_config_arguments, bench_config, count_params, measurement,  # noqa: E402
                      now, process_peak_rss_mb, run_main, write_json)

from lorabench.adapters import silence_base_dropout  # noqa: E402  (the same switch lorabench applies)

SCHEDULERS = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}
SAMPLERS = ("random", "group_by_length")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/baseline_trainer.py",
        description="Train a lorabench config's `lora` run with PEFT + transformers.Trainer (the baseline), "
                    "evaluate it once on the dev set and write one measurement JSON: training time of the "
                    "loop alone, train samples/s and non-pad tokens/s, eval time and samples/s, peak "
                    "memory (CPU: process peak RSS; CUDA: max_memory_allocated), accuracy and macro-F1.",
        epilog="Example: LORABENCH_DATA_DIR=../shared/data/sst2 .venv/bin/python bench/baseline_trainer.py "
               "configs/tiny-llama.yaml --set steps=5 --out /tmp/trainer.json")
    add_config_arguments(parser)
    parser.add_argument("--sampler", choices=SAMPLERS, default="random",
                        help="the Trainer's train_sampling_strategy (default random, the Trainer's default; "
                             "group_by_length batches similar lengths together, like lorabench's length_grouping)")
    return parser.parse_args(argv)


class TrainClock:
    """A ``TrainerCallback`` timing the training loop alone and resetting the CUDA peak at its start."""

    def __init__(self, device: torch.device) -> None:
        from transformers import TrainerCallback

        clock = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                    torch.cuda.reset_peak_memory_stats(device)
                clock.begin = now(device)

            def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                clock.end = now(device)

        self.callback = _Callback()
        self.begin: float | None = None
        self.end: float | None = None

    @property
    def seconds(self) -> float:
        """Wall seconds from the start of training to its end."""
        if self.begin is None or self.end is None:
            raise RuntimeError("the Trainer never reached on_train_begin/on_train_end")
        return self.end - self.begin


class CountingCollator:
    """Wraps a data collator and records each batch's non-pad tokens on the CPU, adding no device sync.

    With ``dataloader_num_workers=0`` batches are collated in the order they are consumed; the loader may
    collate one batch ahead, so the tokens trained on are the first ``steps × grad_accum`` counts.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.counts: list[int] = []

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.inner(features)
        self.counts.append(int(batch["attention_mask"].sum()))
        return batch


def lora_config(cfg: Any, model: torch.nn.Module) -> Any:
    """PEFT ``LoraConfig`` equal to lorabench's for method ``lora``: rank, alpha, targets, dropout, head."""
    from peft import LoraConfig

    is_cls = cfg.model.head == "cls"
    head = [n for n in ("classifier", "score") if hasattr(model, n)] if is_cls else None
    return LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, target_modules=cfg.target_modules, lora_dropout=cfg.dropout,
                      task_type="SEQ_CLS" if is_cls else "CAUSAL_LM", modules_to_save=head)


def lm_scores(model: torch.nn.Module, batch: dict[str, torch.Tensor], label_ids: list[int]) -> torch.Tensor:
    """Logits of the label words' tokens at each right-padded query's last real position."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    last = batch["attention_mask"].sum(dim=1) - 1
    return logits[torch.arange(logits.shape[0], device=logits.device), last][:, label_ids].float()


@torch.no_grad()
def predict_lm(model: torch.nn.Module, dev: Any, collator: Any, *, batch_size: int, device: torch.device,
               label_ids: list[int], autocast: bool) -> list[int]:
    """Class predictions for the ``lm`` head, in dev order."""
    from torch.utils.data import DataLoader

    model.eval()
    preds: list[int] = []
    for batch in DataLoader(dev, batch_size=batch_size, collate_fn=collator, shuffle=False):
        batch = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            preds += lm_scores(model, batch, label_ids).argmax(dim=1).tolist()
    return preds


@dataclass
class Setup:
    """Everything the Trainer needs, built the way lorabench builds its own run."""

    model: Any
    tokenizer: Any
    train: Any  # datasets.Dataset of token ids (and class labels for cls)
    dev: Any  # datasets.Dataset of token ids and class labels
    collator: CountingCollator
    label_ids: list[int] | None
    base_params: int
    trainable_params: int
    base_dropout: bool
    dropouts_silenced: int
    data_files: dict[str, dict[str, str]]


def build(cfg: Any, device: torch.device) -> Setup:
    """Data, model, tokenizer and adapter as lorabench prepares them (same rows, ids, seeds and init)."""
    import datasets
    from peft import get_peft_model
    from transformers import DataCollatorForLanguageModeling, DataCollatorWithPadding

    from lorabench import data as D
    from lorabench.models import load_model
    from lorabench.tasks.classification import load_data

    head = cfg.model.head
    labelled = load_data(cfg)
    train_rows, dev_rows, data_files = labelled.train, labelled.validation, labelled.files
    if len(train_rows) < cfg.batch_size * cfg.grad_accum:
        raise BenchError(f"batch_size × grad_accum = {cfg.batch_size * cfg.grad_accum} exceeds the "
                         f"{len(train_rows)} training examples")
    torch.manual_seed(cfg.seed)  # as lorabench: a new classifier head's init depends on the run seed only
    model, tok = load_model(cfg.model)
    prompt = D.Prompt(cfg.data.template, tuple(labelled.names), tuple(cfg.data.text_fields())) if head == "lm" else None
    label_ids = D.label_token_ids(tok, prompt) if prompt else None
    enc_train = D.encode(train_rows, tok, head=head, prompt=prompt, max_length=cfg.model.max_length, train=True)
    enc_dev = D.encode(dev_rows, tok, head=head, prompt=prompt, max_length=cfg.model.max_length, train=False)
    base_params = count_params(model)
    base_dropout = cfg.base_dropout  # lorabench's default: the frozen base's dropout off
    silenced = 0 if base_dropout else silence_base_dropout(model)
    model.to(device)  # as lorabench: the adapter is injected into the model on its device
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    torch.manual_seed(cfg.seed)  # as lorabench: the adapter's init depends on the run seed only
    model = get_peft_model(model, lora_config(cfg, model))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if head == "cls":
        train = datasets.Dataset.from_dict({"input_ids": enc_train.input_ids, "labels": enc_train.labels})
        collator = CountingCollator(DataCollatorWithPadding(tok))
    else:
        train = datasets.Dataset.from_dict({"input_ids": enc_train.input_ids})
        collator = CountingCollator(DataCollatorForLanguageModeling(tok, mlm=False))
    dev = datasets.Dataset.from_dict({"input_ids": enc_dev.input_ids, "labels": enc_dev.labels})
    return Setup(model, tok, train, dev, collator, label_ids, base_params, trainable, base_dropout, silenced,
                 data_files)


def training_arguments(cfg: Any, out_dir: str, device: torch.device, sampler: str) -> Any:
    """``TrainingArguments`` carrying the run config; everything else is left at the Trainer's defaults."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=out_dir,
        max_steps=cfg.steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        per_device_eval_batch_size=cfg.eval_batch_size,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type=SCHEDULERS[cfg.schedule],
        warmup_steps=cfg.warmup_steps,
        max_grad_norm=cfg.max_grad_norm or 0.0,
        seed=cfg.seed,
        bf16=cfg.bf16 and device.type == "cuda",
        use_cpu=device.type == "cpu",
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_drop_last=True,  # as lorabench: an epoch's incomplete last batch is dropped
        train_sampling_strategy=sampler,
        remove_unused_columns=False,
        label_names=["labels"],
    )


def predict_dev(trainer: Any, setup: Setup, cfg: Any, device: torch.device) -> list[int]:
    """Dev-set class predictions: ``Trainer.predict`` for cls, the label-word logits for lm."""
    from transformers import DataCollatorWithPadding

    if cfg.model.head == "cls":
        trainer.args.dataloader_drop_last = False  # training drops an incomplete batch; evaluation keeps every row
        return torch.as_tensor(trainer.predict(setup.dev).predictions).argmax(dim=1).tolist()
    return predict_lm(trainer.model, setup.dev.remove_columns("labels"), DataCollatorWithPadding(setup.tokenizer),
                      batch_size=cfg.eval_batch_size, device=device, label_ids=setup.label_ids or [],
                      autocast=cfg.bf16 and device.type == "cuda")


def quiet_libraries() -> None:
    """No progress bars or expected warnings from transformers, datasets and accelerate in the run log."""
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    logging.getLogger("accelerate").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch.utils.data")


def main(argv: list[str] | None = None) -> None:
    """Build, train, evaluate once, write the measurement JSON."""
    args = parse_args(argv)
    cfg = bench_config(args.config, args.sets)
    if cfg.method != "lora":
        raise BenchError(f"method: the baseline implements plain LoRA only (got {cfg.method!r}); use method=lora")
    from transformers import Trainer

    from lorabench.prepare import pick_device

    quiet_libraries()
    device = pick_device(cfg.device)
    setup = build(cfg, device)
    clock = TrainClock(device)
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as out_dir:
        targs = training_arguments(cfg, out_dir, device, args.sampler)
        trainer = Trainer(model=setup.model, args=targs, train_dataset=setup.train, data_collator=setup.collator,
                          processing_class=setup.tokenizer, callbacks=[clock.callback])
        if cfg.model.head == "cls" and cfg.grad_accum > 1 and trainer.model_accepts_loss_kwargs:
            print("warning: with grad_accum > 1 this Trainer version does not rescale the classifier's mean loss "
                  "per micro-batch; gradients are grad_accum times larger than lorabench's", file=sys.stderr)
        output = trainer.train()
        if trainer.state.global_step != cfg.steps:
            raise RuntimeError(f"Trainer stopped after {trainer.state.global_step} of {cfg.steps} steps")
        tokens = sum(setup.collator.counts[: cfg.steps * cfg.grad_accum])
        inner = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
        optimizer = f"{type(inner).__name__} (TrainingArguments.optim={getattr(targs.optim, 'value', targs.optim)})"
        eval_start = now(device)
        preds = predict_dev(trainer, setup, cfg, device)
        eval_seconds = now(device) - eval_start

    labels = list(setup.dev["labels"])
    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_memory_allocated"
    else:
        peak, kind = process_peak_rss_mb(), "cpu_peak_rss"
    loss = float(output.training_loss)
    record = measurement(
        system="trainer", cfg=cfg, device=device, train_seconds=clock.seconds, tokens_seen=tokens,
        eval_seconds=eval_seconds, eval_examples=len(labels), peak_memory_mb=peak, memory_kind=kind,
        accuracy=float(accuracy_score(labels, preds)),
        macro_f1=float(f1_score(labels, preds, average="macro", labels=[0, 1], zero_division=0)),
        trainable_params=setup.trainable_params, base_params=setup.base_params,
        train_loss=loss if math.isfinite(loss) else None, wall_seconds=time.perf_counter() - _STARTED,
        extra={"train_loss_kind": "mean over all steps (Trainer.train().training_loss)",
               "optimizer": optimizer, "trainer_train_runtime": output.metrics.get("train_runtime"),
               "model_accepts_loss_kwargs": bool(trainer.model_accepts_loss_kwargs), "data": setup.data_files,
               "sampler": args.sampler, "base_dropout": setup.base_dropout,
               "dropouts_silenced": setup.dropouts_silenced})
    write_json(args.out, record)


if __name__ == "__main__":
    run_main(main)
