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
from statistics import mean, stdev
from typing import Any

from ..records import CurvePoint, Stat, Status, TrialRow

RATE_PREFIX = "lr_"


def rate_axes(axes: dict[str, Any]) -> dict[str, float]:
    """The second learning-rate axes among a trial's ``axes`` (e.g. ``{"lr_b": 4e-4}``)."""
    return {k: v for k, v in axes.items() if k.startswith(RATE_PREFIX)}


def stat(xs: list[float]) -> Stat:
    """Mean and sample standard deviation (ddof = 1) over seeds; the std is None for one seed (unknown, not 0)."""
    return Stat(mean=mean(xs), std=stdev(xs) if len(xs) > 1 else None)


def final(r: TrialRow, key: str = "accuracy") -> float | None:
    """A trial's final metric ``key`` if it finished ``ok`` with one, else None: ``accuracy`` (the headline
    figure), ``macro_f1``, or the name of one of a generative task's evaluation sets."""
    res = r["result"] if r["status"] is Status.OK else None
    f: dict[str, Any] = dict(res.get("final") or {}) if res else {}
    value = f.get(key) if key in ("accuracy", "macro_f1") else (f.get("sets") or {}).get(key)
    return float(value) if value is not None else None


def set_names(rows: list[TrialRow]) -> list[str]:
    """The evaluation sets of the trials' results, in their order (none for a classification task)."""
    names: dict[str, None] = {}
    for r in rows:
        fin = r["result"]["final"] if r["result"] else None
        for name in (fin.get("sets") or {}) if fin else {}:
            names[name] = None
    return list(names)


def _stat_of(rs: list[TrialRow], key: str) -> Stat | None:
    xs = [x for x in (final(r, key) for r in rs) if x is not None]
    return stat(xs) if xs else None


def points(rows: list[TrialRow]) -> list[CurvePoint]:
    """A group's curve, sorted by learning rate (then by the second rate axes)."""
    cells: dict[tuple[float, tuple[tuple[str, float], ...]], list[TrialRow]] = defaultdict(list)
    for r in rows:
        cells[(r["lr"], tuple(sorted(rate_axes(r["axes"]).items())))].append(r)
    names = set_names(rows)
    out = []
    for (lr, paired), rs in sorted(cells.items()):
        point = CurvePoint(lr=lr, accuracy=_stat_of(rs, "accuracy"), macro_f1=_stat_of(rs, "macro_f1"),
                           seeds=len(rs),
                           statuses=sorted({r["status"].value for r in rs}),
                           n_ok=sum(final(r) is not None for r in rs),
                           counts=dict(Counter(r["status"].value for r in rs)), axes=rs[0]["axes"])
        if names:
            point["sets"] = {n: st for n in names if (st := _stat_of(rs, n)) is not None}
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
