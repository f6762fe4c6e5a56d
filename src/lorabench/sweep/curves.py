"""Learning-rate curves: the one place where a group's trials become points, for ``best`` and the report.

A point is every trial of a group at one learning rate (and, for a method with a second learning-rate
axis such as LoRA+'s ``lr_b``, one value of that axis), over its seeds. The one rule for seeds that did
not finish ``ok`` (diverged, collapsed, failed, oom): they are left out of the point's mean and std, and a
point where none finished ok has no accuracy and is never the best; ``n_ok`` and ``counts`` say how many
seeds finished and how.

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
        accs = [a for a in (final(r) for r in rs) if a is not None]
        f1s = [f for f in (final(r, "macro_f1") for r in rs) if f is not None]
        point = CurvePoint(lr=lr, accuracy=stat(accs) if accs else None, macro_f1=stat(f1s) if f1s else None,
                           seeds=len(rs),
                           statuses=sorted({r["status"].value for r in rs}),
                           n_ok=sum(final(r) is not None for r in rs),
                           counts=dict(Counter(r["status"].value for r in rs)), axes=rs[0]["axes"])
        if paired:
            point["paired"] = dict(paired)
        out.append(point)
    return out


def best_point(curve: list[CurvePoint]) -> CurvePoint | None:
    """The point of highest mean accuracy over ok seeds (the first, i.e. the smallest rate, among equals); None if
    no trial of the curve finished ok."""
    scored = [c for c in curve if c["accuracy"] is not None]
    return max(scored, key=lambda c: c["accuracy"]["mean"]) if scored else None  # type: ignore[index]


def per_rate(curve: list[CurvePoint]) -> list[CurvePoint]:
    """One point per learning rate: where a second rate axis varies, the best point at that rate."""
    by_lr: dict[float, list[CurvePoint]] = defaultdict(list)
    for c in curve:
        by_lr[c["lr"]].append(c)
    return [best_point(by_lr[lr]) or by_lr[lr][0] for lr in sorted(by_lr)]
