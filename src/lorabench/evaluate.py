"""Predictions and metrics on the dev set.

``cls`` head: the classifier's logits.  ``lm`` head: the next-token logits at the final position of
the query (the prompt without its label), restricted to the label words' tokens; the larger wins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm
import torch

from .data import Encoded, eval_batches
from .records import Metrics


@dataclass
class Predictions:
    index: list[int]
    labels: list[int]
    preds: list[int]
    scores: list[list[float]]

    def rows(self, label_words: list[str]) -> list[dict]:
        return [{"index": i, "label": y, "prediction": p, "scores": dict(zip(label_words, s))}
                for i, y, p, s in zip(self.index, self.labels, self.preds, self.scores)]


def class_scores(logits: torch.Tensor, batch: dict[str, torch.Tensor], head: str,
                 label_ids: list[int] | None) -> torch.Tensor:
    """Per-class scores (rows: examples, columns: labels) from the model's logits on ``batch``."""
    if head == "cls":
        return logits
    last = batch["attention_mask"].sum(dim=1) - 1  # right padding: the final real position
    return logits[torch.arange(logits.shape[0], device=logits.device), last][:, label_ids]


@torch.no_grad()
def predict_many(forward: Callable[[dict[str, torch.Tensor], list[int]], torch.Tensor], k: int, enc: Encoded, *,
                 head: str, pad_id: int, batch_size: int, device: torch.device, label_ids: list[int] | None = None,
                 autocast: bool = False, progress: bool = False) -> list[Predictions]:
    """Predictions of K models on ``enc``; ``forward(batch, sizes)`` gives the logits of the K models on ``batch``
    repeated K times (``sizes`` rows each): a fused model's routed forward, or one model's when K = 1."""
    index: list[int] = []
    preds: list[list[int]] = [[] for _ in range(k)]
    scores: list[list[list[float]]] = [[] for _ in range(k)]
    bar = tqdm(total=len(enc), desc="evaluating", unit="example", disable=not progress, leave=False, dynamic_ncols=True)
    for idx, batch in eval_batches(enc, batch_size, pad_id):
        bar.update(len(idx))
        batch = {name: v.to(device) for name, v in batch.items()}
        stacked = batch if k == 1 else {name: v.repeat(k, *([1] * (v.dim() - 1))) for name, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = forward(stacked, [len(idx)] * k)
        for j, lg in enumerate(logits.split(len(idx))):
            s = class_scores(lg, batch, head, label_ids).float()
            preds[j] += s.argmax(dim=1).tolist()
            scores[j] += s.tolist()
        index += idx
    bar.close()
    order = sorted(range(len(index)), key=index.__getitem__)
    labels = [enc.labels[index[i]] for i in order]
    return [Predictions([index[i] for i in order], labels, [p[i] for i in order], [s[i] for i in order])
            for p, s in zip(preds, scores)]


BOOTSTRAP_RESAMPLES = 2000


def accuracy_interval(*sets: list[bool], level: float = 0.95, seed: int = 0) -> list[float]:
    """The percentile bootstrap interval of the mean of ``correct`` over resampled examples (scipy), seeded so
    that it is reproducible. Given several sets, the interval of the mean of their accuracies, each set
    resampled on its own (a stratified bootstrap: a generative task's headline)."""
    from scipy.stats import bootstrap

    xs = [np.asarray(c, dtype=float) for c in sets]
    point = float(np.mean([x.mean() for x in xs])) if xs and all(len(x) for x in xs) else 0.0
    if not xs or any(len(x) < 2 for x in xs) or all(x.min() == x.max() for x in xs):
        return [point, point]

    def mean_of_means(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean([s.mean(axis=axis) for s in samples], axis=0)

    res = bootstrap(tuple(xs), mean_of_means, confidence_level=level, n_resamples=BOOTSTRAP_RESAMPLES,
                    method="percentile", rng=np.random.default_rng(seed))
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def metrics(p: Predictions, n_classes: int) -> Metrics:
    """Accuracy with its 95% bootstrap interval over the examples, and macro-F1 (the mean F1 over all ``n_classes``
    classes, a class never predicted scoring 0)."""
    from sklearn.metrics import accuracy_score, f1_score  # here: importing sklearn costs every trial process ~0.8 s

    correct = [y == q for y, q in zip(p.labels, p.preds)]
    return Metrics(accuracy=float(accuracy_score(p.labels, p.preds)),
                   macro_f1=float(f1_score(p.labels, p.preds, average="macro", labels=list(range(n_classes)),
                                           zero_division=0)),
                   accuracy_ci=accuracy_interval(correct))
