"""The classification task: labelled texts (one field or a pair) in N classes, predicted by the ``cls`` head's
logits or by the ``lm`` head's label words, scored by accuracy and macro-F1.

The best setting is chosen on the validation split; a ``test`` split, when configured, is evaluated once at the
end of training and reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .. import data as D
from ..config import ClassificationData, RunConfig
from ..data.rows import read_rows
from ..errors import ConfigError
from ..evaluate import metrics, predict_many
from ..generate import ModelCall
from .base import Evaluation


@dataclass
class Labelled:
    """A classification config's data: its examples per split, class names, and the files they came from."""

    train: list[D.Example]
    validation: list[D.Example]
    test: list[D.Example] | None
    classes: list[str]  # label values as text, class k = classes[k]
    names: list[str]  # what each class is called (its label word for the lm head)
    files: dict[str, dict[str, str]]


def _names(data: ClassificationData, classes: list[str], head: str) -> list[str]:
    words = data.label_words
    if words is None:
        if not all(c.lstrip("-").isdigit() for c in classes):
            words = list(classes)  # text labels name themselves
        elif len(classes) == 2 and head == "lm":
            words = ["negative", "positive"]  # SST-2's, the default task's
        elif head == "lm":
            raise ConfigError(f"data.label_words: the lm head needs one word per class ({len(classes)} classes: "
                              f"{classes})")
        else:
            words = list(classes)
    if len(words) != len(classes):
        raise ConfigError(f"data.label_words: {len(words)} words for {len(classes)} classes {classes}")
    return list(words)


def load_data(cfg: RunConfig) -> Labelled:
    """The splits of a classification config, read and checked (bad input: a ``LorabenchError``)."""
    data = cfg.data
    assert isinstance(data, ClassificationData) and cfg.model.head is not None
    root, fields = data.root(), data.text_fields()
    train_rows = read_rows(data.train, root)
    classes = D.classes_of(train_rows, data.label, data.labels)
    splits = {"train": train_rows, "validation": read_rows(data.validation, root)}
    if data.test is not None:
        splits["test"] = read_rows(data.test, root)
    ex = {k: D.examples_of(rows, fields, data.label, classes, declared=data.labels is not None)
          for k, rows in splits.items()}
    for key, n, split in (("n_train", data.n_train, "train"), ("n_eval", data.n_eval, "validation")):
        if n is not None and n > len(ex[split]):
            raise ConfigError(f"data.{key}: {n} exceeds the {len(ex[split])} rows of {splits[split].source} "
                              f"(set it to at most {len(ex[split])}, or null for all)")
    files = {k: {"source": rows.source, "sha256": rows.sha256} for k, rows in splits.items()}
    return Labelled(D.subset(ex["train"], data.n_train, data.subset_seed),
                    D.stratified(ex["validation"], data.n_eval, data.subset_seed), ex.get("test"), classes,
                    _names(data, classes, cfg.model.head), files)


class Classification:
    artefact = "predictions.jsonl"

    def __init__(self, cfg: RunConfig) -> None:
        assert isinstance(cfg.data, ClassificationData) and cfg.model.head is not None
        self.data, self.head, self.max_length = cfg.data, cfg.model.head, cfg.model.max_length
        self.labelled = load_data(cfg)
        self.files, self.names = self.labelled.files, self.labelled.names
        self.held_out: tuple[str, ...] = ("test",) if self.labelled.test is not None else ()
        self.size = len(self.labelled.train)
        n = len(self.names)
        counts = {"train": D.label_counts(self.labelled.train, n),
                  "validation": D.label_counts(self.labelled.validation, n)}
        if self.labelled.test is not None:
            counts["test"] = D.label_counts(self.labelled.test, n)
        self.counts: dict[str, Any] = {"label_counts": counts, "classes": self.names}

    def tokenize(self, tokenizer: Any) -> None:
        fields = tuple(self.data.text_fields())
        self.prompt = D.Prompt(self.data.template, tuple(self.names), fields) if self.head == "lm" else None
        self.label_ids = D.label_token_ids(tokenizer, self.prompt) if self.prompt else None
        self.pad_id = tokenizer.pad_token_id
        self.train = D.encode(self.labelled.train, tokenizer, head=self.head, prompt=self.prompt,
                              max_length=self.max_length, train=True)
        self.dev = D.encode(self.labelled.validation, tokenizer, head=self.head, prompt=self.prompt,
                            max_length=self.max_length, train=False)
        self.test = None if self.labelled.test is None else D.encode(
            self.labelled.test, tokenizer, head=self.head, prompt=self.prompt, max_length=self.max_length, train=False)

    def describe(self) -> list[str]:
        lines = []
        for split, counts in self.counts["label_counts"].items():
            total = max(1, sum(counts.values()))
            lines.append(f"{split}: {sum(counts.values())} examples, labels " + ", ".join(
                f"{self.names[y]}={n} ({n / total:.1%})" for y, n in counts.items()))
        return lines

    def evaluate(self, call: ModelCall, k: int, *, batch_size: int, device: torch.device, autocast: bool,
                 progress: bool, split: str = "validation") -> list[Evaluation]:
        def logits(b: dict[str, torch.Tensor], sizes: list[int]) -> torch.Tensor:
            return call(sizes, input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits

        enc = self.test if split == "test" else self.dev
        assert enc is not None
        preds = predict_many(logits, k, enc, head=self.head, pad_id=self.pad_id, batch_size=batch_size,
                             device=device, label_ids=self.label_ids, autocast=autocast, progress=progress)
        return [Evaluation(metrics(p, len(self.names)), p.rows(self.names), len(enc),
                           one_class=len(set(p.preds)) == 1 and len(set(p.labels)) > 1,
                           extra={"majority": majority(p.labels)}) for p in preds]


def majority(labels: list[int]) -> float:
    """The accuracy of always predicting the most frequent class (the baseline a classifier must beat)."""
    return max(labels.count(y) for y in set(labels)) / len(labels) if labels else 0.0
