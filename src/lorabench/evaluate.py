"""Predictions and metrics on the dev set.

``cls`` head: the classifier's logits.  ``lm`` head: the next-token logits at the final position of
the query (the prompt without its label), restricted to the label words' tokens; the larger wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sklearn.metrics import accuracy_score, f1_score
from torch import nn

from .data import Encoded, eval_batches


@dataclass
class Predictions:
    index: list[int]
    labels: list[int]
    preds: list[int]
    scores: list[list[float]]

    def rows(self, label_words: list[str]) -> list[dict]:
        return [{"index": i, "label": y, "prediction": p, "scores": dict(zip(label_words, s))}
                for i, y, p, s in zip(self.index, self.labels, self.preds, self.scores)]


def class_scores(model: nn.Module, batch: dict[str, torch.Tensor], head: str,
                 label_ids: list[int] | None) -> torch.Tensor:
    """Per-class scores (rows: examples, columns: labels) from one forward pass."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    if head == "cls":
        return logits
    last = batch["attention_mask"].sum(dim=1) - 1  # right padding: the final real position
    return logits[torch.arange(logits.shape[0], device=logits.device), last][:, label_ids]


@torch.no_grad()
def predict(model: nn.Module, enc: Encoded, *, head: str, pad_id: int, batch_size: int,
            device: torch.device, label_ids: list[int] | None = None, autocast: bool = False) -> Predictions:
    was_training = model.training
    model.eval()
    index, preds, scores = [], [], []
    for idx, batch in eval_batches(enc, batch_size, pad_id):
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            s = class_scores(model, batch, head, label_ids).float()
        index += idx
        preds += s.argmax(dim=1).tolist()
        scores += s.tolist()
    model.train(was_training)
    order = sorted(range(len(index)), key=index.__getitem__)
    return Predictions([index[i] for i in order], [enc.labels[index[i]] for i in order],
                       [preds[i] for i in order], [scores[i] for i in order])


def metrics(p: Predictions) -> dict[str, float]:
    return {"accuracy": float(accuracy_score(p.labels, p.preds)),
            "macro_f1": float(f1_score(p.labels, p.preds, average="macro", labels=[0, 1], zero_division=0))}
