"""The report's tables, each written as CSV (raw numbers, full precision) and LaTeX (booktabs)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import atomic_write_text
from ..records import BAD, Stat
from ..sweep.curves import rate_axes
from .data import (REFERENCE, SweepData, evaluated_split, explored, fmt_value, group_label, lambda_max, lr_points,
                   final_split, metric_keys, paired_test, per_method_best, run_interval, setting, shown, stat_of)

MEMORY_KINDS = {"cpu_peak_rss": "CPU peak resident set size of the trial's process, loading included",
                "cuda_max_memory_allocated": "torch.cuda.max_memory_allocated from the first step"}


@dataclass
class Table:
    name: str  # file stem under tables/
    caption: str
    columns: list[str]  # display headers
    rows: list[list[str]]  # display cells
    csv_columns: list[str]
    csv_rows: list[list[Any]]
    align: str = ""  # LaTeX column spec; default l then r
    bold: set[tuple[int, int]] = field(default_factory=set)  # (row, column) cells to set in bold
    tex: bool = True

    def aligns(self) -> str:
        return self.align or "l" + "r" * (len(self.columns) - 1)


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def pm(ms: Stat, seeds: int) -> str:
    """Percent, mean ± std over seeds; the mean alone for a single seed (its std is not measured)."""
    return f"{100 * ms['mean']:.2f}" + (f" ± {100 * ms['std']:.2f}" if ms["std"] is not None else "")


def statuses_str(st: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in st.items())


def _ci(ci: list[float] | None) -> str:
    return f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "–"


def _cost_cells(t: dict[str, Any]) -> list[str]:
    if t.get("cost_source") == "none":
        return ["not timed alone"] * 3
    return [f"{t['train_seconds']:.1f}" if t["train_seconds"] is not None else "–",
            f"{t['samples_per_second']:.1f}" if t.get("samples_per_second") else "–",
            f"{t['peak_memory_mb']:.0f}" if t["peak_memory_mb"] is not None else "–"]


def _evidence(data: SweepData, t: dict[str, Any], ref: dict[str, Any] | None, classify: bool,
              split: str) -> tuple[list[str], list[Any]]:
    """A classification row's uncertainty cells: the best run's validation interval, the test figure, and the
    paired test against the reference method (cells, raw values)."""
    if not classify:
        return [], []
    ci = run_interval(data, t, "validation")
    cells, raw = [_ci(ci)], [ci]
    if split == "test":
        cells.append(pm(t["test"], t["seeds"]) if t.get("test") else "–")
        raw += [t["test"]["mean"] if t.get("test") else None]
    fsplit = final_split(per_method_best(data))
    if fsplit is not None:
        fp = t["final_pass"]
        for m in [fp["validation"], *([fp["held_out"]["test"]] if fsplit == "test" else [])]:
            cells.append(f"{100 * m['accuracy']:.2f} {_ci(m.get('accuracy_ci'))}")
            raw.append(m["accuracy"])
    pt = paired_test(data, t, ref) if ref is not None and ref is not t else None
    cells.append(f"{100 * pt['delta']:+.2f} (p = {pt['p']:.2g})" if pt else "–")
    raw += [pt["delta"] if pt else None, pt["p"] if pt else None]
    return cells, raw


def comparison(data: SweepData) -> Table:
    best = per_method_best(data)
    metrics = metric_keys(data)
    classify, split = not metrics[1][0].startswith("set:"), evaluated_split(data)
    ref = next((t for t in best if t["method"] == REFERENCE), None)
    has_setting = any(setting(t["group"]) for t in best)
    has_lambda = any(lambda_max(t) is not None for t in best)
    kinds = sorted({t["memory_kind"] for t in best if t["memory_kind"]})
    fsplit = final_split(best)
    final_cols = [] if fsplit is None else ["final: validation, all rows (%) [95% CI]"] + (
        ["final: test (%) [95% CI]"] if fsplit == "test" else [])
    vs = f"final {fsplit}" if fsplit else split
    extra = (["95% CI, best run"] + (["test accuracy (%)"] if split == "test" else []) + final_cols
             + [f"vs {REFERENCE}, {vs} (Δ points, McNemar p)"]) if classify else []
    cols = ["method"] + (["setting"] if has_setting else []) + ["best lr"] + [f"{label} (%)" for _, label in metrics] + \
        extra + ["seeds", "trainable params", "train time (s)", "samples/s", "peak memory (MB)"] + \
        (["memory kind"] if len(kinds) > 1 else []) + (["λ_max"] if has_lambda else [])
    names = [k.replace("set:", "") for k, _ in metrics]
    extra_csv = (["ci_low_high"] + (["test_mean"] if split == "test" else [])
                 + ([] if fsplit is None else ["final_validation"] + (["final_test"] if fsplit == "test" else []))
                 + ["delta_vs_ref", "p_vs_ref"] if classify else [])
    csv_cols = ["method", "setting", "best_lr", *(f"{n}_{x}" for n in names for x in ("mean", "std")), *extra_csv,
                "seeds", "trainable_params", "train_seconds", "samples_per_second", "peak_memory_mb", "memory_kind",
                "cost_source", "lambda_max", "trials"]
    rows, raw = [], []
    for t in best:
        lam = lambda_max(t)
        stats = [stat_of(t, k) for k, _ in metrics]
        ev_cells, ev_raw = _evidence(data, t, ref, classify, split)
        cells = [t["method"] + (" (degenerate)" if t.get("degenerate") else "")] + (
            [setting(t["group"]) or "–"] if has_setting else []) + [fmt_value(t["best_lr"])] + [
            pm(st, t["seeds"]) if st else "–" for st in stats] + ev_cells + [
            str(t["seeds"]), f"{t['trainable_params']:,}" if t["trainable_params"] else "–", *_cost_cells(t)]
        cells += [t["memory_kind"] or "–"] if len(kinds) > 1 else []
        cells += [f"{lam:.4g}" if lam is not None else "–"] if has_lambda else []
        rows.append(cells)
        raw.append([t["method"], json.dumps({k: v for k, v in t["group"].items() if k != "method"}, sort_keys=True),
                    t["best_lr"], *(x for st in stats for x in ((st["mean"], st["std"]) if st else (None, None))),
                    *ev_raw, t["seeds"], t["trainable_params"], t["train_seconds"], t.get("samples_per_second"),
                    t["peak_memory_mb"], t["memory_kind"], t.get("cost_source"), lam, t["trials"]])
    bold = _bold(best, metrics, cols)
    majority = next((t["majority"] for t in best if t.get("majority") is not None), None)
    if classify and majority is not None:
        rows.append(["majority class"] + ["–"] * (len(cols) - 1))
        rows[-1][cols.index(f"{metrics[0][1]} (%)")] = pct(majority)
        raw.append(["majority class"] + [None] * (len(csv_cols) - 1))
        raw[-1][csv_cols.index("accuracy_mean")] = majority
    return Table("comparison", _comparison_caption(best, metrics, kinds, has_setting, has_lambda, classify, split),
                 cols, rows, csv_cols, raw, align="".join("l" if c in ("method", "setting", "memory kind") else "r"
                                                          for c in cols), bold=bold)


def _bold(best: list[dict[str, Any]], metrics: list[tuple[str, str]], cols: list[str]) -> set[tuple[int, int]]:
    bold = set()
    for (key, label) in metrics:
        means = [st["mean"] for t in best if (st := stat_of(t, key)) is not None]
        if means:
            bold |= {(i, cols.index(f"{label} (%)")) for i, t in enumerate(best)
                     if (st := stat_of(t, key)) is not None and st["mean"] == max(means)}
    return bold


def _comparison_caption(best: list[dict[str, Any]], metrics: list[tuple[str, str]], kinds: list[str],
                        has_setting: bool, has_lambda: bool, classify: bool, split: str) -> str:
    seeds = sorted({t["seeds"] for t in best})
    mem = "; ".join(MEMORY_KINDS.get(k, k) for k in kinds)
    spread = "as mean ± sample std over the seeds" if max(seeds) > 1 else "of the single seed (spread unknown)"
    shown_as = ("the mean accuracy over the evaluation sets (the figure the best is chosen on) and each set's"
                if not classify else "validation accuracy and macro-F1 (the best learning rate is chosen on the "
                                     "validation accuracy)")
    cap = (f"Each method at its best setting: {shown_as} {spread} at the best learning rate"
           f"{' (other axes: the setting column)' if has_setting else ''}.")
    if classify:
        cap += (" 95% CI: the percentile bootstrap interval of the best run's validation accuracy over examples."
                + (" Test accuracy: the held-out test split, evaluated once after training, at the setting chosen on "
                   "validation." if split == "test" else "")
                + f" vs {REFERENCE}: the best run's accuracy minus {REFERENCE}'s on the same {split} examples (same "
                  "seed), with McNemar's exact p-value; p ≥ 0.05 is within noise. Majority class: the accuracy of "
                  "always predicting the most frequent validation class; (degenerate): a best run that predicts a "
                  "single class.")
    if final_split(best) is not None:
        cap += (" Final: each method's best setting (one seed) trained again alone after the sweep and scored on "
                "every row of the validation (and test) split, with its 95% bootstrap interval; the best setting "
                "itself was chosen on the sweep's own evaluation. The McNemar column compares these final runs.")
    cap += (" Costs come from runs that trained alone (fused trials are timed again alone after the sweep, the cost "
            f"pass): train time is the mean over those runs, peak memory the max ({mem or 'not measured'}).")
    if has_lambda:
        cap += (" λ_max: the largest eigenvalue of the training loss's Hessian, as the sweep recorded it "
                "(hessian: true).")
    return cap


def lr_prediction(data: SweepData) -> Table | None:
    """How well λ_max predicted each method's best rate (``best()``'s ``prediction``); None without predictions."""
    best = [t for t in per_method_best(data) if lambda_max(t) is not None]
    if not any(t.get("prediction") for t in best):
        return None
    cols = ["method", "λ_max", "predicted lr", "best lr", "found / predicted", "grid steps off", "trials (full grid)"]
    rows, raw = [], []
    for t in best:
        p = t.get("prediction") or {}
        steps = p.get("grid_steps")
        off = "–" if steps is None else f"{steps:+d}" + (" (far: do not trust)" if p.get("far") else "")
        trials = f"{t['trials']} ({t['grid_trials']})" if t.get("grid_trials") else str(t["trials"])
        rows.append([t["method"], f"{lambda_max(t):.4g}",
                     fmt_value(p["predicted_lr"]) if p else "reference", fmt_value(t["best_lr"]),
                     f"{p['ratio']:.3g}" if p else "–", off, trials])
        raw.append([t["method"], lambda_max(t), p.get("predicted_lr"), t["best_lr"], p.get("ratio"), steps, t["trials"],
                    t.get("grid_trials")])
    fit = data.best.get("exponent_fit")
    ref = next(t["prediction"] for t in best if t.get("prediction"))
    cap = (f"Each method's learning rate predicted from {ref['reference']}'s best, lr = lr_ref · (λ_ref / λ_max)^"
           f"{fmt_value(ref['exponent'])}, against the rate found; far: more than one grid step off, where the "
           "prediction should not be trusted.")
    if fit:
        ci = f" (95% CI {fit['ci'][0]:.2f} to {fit['ci'][1]:.2f})" if fit["ci"] else ""
        r2 = f", R² = {fit['r2']:.2f}" if fit["r2"] is not None else ""
        cap += (f" Fitted over {fit['n']} groups: log(best lr) = a − γ̂ · log(λ_max) with γ̂ = {fit['exponent']:.2f}"
                f"{ci}{r2}.")
    return Table("lr_prediction", cap, cols, rows, ["method", "lambda_max", "predicted_lr", "best_lr", "ratio",
                                                    "grid_steps", "trials", "grid_trials"], raw)


def hyperparameters(data: SweepData) -> Table:
    ex = [explored(data, m) for m in data.methods]
    axes = sorted({k for e in ex for k in e["axes"]})
    cols = ["method", "learning rates"] + axes + [
        "seeds", "strategy", "trials", "statuses"]
    rows, raw = [], []
    for e in ex:
        lrs = e["lrs"]
        lr_cell = (f"{fmt_value(lrs[0])} … {fmt_value(lrs[-1])} ({len(lrs)})" if len(lrs) > 2
                   else ", ".join(map(fmt_value, lrs)))
        ax_cells = [", ".join(fmt_value(v) for v in e["axes"][a]) if a in e["axes"] else "–" for a in axes]
        rows.append([e["method"], lr_cell, *ax_cells, ", ".join(map(str, e["seeds"])), data.strategy or "–",
                     str(e["trials"]), statuses_str(e["statuses"])])
        raw.append([e["method"], ";".join(repr(x) for x in lrs),
                    *[";".join(repr(v) if isinstance(v, float) else str(v) for v in e["axes"].get(a, []))
                      for a in axes],
                    ";".join(map(str, e["seeds"])), data.strategy, e["trials"],
                    ";".join(f"{k}={v}" for k, v in e["statuses"].items())])
    cap = ("Hyperparameters explored per method: the learning rates (first … last (count), evenly spaced in log10 "
           "when the sweep used a log grid), the other swept axes, the seeds, the search strategy, and the trials "
           "by status.")
    return Table("hyperparameters", cap, cols, rows, ["method", "learning_rates", *axes, "seeds", "strategy",
                                                        "trials", "statuses"], raw, align="l" * len(cols))


def accuracy_by_lr(data: SweepData) -> Table:
    groups = [t for m in data.methods for t in data.best["table"] if t["method"] == m]
    pts = {json.dumps(t["group"], sort_keys=True): {p["lr"]: p for p in lr_points(data.group_rows(t["group"]))}
           for t in groups}
    lrs = sorted({lr for g in pts.values() for lr in g})
    labels = [group_label(t["group"]) for t in groups]
    rows, raw, bold = [], [], set()
    for i, lr in enumerate(lrs):
        cells = [fmt_value(lr)]
        rcells: list[float | None] = [lr]
        for j, t in enumerate(groups):
            p = pts[json.dumps(t["group"], sort_keys=True)].get(lr)
            if p is None:
                cells.append("–")
                rcells.append(None)
            elif (acc := shown(p)) is None:
                cells.append(next((s.value for s in BAD if p["counts"].get(s)), "–"))
                rcells.append(None)
            else:
                cells.append(pct(acc) + ("†" if p["n_ok"] < p["seeds"] else ""))
                rcells.append(acc)
                if lr == t["best_lr"]:
                    bold.add((i, j + 1))
        rows.append(cells)
        raw.append(rcells)
    what = "Dev accuracy" if metric_keys(data)[0][1] == "dev accuracy" else "Mean accuracy over the evaluation sets"
    cap = (f"{what} (%) at every learning rate, mean over the seeds that finished ok (the rule best() uses); "
           "diverged/collapsed/failed: no seed finished ok; † some seeds did not; bold: the rate that best() "
           "selects.")
    if any("paired" in p for g in pts.values() for p in g.values()):
        cap += " For a two-rate grid the rate is lr and the cell the best over the second rate."
    return Table("accuracy_by_lr", cap, ["learning rate", *labels], rows, ["lr", *labels], raw, bold=bold)


def trials(data: SweepData) -> Table:
    sets = [k[4:] for k, _ in metric_keys(data) if k.startswith("set:")]
    cols = ["key", "method", "group", "lr", "second_rate", "seed", "status", "accuracy", "macro_f1", *sets,
            "test_accuracy", "degenerate", "steps_done", "train_seconds", "peak_memory_mb", "memory_kind",
            "trainable_params"]
    raw = []
    for r in data.rows:
        res: Mapping[str, Any] = r["result"] or {}
        fin = res.get("final") or {}
        second = ";".join(f"{k}={v}" for k, v in rate_axes(r["axes"]).items()) or None
        raw.append([r["key"], r["method"], r["grp"], r["lr"], second, r["seed"], r["status"].value,
                    fin.get("accuracy"), fin.get("macro_f1"), *((fin.get("sets") or {}).get(n) for n in sets),
                    ((res.get("held_out") or {}).get("test") or {}).get("accuracy"), bool(res.get("one_class")),
                    res.get("steps_done"), res.get("train_seconds"),
                    res.get("peak_memory_mb"), res.get("memory_kind"), res.get("trainable_params")])
    return Table("trials", "Every trial of the sweep (degenerate: its last predictions are all one class).", cols, [],
                 cols, raw, tex=False)


def setup(rows: list[tuple[str, str]]) -> Table:
    return Table("setup", "Settings shared by every trial (swept: varies between trials).", ["setting", "value"],
                 [[k, v] for k, v in rows], ["setting", "value"], [[k, v] for k, v in rows], align="ll")


def provenance(rows: list[tuple[str, str]]) -> Table:
    return Table("provenance", "Provenance recorded by the finished trials (several values: they differ between "
                 "trials).", ["item", "value"], [[k, v] for k, v in rows], ["item", "value"],
                 [[k, v] for k, v in rows], align="ll", tex=False)


# --- writers --------------------------------------------------------------------------------------------

def to_csv(t: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(t.csv_columns)
    w.writerows([["" if v is None else v for v in r] for r in t.csv_rows])
    return buf.getvalue()


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_TEX_TOKENS = {"η_A": r"$\eta_A$", "η_B": r"$\eta_B$", "λ_max": r"$\lambda_{\max}$", "±": r"$\pm$",
               "×": r"$\times$", "†": r"\textsuperscript{\dag}", "…": r"\ldots{}", "–": "--", "λ": r"$\lambda$",
               "η": r"$\eta$"}
_TOKEN_RE = re.compile("|".join(re.escape(k) for k in sorted(_TEX_TOKENS, key=len, reverse=True)))


def tex_escape(s: str) -> str:
    out, pos = [], 0
    for m in _TOKEN_RE.finditer(s):
        out.append("".join(_TEX_SPECIAL.get(c, c) for c in s[pos:m.start()]))
        out.append(_TEX_TOKENS[m.group()])
        pos = m.end()
    out.append("".join(_TEX_SPECIAL.get(c, c) for c in s[pos:]))
    return "".join(out)


def to_latex(t: Table) -> str:
    align = t.aligns()

    def cell(i: int, j: int, v: str) -> str:
        v = tex_escape(v).replace(",", "{,}") if re.fullmatch(r"[\d,]+", v) else tex_escape(v)
        return rf"\textbf{{{v}}}" if (i, j) in t.bold else v

    lines = [r"% generated by lorabench report; needs \usepackage{booktabs}",
             r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{tex_escape(t.caption)}}}", rf"\label{{tab:{t.name.replace('_', '-')}}}",
             rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(tex_escape(c) for c in t.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(cell(i, j, v) for j, v in enumerate(r)) + r" \\" for i, r in enumerate(t.rows)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def write_text(path: Path, text: str) -> None:
    """Atomically, and readable by others like the figures beside it (a report is meant to be shared)."""
    atomic_write_text(path, text)
    mask = os.umask(0)
    os.umask(mask)
    path.chmod(0o666 & ~mask)


def write(t: Table, out_dir: Path) -> list[Path]:
    folder = out_dir / "tables"
    paths = [folder / f"{t.name}.csv"]
    write_text(paths[0], to_csv(t))
    if t.tex:
        paths.append(folder / f"{t.name}.tex")
        write_text(paths[1], to_latex(t))
    return paths
