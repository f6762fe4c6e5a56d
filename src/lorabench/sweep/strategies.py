"""Search strategies: which trials to run next, given the results so far.

``grid``: every trial. ``adaptive``: per group (a method and its other axes), coarse-to-fine on the
sorted learning-rate grid of n points: first every third point starting at the second (indices
1, 4, 7, …, so each coarse point stands for itself and its two neighbours), then one refinement
step from the best coarse point towards its better coarse neighbour. That costs ⌈(n−1)/3⌉ + 1
learning rates instead of n (5 of 12, 3 of 6), and when the true best lies beside the best coarse
point it is found within one grid step. Every seed of a chosen learning rate runs.

Points are compared by dev accuracy (mean over seeds), ties broken by the mean training loss of
the last steps: short runs often sit at chance accuracy over much of the grid, and the loss still
tells which side of the plateau is moving.

A strategy is a pure function of the stored results, so a resumed sweep proposes the same trials.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from statistics import mean
from typing import Any

from ..records import Status, TrialRow
from .space import TrialSpec


Score = tuple[float, float]


def trial_score(row: TrialRow | dict[str, Any] | None) -> Score | None:
    """(final dev accuracy, −last training loss) of a finished trial; (0, −inf) for a diverged or failed
    one; None if not finished."""
    if row is None or not Status(row["status"]).is_finished:
        return None
    result = row.get("result") or {}
    final, loss = result.get("final"), result.get("train_loss_last")
    if row["status"] != Status.OK or not final:
        return (0.0, -math.inf)
    return (float(final["accuracy"]), -float(loss) if loss is not None else -math.inf)


def grid(specs: list[TrialSpec], done: dict[str, dict[str, Any]]) -> list[TrialSpec]:
    return specs


def adaptive(specs: list[TrialSpec], done: dict[str, dict[str, Any]]) -> list[TrialSpec]:
    by_group: dict[str, list[TrialSpec]] = defaultdict(list)
    for s in specs:
        by_group[s.group].append(s)
    out: list[TrialSpec] = []
    for group_specs in by_group.values():
        lrs = sorted({s.lr for s in group_specs})
        at = defaultdict(list)
        for s in group_specs:
            at[s.lr].append(s)

        def score(i: int) -> Score | None:
            vals = [trial_score(done.get(s.key)) for s in at[lrs[i]]]
            if any(v is None for v in vals):
                return None
            return (mean(v[0] for v in vals), mean(v[1] for v in vals))  # type: ignore[index]

        coarse = list(range(1, len(lrs), 3)) if len(lrs) > 2 else list(range(len(lrs)))
        chosen = list(coarse)
        scores = [score(i) for i in coarse]
        if all(v is not None for v in scores) and len(lrs) > 2:
            best = coarse[max(range(len(coarse)), key=lambda j: scores[j])]  # first best: the smaller lr
            worst = (-math.inf, -math.inf)
            lo = score(best - 3) if best - 3 >= 0 else worst
            hi = score(best + 3) if best + 3 < len(lrs) else worst
            step = 1 if (hi or worst) > (lo or worst) else -1
            target = best + step if 0 <= best + step < len(lrs) else best - step
            chosen.append(target)
        for i in chosen:
            out += at[lrs[i]]
    return out


STRATEGIES: dict[str, Callable[[list[TrialSpec], dict[str, dict[str, Any]]], list[TrialSpec]]] = {
    "grid": grid, "adaptive": adaptive}
