"""Learning-rate curves: the one place where a group's trials become points, for ``best`` and the report.

A point is every trial of a group at one learning rate (and, for a method with a second learning-rate
axis such as LoRA+'s ``lr_b``, one value of that axis), over its seeds. The one rule for seeds that did
not finish ``ok`` (diverged, failed, oom): they count as accuracy 0 in the point's mean, so a rate where
runs break is never chosen as the best; ``n_ok`` and ``counts`` say how many seeds did finish.

Second learning-rate axes are the axes whose name starts with ``lr_`` (a method declares which option
such an axis sets, see ``Method.rate_axes``); nothing here names a method.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from statistics import mean, pstdev
from typing import Any, Literal

from ..records import CurvePoint, Stat, Status, TrialRow

RATE_PREFIX = "lr_"


def rate_axes(axes: dict[str, Any]) -> dict[str, float]:
    """The second learning-rate axes among a trial's ``axes`` (e.g. ``{"lr_b": 4e-4}``)."""
    return {k: v for k, v in axes.items() if k.startswith(RATE_PREFIX)}


def stat(xs: list[float]) -> Stat:
    return Stat(mean=mean(xs), std=pstdev(xs) if len(xs) > 1 else 0.0)


def final(r: TrialRow, key: Literal["accuracy", "macro_f1"] = "accuracy") -> float | None:
    """A trial's final dev metric if it finished ``ok`` with one, else None."""
    res = r["result"] if r["status"] is Status.OK else None
    f = res.get("final") if res else None
    return float(f[key]) if f and f.get(key) is not None else None


def points(rows: list[TrialRow]) -> list[CurvePoint]:
    """A group's curve, sorted by learning rate (then by the second rate axes)."""
    cells: dict[tuple[float, tuple[tuple[str, float], ...]], list[TrialRow]] = defaultdict(list)
    for r in rows:
        cells[(r["lr"], tuple(sorted(rate_axes(r["axes"]).items())))].append(r)
    out = []
    for (lr, paired), rs in sorted(cells.items()):
        accs = [final(r) or 0.0 for r in rs]
        f1s = [final(r, "macro_f1") or 0.0 for r in rs]
        point = CurvePoint(lr=lr, accuracy=stat(accs), macro_f1=stat(f1s), seeds=len(rs),
                           statuses=sorted({r["status"].value for r in rs}),
                           n_ok=sum(final(r) is not None for r in rs),
                           counts=dict(Counter(r["status"].value for r in rs)), axes=rs[0]["axes"])
        if paired:
            point["paired"] = dict(paired)
        out.append(point)
    return out


def best_point(curve: list[CurvePoint]) -> CurvePoint:
    """The point of highest mean accuracy (the first, i.e. the smallest rate, among equals)."""
    return max(curve, key=lambda c: c["accuracy"]["mean"])


def per_rate(curve: list[CurvePoint]) -> list[CurvePoint]:
    """One point per learning rate: where a second rate axis varies, the best point at that rate."""
    by_lr: dict[float, list[CurvePoint]] = defaultdict(list)
    for c in curve:
        by_lr[c["lr"]].append(c)
    return [best_point(by_lr[lr]) for lr in sorted(by_lr)]
