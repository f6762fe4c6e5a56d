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

``hessian`` (:func:`hessian`): each group's λ_max at init is measured first; the reference method's groups run
their whole grid (or ``adaptive``, then :func:`climb` to a point whose neighbours were both run); every other group starts at the grid point nearest its predicted rate
lr_ref · (λ_ref / λ)^γ (:mod:`lorabench.sweep.prediction`, lr_ref the reference's best rate by ``lorabench best``'s
rule) and one point on each side, and while its best point (compared as ``adaptive`` compares them) is on an edge
of that window with grid beyond, the window grows that way by one point. M methods on an n-point grid then cost
about n + 3(M − 1) rates instead of n·M.

A strategy is a pure function of the stored results, so a resumed sweep proposes the same trials.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from statistics import mean
from typing import Any

from ..records import Status, TrialRow
from .prediction import nearest_index, predict_lr, reference_group
from .space import TrialSpec


Score = tuple[float, float]
Done = Mapping[str, TrialRow | dict[str, Any]]  # trial key → its stored row


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


def grid(specs: list[TrialSpec], done: Done) -> list[TrialSpec]:
    return specs


def _rate_score(specs: list[TrialSpec], done: Done) -> Score | None:
    """The mean score over the seeds of one learning rate; None until every seed finished."""
    vals = [trial_score(done.get(s.key)) for s in specs]
    if any(v is None for v in vals):
        return None
    return (mean(v[0] for v in vals), mean(v[1] for v in vals))  # type: ignore[index]


def _by_lr(specs: list[TrialSpec]) -> tuple[list[float], list[list[TrialSpec]]]:
    lrs = sorted({s.lr for s in specs})
    return lrs, [[s for s in specs if s.lr == lr] for lr in lrs]


def _by_group(specs: list[TrialSpec]) -> dict[str, list[TrialSpec]]:
    out: dict[str, list[TrialSpec]] = defaultdict(list)
    for s in specs:
        out[s.group].append(s)
    return out


def _pair(s: TrialSpec) -> tuple[tuple[str, Any], ...]:
    """A trial's second learning-rate axes (e.g. LoRA+'s ``lr_b``): with ``lr``, its point on the curve."""
    return tuple(sorted((k, v) for k, v in s.axes.items() if k.startswith("lr_")))


def _top_by_accuracy(cells: Mapping[Any, list[TrialSpec]], done: Done) -> Any:
    """The key of the cell with the highest mean accuracy over its seeds finished ok, the smallest key among equals
    (``lorabench best``'s rule, :func:`lorabench.sweep.curves.best_point`); None if no seed finished ok."""
    accs = {k: _mean_ok_accuracy([done[s.key] for s in cells[k]]) for k in sorted(cells)}
    scored = [k for k, a in accs.items() if a is not None]
    return max(scored, key=lambda k: accs[k]) if scored else None  # type: ignore[arg-type,return-value]


def _chosen(at: list[list[TrialSpec]], done: Done) -> list[int]:
    """Indices of the rates to run: the coarse points, then one refinement step once they are all scored."""
    n = len(at)
    coarse = list(range(1, n, 3)) if n > 2 else list(range(n))
    scores = [_rate_score(at[i], done) for i in coarse]
    if n <= 2 or any(v is None for v in scores):
        return coarse
    best = coarse[max(range(len(coarse)), key=lambda j: scores[j])]  # type: ignore[arg-type,return-value]
    worst = (-math.inf, -math.inf)
    lo = _rate_score(at[best - 3], done) if best - 3 >= 0 else worst
    hi = _rate_score(at[best + 3], done) if best + 3 < n else worst
    step = 1 if (hi or worst) > (lo or worst) else -1
    return [*coarse, best + step if 0 <= best + step < n else best - step]


def adaptive(specs: list[TrialSpec], done: Done) -> list[TrialSpec]:
    out: list[TrialSpec] = []
    for group_specs in _by_group(specs).values():
        _, at = _by_lr(group_specs)
        for i in _chosen(at, done):
            out += at[i]
    return out


Strategy = Callable[[list[TrialSpec], Done], list[TrialSpec]]


def _lr_score(specs: list[TrialSpec], done: Done) -> Score | None:
    """A learning rate's score: over its points (one, or one per second rate), the best mean over seeds."""
    pairs: dict[tuple[tuple[str, Any], ...], list[TrialSpec]] = defaultdict(list)
    for s in specs:
        pairs[_pair(s)].append(s)
    scores = [_rate_score(p, done) for p in pairs.values()]
    return None if any(v is None for v in scores) else max(scores)  # type: ignore[type-var]


def window(at: list[list[TrialSpec]], start: int, done: Done) -> list[int]:
    """Indices of the rates to run for a group predicted at index ``start`` of its sorted grid: ``start`` and one
    point each side; once all are scored, while the best is on an edge with grid beyond it, one more point that
    way."""
    lo, hi = max(0, start - 1), min(len(at) - 1, start + 1)
    while True:
        scores = [_lr_score(at[i], done) for i in range(lo, hi + 1)]
        if any(v is None for v in scores):
            break
        top = lo + max(range(len(scores)), key=lambda j: scores[j])  # type: ignore[arg-type,return-value]
        if top == lo and lo > 0:
            lo -= 1
        elif top == hi and hi < len(at) - 1:
            hi += 1
        else:
            break
    return list(range(lo, hi + 1))


def climb(at: list[list[TrialSpec]], start: list[int], done: Done) -> list[int]:
    """``start`` (indices of rates), then, once all are scored, the unexplored neighbours of the best one, until the
    best has none: a hill-climb to a local best, so that the reference's rate, which every prediction scales, is a
    grid point no better neighbour of which was left unexplored."""
    run = set(start)
    while True:
        scores = {i: _lr_score(at[i], done) for i in run}
        if any(v is None for v in scores.values()):
            break
        top = max(sorted(run), key=lambda i: scores[i])  # type: ignore[arg-type,return-value]
        new = {j for j in (top - 1, top + 1) if 0 <= j < len(at)} - run
        if not new:
            break
        run |= new
    return sorted(run)


def reference_best(specs: list[TrialSpec], done: Done) -> float | None:
    """The reference group's best rate once every proposed trial finished, by ``lorabench best``'s rule (the highest
    mean accuracy over the seeds finished ok, the smallest rate among equals); None before, or if none did."""
    if any(trial_score(done.get(s.key)) is None for s in specs):
        return None
    lrs, at = _by_lr(specs)
    top = _top_by_accuracy(dict(zip(lrs, at, strict=True)), done)
    return float(top) if top is not None else None


def hessian(lambdas: Mapping[str, float], *, reference: str, exponent: float = 1.0,
            reference_search: str = "grid") -> Strategy:
    """The ``hessian`` strategy over groups whose λ_max (group JSON → λ, checked positive) is known; see the module
    docstring. A group whose reference found no rate that finished ok runs its whole grid."""

    def ref_search(ss: list[TrialSpec], done: Done) -> list[TrialSpec]:
        if reference_search != "adaptive":
            return ss
        _, at = _by_lr(ss)
        return [s for i in climb(at, _chosen(at, done), done) for s in at[i]]

    def propose(specs: list[TrialSpec], done: Done) -> list[TrialSpec]:
        groups = _by_group(specs)
        chosen = {g: ref_search(ss, done) for g, ss in groups.items() if json.loads(g)["method"] == reference}
        out = [s for ss in chosen.values() for s in ss]
        for g, ss in groups.items():
            if g in chosen:
                continue
            ref = reference_group(g, reference)
            lr_ref = reference_best(chosen[ref], done)
            if lr_ref is None:
                if any(trial_score(done.get(s.key)) is None for s in chosen[ref]):
                    continue  # the reference is still running
                out += ss
                continue
            lrs, at = _by_lr(ss)
            start = nearest_index(lrs, predict_lr(lr_ref, lambdas[ref], lambdas[g], exponent))
            out += [s for i in window(at, start, done) for s in at[i]]
        return out

    return propose


def _mean_ok_accuracy(rows: list[Any]) -> float | None:
    """The mean final accuracy over the seeds that finished ok (``lorabench best``'s rule); None if none did."""
    accs = [float(r["result"]["final"]["accuracy"]) for r in rows
            if r["status"] == Status.OK and (r.get("result") or {}).get("final")]
    return mean(accs) if accs else None


def at_best(strategy: Strategy, extra: set[int]) -> Strategy:
    """``strategy`` over the trials of every seed but ``extra``; then, per group whose proposed trials all finished,
    the ``extra`` seeds at its best point (a learning rate, with any second rate). The best point is chosen as
    :func:`lorabench.sweep.curves.best_point` chooses it (the highest mean accuracy over the seeds finished ok there,
    the smallest rate among equals), so when the extra seeds move the best to another point, that point gets them
    too: the proposal settles where ``lorabench best`` reports."""

    def point(s: TrialSpec) -> tuple[float, tuple[tuple[str, Any], ...]]:
        return (s.lr, _pair(s))

    def propose(specs: list[TrialSpec], done: Done) -> list[TrialSpec]:
        chosen = strategy([s for s in specs if s.seed not in extra], done)
        out = list(chosen)
        for group, trials in _by_group(chosen).items():
            extras = [s for s in specs if s.group == group and s.seed in extra]
            while True:
                ran = trials + [s for s in extras if s in out]
                if any(trial_score(done.get(s.key)) is None for s in ran):
                    break  # decide once every proposed seed has finished
                top = _top_by_accuracy({p: [s for s in ran if point(s) == p] for p in {point(s) for s in trials}},
                                       done)
                if top is None:
                    break
                more = [s for s in extras if point(s) == top and s not in out]
                if not more:
                    break
                out += more
        return out

    return propose


STRATEGIES: dict[str, Strategy] = {
    "grid": grid, "adaptive": adaptive}
