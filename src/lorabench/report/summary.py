"""The report's prose: a few sentences computed from the sweep, each stating numbers that are in its tables."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from statistics import mean
from typing import Any

from ..records import BAD
from ..sweep.curves import rate_axes
from .data import (REFERENCE, SweepData, bad_trials, final, final_figure, final_split, fmt_value, group_label, lambda_max, paired_test,
                   per_method_best, sensitivity_axes, stat_of)


def pts(x: float) -> str:
    return f"{100 * x:.2f}"


def ratio(x: float) -> str:
    return f"{x:.3g}" if x < 1000 else f"{x:,.0f}"


def names(xs: list[str]) -> str:
    return xs[0] if len(xs) == 1 else ", ".join(xs[:-1]) + " and " + xs[-1]


def _trials(data: SweepData) -> str:
    counts: Counter[str] = Counter(r["status"] for r in data.rows)  # Status is a str: counts["ok"] is its count
    order = ["ok", "diverged", "oom", "failed", "running", "pending"]
    parts = [f"{counts[s]} {s}" for s in order if counts.get(s)] + [
        f"{v} {k}" for k, v in counts.items() if k not in order]
    s = (f"{len(data.rows)} trials ({data.strategy or 'unknown'} search) of {len(data.methods)} method"
         f"{'s' if len(data.methods) != 1 else ''}: {', '.join(parts)}.")
    left = counts.get("pending", 0) + counts.get("running", 0)
    if left:
        s += f" The sweep is not finished; this report covers the {len(data.finished)} finished trials."
    return s


def _headline(t: dict[str, Any], dev: str = "dev ") -> str:
    return "mean accuracy over the evaluation sets" if t.get("sets") else f"{dev}accuracy"


def _second_figures(best: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(label, key) of the figures besides the headline: macro-F1, or each evaluation set."""
    sets = list(dict.fromkeys(n for t in best for n in t.get("sets", {})))
    return [(n, f"set:{n}") for n in sets] if sets else [("macro-F1", "macro_f1")]


def _peaks(best: list[dict[str, Any]]) -> list[str]:
    top = best[0]
    if len(best) == 1:
        also = (f"macro-F1 {pts(top['macro_f1']['mean'])}%" if top.get("macro_f1") else
                ", ".join(f"{n} {pts(st['mean'])}%" for n, st in top.get("sets", {}).items()))
        return [f"{group_label(top['group'])} peaks at {pts(top['accuracy']['mean'])}% {_headline(top, '')} "
                f"({also}) at learning rate {fmt_value(top['best_lr'])}."]
    low = best[-1]
    spread = top["accuracy"]["mean"] - low["accuracy"]["mean"]
    tied = [t["method"] for t in best if t["accuracy"]["mean"] == top["accuracy"]["mean"]]
    if len(tied) == len(best):
        lead = (f"{names(tied)} {'both' if len(tied) == 2 else 'all'} peak at {pts(top['accuracy']['mean'])}% "
                f"{_headline(top)}, so the methods' peaks span {pts(spread)} accuracy points.")
    else:
        lead = ((f"{names(tied)} tie for the highest peak" if len(tied) > 1 else f"{top['method']} peaks highest")
                + f": {pts(top['accuracy']['mean'])}% {_headline(top)} at learning rate {fmt_value(top['best_lr'])}; the lowest "
                f"peak is {low['method']}'s, {pts(low['accuracy']['mean'])}% at {fmt_value(low['best_lr'])}, so the methods' "
                f"peaks span {pts(spread)} accuracy points.")
    out = [lead,
           "Peak accuracy by method: " + ", ".join(f"{t['method']} {pts(t['accuracy']['mean'])}" for t in best)
           + "."]
    for label, key in _second_figures(best):
        stats = [(t, st) for t in best if (st := stat_of(t, key)) is not None]
        leader, lead_st = max(stats, key=lambda ts: ts[1]["mean"])
        spread_k = lead_st["mean"] - min(st["mean"] for _, st in stats)
        same = leader["method"] == top["method"]
        out.append(f"By {label} {'the same method leads' if same else leader['method'] + ' leads instead'} "
                   f"({pts(lead_st['mean'])}%), and the peaks span {pts(spread_k)} points.")
    if len(best) >= 2:
        second = best[1]
        gap = top["accuracy"]["mean"] - second["accuracy"]["mean"]
        stds = [top["accuracy"]["std"] or 0.0, second["accuracy"]["std"] or 0.0]
        if min(t["seeds"] for t in best[:2]) > 1 and gap > 0:
            verdict = "larger" if gap > sum(stds) else "smaller"
            out.append(f"The gap between the first two ({pts(gap)} points) is {verdict} than the sum of their std "
                       f"over seeds ({pts(sum(stds))} points).")
    return out


def _noise(data: SweepData, best: list[dict[str, Any]]) -> list[str]:
    """The held-out figures, and whether the gaps to the reference are larger than noise (paired tests)."""
    out = []
    tested = [t for t in best if t.get("test")]
    if tested:
        out.append("On the held-out test split, at the setting each method chose on validation: "
                   + ", ".join(f"{t['method']} {pts(t['test']['mean'])}" for t in tested) + ".")
    fsplit = final_split(best)
    if fsplit is not None:
        out.append(f"Each best setting trained again alone and scored on every {fsplit} row (the final pass): "
                   + ", ".join(f"{t['method']} {pts(final_figure(t, fsplit))}" for t in best) + ".")
    ref = next((t for t in best if t["method"] == REFERENCE), None)
    if ref is None or len(best) < 2 or best[0].get("sets"):
        return out
    tests = [(t, pt) for t in best if t is not ref and (pt := paired_test(data, t, ref)) is not None]
    if not tests:
        return out
    split, n = tests[0][1]["split"], tests[0][1]["n"]
    real = [(t, pt) for t, pt in tests if pt["p"] < 0.05]
    if not real:
        gaps = ", ".join(f"{t['method']} {100 * pt['delta']:+.2f} points, p = {pt['p']:.2g}" for t, pt in tests)
        out.append(f"No method's gap to {REFERENCE} exceeds the noise: McNemar's test on the same {n} {split} examples "
                   f"gives p ≥ 0.05 for all ({gaps}), so the spread of the peaks is not a finding.")
    else:
        out.append(f"Against {REFERENCE} on the same {n} {split} examples (McNemar's test), "
                   + ", ".join(f"{t['method']} differs by {100 * pt['delta']:+.2f} points (p = {pt['p']:.2g})"
                               for t, pt in real)
                   + ("; the others' gaps are within noise (p ≥ 0.05)" if len(real) < len(tests) else "") + ".")
    return out


def _rates(data: SweepData, best: list[dict[str, Any]]) -> list[str]:
    out = []
    by_m = {t["method"]: t for t in best}
    ref = "lora" if "lora" in by_m else best[0]["method"]
    r0 = by_m[ref]["best_lr"]
    smaller: defaultdict[str, list[str]] = defaultdict(list)  # ratio → methods
    larger: defaultdict[str, list[str]] = defaultdict(list)
    same = []
    for t in best:
        if t["method"] == ref:
            continue
        q = t["best_lr"] / r0
        if math.isclose(q, 1.0, rel_tol=1e-9):
            same.append(t["method"])
        else:
            (smaller if q < 1 else larger)[ratio(q)].append(t["method"])
    parts = []
    for group, word in ((smaller, "smaller"), (larger, "larger")):
        for q, ms in sorted(group.items(), key=lambda kv: float(kv[0])):
            parts.append(f"{names(ms)} peak{'s' if len(ms) == 1 else ''} at a {word} rate, ×{q} "
                         f"({fmt_value(by_m[ms[0]]['best_lr'])})")
    if same:
        parts.append(f"{names(same)} at the same rate")
    if parts:
        out.append(f"Relative to {ref}'s best learning rate ({fmt_value(r0)}): " + "; ".join(parts) + ".")
    return out + _edges(data, best)


def _edges(data: SweepData, best: list[dict[str, Any]]) -> list[str]:
    """Methods whose best rate is the grid's first or last: their optimum may lie outside it."""
    out = []
    edge_lo, edge_hi = [], []
    for t in best:
        lrs = sorted({r["lr"] for r in data.group_rows(t["group"])})
        if len(lrs) >= 3 and t["best_lr"] == lrs[0]:
            edge_lo.append(t["method"])
        elif len(lrs) >= 3 and t["best_lr"] == lrs[-1]:
            edge_hi.append(t["method"])
    for ms, side, where in ((edge_lo, "smallest", "below"), (edge_hi, "largest", "above")):
        if ms:
            its = "its" if len(ms) == 1 else "their"
            out.append(f"The best rate of {names(ms)} is the {side} one explored, so {its} optimum may lie {where} "
                       "the grid.")
    return out


def _failures(data: SweepData, best: list[dict[str, Any]]) -> list[str]:
    bad = bad_trials(data)
    if not bad:
        return [f"No trial diverged, ran out of memory or failed ({len(data.finished)} finished)."]
    out = []
    by_status: dict[str, dict[float, list[str]]] = defaultdict(lambda: defaultdict(list))
    for r in bad:
        by_status[r["status"]][r["lr"]].append(r["method"])
    parts = []
    for status in BAD:
        if status not in by_status:
            continue
        at = by_status[status]
        n = sum(len(v) for v in at.values())
        where = "; ".join(f"at {fmt_value(x)} ({names(sorted(set(ms), key=data.methods.index))})"
                          for x, ms in sorted(at.items()))
        parts.append(f"{n} {status} {where}")
    out.append(f"Of {len(data.finished)} finished trials, " + "; ".join(parts) + ".")
    gaps = []
    for t in best:
        div = [r["lr"] for r in data.method_rows(t["method"]) if r["status"] == "diverged" and r["lr"] > t["best_lr"]]
        if div:
            gaps.append(f"{t['method']} ×{ratio(min(div) / t['best_lr'])}")
    if gaps:
        out.append("The smallest diverging rate above each method's best rate, as a multiple of it: "
                   + ", ".join(gaps) + ".")
    return out


def _cost(best: list[dict[str, Any]]) -> list[str]:
    out = []
    timed = [t for t in best if t["train_seconds"] is not None]
    if len(timed) >= 2:
        fast, slow = min(timed, key=lambda t: t["train_seconds"]), max(timed, key=lambda t: t["train_seconds"])
        if f"{fast['train_seconds']:.1f}" == f"{slow['train_seconds']:.1f}":
            out.append(f"Training time at the best setting is {fast['train_seconds']:.1f} s for every method.")
        else:
            out.append(f"Training time at the best setting ranges from {fast['train_seconds']:.1f} s "
                       f"({fast['method']}) to {slow['train_seconds']:.1f} s ({slow['method']}), "
                       f"×{slow['train_seconds'] / fast['train_seconds']:.2g}.")
    mem = [t for t in best if t["peak_memory_mb"] is not None]
    if len(mem) >= 2:
        lo, hi = min(mem, key=lambda t: t["peak_memory_mb"]), max(mem, key=lambda t: t["peak_memory_mb"])
        kinds = sorted({t["memory_kind"] for t in mem})
        if f"{lo['peak_memory_mb']:.0f}" == f"{hi['peak_memory_mb']:.0f}":
            out.append(f"Peak memory ({', '.join(kinds)}) is {lo['peak_memory_mb']:.0f} MB for every method.")
        else:
            out.append(f"Peak memory ({', '.join(kinds)}) ranges from {lo['peak_memory_mb']:.0f} MB ({lo['method']}) "
                       f"to {hi['peak_memory_mb']:.0f} MB ({hi['method']}).")
    params = {t["method"]: t["trainable_params"] for t in best if t["trainable_params"]}
    if len(set(params.values())) == 1 and len(params) > 1:
        out.append(f"Every method trains the same number of parameters, {next(iter(params.values())):,}.")
    elif params:
        out.append("Trainable parameters: " + ", ".join(f"{m} {p:,}" for m, p in params.items()) + ".")
    return out


def _seeds(data: SweepData, best: list[dict[str, Any]]) -> list[str]:
    seeds = sorted({r["seed"] for r in data.rows})
    if len(seeds) == 1:
        return [f"Every setting ran with one seed ({seeds[0]}): no spread over seeds is measured."]
    stds = [t["accuracy"]["std"] for t in best if t["accuracy"]["std"] is not None]
    if not stds:
        return ["No setting finished ok with more than one seed: no spread over seeds is measured."]
    return [f"Over {len(seeds)} seeds, the std of accuracy at the best settings ranges from {pts(min(stds))} to "
            f"{pts(max(stds))} points (mean {pts(mean(stds))})."]


def _lambda(data: SweepData, best: list[dict[str, Any]]) -> list[str]:
    with_lam = [(t, lambda_max(t)) for t in best if lambda_max(t) is not None]
    if not with_lam:
        return []
    prods = ", ".join(f"{t['method']} {t['best_lr'] * lam:.3g}" for t, lam in with_lam)
    below = [t["method"] for t, lam in with_lam if t["best_lr"] * lam < 2]
    out = [f"best lr × λ_max: {prods} ({len(below)} of {len(with_lam)} below the stability bound 2)."]
    fit = data.best.get("exponent_fit")
    if fit and fit["ci"]:
        out.append(f"Across {fit['n']} groups, log(best lr) against log(λ_max) has slope −{fit['exponent']:.2f} "
                   f"(95% CI for the exponent {fit['ci'][0]:.2f} to {fit['ci'][1]:.2f}, R² {fit['r2']:.2f}); "
                   "the 2/λ argument predicts 1.")
    far = [t for t, _ in with_lam if (t.get("prediction") or {}).get("far")]
    if far:
        out.append("The λ_max prediction missed by more than one grid step for " + names([t["method"] for t in far])
                   + ": do not trust it for " + ("that method." if len(far) == 1 else "those methods."))
    return out


def _sensitivity(data: SweepData) -> list[str]:
    out = []
    for axis in sensitivity_axes(data):
        for m in data.methods:
            ts = [t for t in data.best["table"] if t["method"] == m and axis in t["group"]]
            vals = {t["group"][axis] for t in ts}
            if len(vals) < 2:
                continue
            lo = min(ts, key=lambda t: t["accuracy"]["mean"])
            hi = max(ts, key=lambda t: t["accuracy"]["mean"])
            out.append(f"{m}: across {axis} {', '.join(fmt_value(v) for v in sorted(vals))}, the best accuracy ranges "
                       f"from {pts(lo['accuracy']['mean'])}% ({group_label(lo['group'])}) to "
                       f"{pts(hi['accuracy']['mean'])}% ({group_label(hi['group'])}).")
    return out


def _rate_grid(data: SweepData, best: list[dict[str, Any]]) -> list[str]:
    out = []
    for t in best:
        rows = [r for r in data.group_rows(t["group"]) if rate_axes(r["axes"]) and final(r) is not None]
        if not rows:
            continue
        axis = next(iter(rate_axes(rows[0]["axes"])))
        cells: dict[tuple[float, float], list[float]] = defaultdict(list)
        for r in rows:
            cells[(r["lr"], r["axes"][axis])].append(final(r))  # type: ignore[arg-type]
        (a, b), accs = max(cells.items(), key=lambda kv: mean(kv[1]))
        out.append(f"{t['method']} ran a grid of lr × {axis} ({len(cells)} pairs): its best pair is lr = {fmt_value(a)}, "
                   f"{axis} = {fmt_value(b)} (ratio {b / a:.3g}) at {pts(mean(accs))}%.")
    return out


def summarize(data: SweepData) -> list[str]:
    """The summary as a list of sentences (one bullet each), every number taken from ``data``."""
    best = per_method_best(data)  # groups with a trial that finished ok
    with_ok = {t["method"] for t in best}
    none_ok = sorted({g["method"] for g in data.best.get("no_ok", []) if g["method"] not in with_ok},
                     key=lambda m: data.methods.index(m) if m in data.methods else len(data.methods))
    out = [_trials(data)]
    if none_ok:
        out.append(f"No trial of {names(none_ok)} finished ok, so {'it is' if len(none_ok) == 1 else 'they are'} "
                   "left out of the comparisons below.")
    if best:
        out += [*_peaks(best), *_noise(data, best), *_rates(data, best)]
    out += _failures(data, best)
    if best:
        out += [*_cost(best), *_seeds(data, best), *_lambda(data, best), *_sensitivity(data), *_rate_grid(data, best)]
    return out
