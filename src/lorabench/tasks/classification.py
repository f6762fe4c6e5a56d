"""The classification task (SST-2): the ``cls`` head's logits or the ``lm`` head's label words, scored by
accuracy and macro-F1 over the dev set."""

from __future__ import annotations

from typing import Any

import torch

from .. import data as D
from ..config import ClassificationData, RunConfig
from ..errors import ConfigError, DataError
from ..evaluate import metrics, predict_many
from ..generate import ModelCall
from .base import Evaluation


def load_data(cfg: RunConfig) -> tuple[list[D.Example], list[D.Example], dict[str, dict[str, str]]]:
    """(training subset, dev rows, data files) of a classification config."""
    data = cfg.data
    assert isinstance(data, ClassificationData)
    train_split, dev_split = D.load_sst2(data.resolved_dir())
    for key, n, split in (("n_train", data.n_train, train_split), ("n_eval", data.n_eval, dev_split)):
        if n is not None and n > len(split.examples):
            raise ConfigError(f"data.{key}: {n} exceeds the {len(split.examples)} rows of {split.source} "
                              f"(set it to at most {len(split.examples)}, or null for all)")
    train = D.subset(train_split.examples, data.n_train, data.subset_seed)
    dev = list(dev_split.examples[: data.n_eval] if data.n_eval else dev_split.examples)
    files = {"train": {"source": train_split.source, "sha256": train_split.sha256},
             "dev": {"source": dev_split.source, "sha256": dev_split.sha256}}
    return train, dev, files


def file_hashes(cfg: RunConfig) -> dict[str, str] | None:
    assert isinstance(cfg.data, ClassificationData)
    folder = cfg.data.resolved_dir()
    if folder is None:
        return None
    try:
        train, dev = D.load_sst2(folder)
    except DataError:
        return None
    return {"train": train.sha256, "dev": dev.sha256}


class Classification:
    artefact = "predictions.jsonl"

    def __init__(self, cfg: RunConfig) -> None:
        assert isinstance(cfg.data, ClassificationData) and cfg.model.head is not None
        self.data, self.head, self.max_length = cfg.data, cfg.model.head, cfg.model.max_length
        self.train_ex, self.dev_ex, self.files = load_data(cfg)
        self.size = len(self.train_ex)
        self.counts: dict[str, Any] = {"label_counts": {"train": D.label_counts(self.train_ex),
                                                        "dev": D.label_counts(self.dev_ex)}}

    def tokenize(self, tokenizer: Any) -> None:
        self.prompt = D.Prompt(self.data.template, tuple(self.data.label_words)) if self.head == "lm" else None
        self.label_ids = D.label_token_ids(tokenizer, self.prompt) if self.prompt else None
        self.pad_id = tokenizer.pad_token_id
        self.train = D.encode(self.train_ex, tokenizer, head=self.head, prompt=self.prompt, max_length=self.max_length,
                              train=True)
        self.dev = D.encode(self.dev_ex, tokenizer, head=self.head, prompt=self.prompt, max_length=self.max_length,
                            train=False)

    def describe(self) -> list[str]:
        lines = []
        for split, counts in self.counts["label_counts"].items():
            total = max(1, sum(counts.values()))
            lines.append(f"{split}: {sum(counts.values())} examples, labels " + ", ".join(
                f"{self.data.label_words[y]}={n} ({n / total:.1%})" for y, n in counts.items()))
        return lines

    def evaluate(self, call: ModelCall, k: int, *, batch_size: int, device: torch.device, autocast: bool,
                 progress: bool) -> list[Evaluation]:
        def logits(b: dict[str, torch.Tensor], sizes: list[int]) -> torch.Tensor:
            return call(sizes, input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits

        preds = predict_many(logits, k, self.dev, head=self.head, pad_id=self.pad_id, batch_size=batch_size,
                             device=device, label_ids=self.label_ids, autocast=autocast)
        return [Evaluation(metrics(p), p.rows(self.data.label_words), len(self.dev),
                           one_class=len(set(p.preds)) == 1 and len(set(p.labels)) > 1) for p in preds]
