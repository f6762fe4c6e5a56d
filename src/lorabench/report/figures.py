"""The report's figures (matplotlib, Agg backend), each saved as PNG (for the HTML) and PDF (for a paper).

Every function returns the figures it drew as ``Figure(path, caption)``; one whose data is absent
from the sweep (no rank axis, no LoRA+ grid, no λ_max) draws nothing and returns an empty list.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from ..methods.registry import get_method  # noqa: E402
from ..sweep.curves import rate_axes  # noqa: E402
from .data import (SweepData, best_run, curves, final, fmt_value, group_label, lambda_max,  # noqa: E402
                   lr_points, metric_keys, per_method_best, sensitivity_axes, setting, shown, stat_of)

DPI = 160
BAD_MARK = {"diverged": "x", "collapsed": "v", "failed": "X", "oom": "s"}
plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
                     "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False})


@dataclass
class Figure:
    path: Path  # the PNG; a PDF of the same name sits beside it
    caption: str


def colors(data: SweepData) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(data.methods)}


MARKERS = ["o", "s", "^", "D", "v", "P", "<", ">", "h", "p"]


def markers(data: SweepData) -> dict[str, str]:
    """A marker per method too, so that curves stay apart in grey print and where they coincide."""
    return {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(data.methods)}


def slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-").lower()


def save(fig: Any, out_dir: Path, name: str) -> Path:
    folder = out_dir / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"{name}.png"
    fig.savefig(png, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(folder / f"{name}.pdf", bbox_inches="tight", metadata={"Creator": None, "Producer": None,
                                                                       "CreationDate": None})
    plt.close(fig)
    return png


def _plain_log(axis: Any) -> None:
    """Ticks at 1, 2, 5 × 10^k written plainly (0.002, 500): readable over a narrow or a wide log range."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _groups(data: SweepData) -> list[dict[str, Any]]:
    return [t for m in data.methods for t in data.best["table"] if t["method"] == m]


def _styles(data: SweepData) -> dict[str, tuple[Any, str, str]]:
    """A colour and a marker per method and a line style per group within it."""
    c, mk, out = colors(data), markers(data), {}
    dashes = ["-", "--", ":", "-."]
    count: dict[str, int] = defaultdict(int)
    for t in _groups(data):
        g = json.dumps(t["group"], sort_keys=True)
        out[g] = (c[t["method"]], dashes[count[t["method"]] % len(dashes)], mk[t["method"]])
        count[t["method"]] += 1
    return out


def lr_curves(data: SweepData, out_dir: Path) -> list[Figure]:
    styles = _styles(data)
    metrics = metric_keys(data)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.6), sharex=True, squeeze=False)
    axes = axes[0]
    any_bad, grid_note = set(), False
    stacked: dict[float, int] = defaultdict(int)
    for t in _groups(data):
        g = json.dumps(t["group"], sort_keys=True)
        color, ls, mk = styles[g]
        pts = lr_points(data.group_rows(t["group"]))
        grid_note |= any("paired" in p for p in pts)
        ok = [p for p in pts if shown(p) is not None]
        for ax, (key, _) in zip(axes, metrics, strict=True):
            have = [(p["lr"], st) for p in ok if (st := stat_of(p, key)) is not None]
            x = [lr for lr, _ in have]
            y = [100 * st["mean"] for _, st in have]
            e = [100 * (st["std"] or 0.0) for _, st in have]
            ax.errorbar(x, y, yerr=e if any(e) else None, color=color, ls=ls, marker=mk, ms=4, capsize=2,
                        label=group_label(t["group"]) if ax is axes[0] else None)
            if t["best_lr"] in x:
                i = x.index(t["best_lr"])
                ax.plot([x[i]], [y[i]], marker="*", ms=12, color=color, mec="black", mew=0.6, ls="none", zorder=5)
        any_bad |= _failure_marks(axes, pts, color, stacked)
    lrs = sorted({r["lr"] for r in data.finished})
    majority = next((t["majority"] for t in data.best["table"] if t.get("majority") is not None), None)
    if majority is not None and metrics[1][0] == "macro_f1":
        axes[0].axhline(100 * majority, color="gray", ls="--", lw=1, label="majority class", zorder=1)
    for ax, name in zip(axes, (f"{label} (%)" for _, label in metrics)):
        lr_axis(ax, lrs)
        ax.set_xlabel("learning rate" + (" (lr of a two-rate grid, best over its second rate)" if grid_note else ""))
        ax.set_ylabel(name)
        lo, hi = ax.get_ylim()
        room = 0.06 + 0.045 * max(stacked.values(), default=0)  # room for the failure marks at the bottom
        ax.set_ylim(lo - room * (hi - lo), hi)
    handles, labels = axes[0].get_legend_handles_labels()
    for status in sorted(any_bad):
        handles.append(plt.Line2D([], [], marker=BAD_MARK[status], color="gray", ls="none", mew=1.6))
        labels.append(status)
    handles.append(plt.Line2D([], [], marker="*", color="gray", mec="black", ms=10, ls="none"))
    labels.append("best lr")
    fig.legend(handles, labels, loc="upper center", ncol=min(6, len(labels)), frameon=False,
               bbox_to_anchor=(0.5, 1.08))
    fig.tight_layout()
    cap = (" and ".join(label for _, label in metrics).capitalize() + " (one panel each) against the learning rate "
           "(log scale), one curve per method (mean over the seeds that finished; bars: sample std); ★ the best "
           "learning rate" + ("; dashed: the majority-class accuracy" if majority is not None else ""))
    if any_bad:
        cap += "; " + ", ".join(f"{BAD_MARK[s]} a {s} trial" for s in sorted(any_bad)) + " at that rate (bottom)"
    if grid_note:
        cap += "; for the LoRA+ η_A × η_B grid, the best η_B at each η_A"
    return [Figure(save(fig, out_dir, "accuracy_vs_lr"), cap + ".")]


def _failure_marks(axes: Any, pts: list[Any], color: Any, stacked: dict[float, int]) -> set[str]:
    """A mark at the bottom of every panel for each bad trial of a curve (stacked where curves fail at one rate)."""
    seen = set()
    for p in pts:
        for status, n in p["counts"].items():
            if status in BAD_MARK and n:
                seen.add(status)
                level = stacked[p["lr"]]
                stacked[p["lr"]] += 1
                for ax in axes:
                    tr = blended_transform_factory(ax.transData, ax.transAxes)
                    ax.plot([p["lr"]], [0.03 + 0.045 * level], marker=BAD_MARK[status], ms=6, mew=1.5,
                            color=color, transform=tr, clip_on=False, ls="none", zorder=6)
    return seen


def lr_axis(ax: Any, lrs: list[float]) -> None:
    """A log learning-rate axis whose labels never collide: the grid's own rates when there are few or they span
    under two decades (minor ticks unlabelled), else one label per decade."""
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    span = np.log10(max(lrs) / min(lrs)) if lrs and min(lrs) > 0 else 0
    if lrs and (len(lrs) <= 6 or span < 2):
        ax.xaxis.set_major_locator(FixedLocator(lrs if len(lrs) <= 6 else lrs[:: -(-len(lrs) // 6)]))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.2g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        for label in ax.get_xticklabels():
            label.set_rotation(30)
    else:
        ax.xaxis.set_major_locator(LogLocator(base=10, numticks=8))


def by_method(data: SweepData, out_dir: Path) -> list[Figure]:
    """With many methods, one small panel per method (the headline figure against the learning rate)."""
    groups = _groups(data)
    if len(groups) <= 4:
        return []
    styles, lrs, cols = _styles(data), sorted({r["lr"] for r in data.finished}), 4
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), sharex=True, sharey=True, squeeze=False)
    for ax, t in zip(axes.flat, groups):
        color, ls, mk = styles[json.dumps(t["group"], sort_keys=True)]
        ok = [p for p in lr_points(data.group_rows(t["group"])) if shown(p) is not None]
        ax.errorbar([p["lr"] for p in ok], [100 * shown(p) for p in ok],  # type: ignore[operator]
                    yerr=[100 * (p["accuracy"]["std"] or 0.0) if p["accuracy"] else 0.0 for p in ok], color=color, ls=ls,
                    marker=mk,
                    ms=3, capsize=2)
        ax.set_title(group_label(t["group"]), fontsize=9)
        lr_axis(ax, lrs)
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    fig.supxlabel("learning rate")
    fig.supylabel(f"{metric_keys(data)[0][1]} (%)")
    fig.tight_layout()
    return [Figure(save(fig, out_dir, "accuracy_vs_lr_by_method"),
                   "The headline figure against the learning rate, one panel per method (mean over the seeds that "
                   "finished; bars: sample std).")]


def _smooth(y: list[float], w: int) -> np.ndarray:
    if w <= 1 or len(y) < w:
        return np.asarray(y, dtype=float)
    k = np.ones(w) / w
    full = np.convolve(y, k, mode="valid")
    return np.concatenate([np.cumsum(y[: w - 1]) / np.arange(1, w), full])


def training_curves(data: SweepData, out_dir: Path, zoom_steps: int | None = None) -> list[Figure]:
    c, mk = colors(data), markers(data)
    runs = []
    for t in per_method_best(data):
        r = best_run(data, t)
        cv = curves(data, r) if r else None
        if r and cv and (cv["step"] or cv["eval_step"]):
            runs.append((t, r, cv))
    if not runs:
        return []
    max_step = max(max(cv["step"] + cv["eval_step"]) for _, _, cv in runs)
    if zoom_steps is None:
        zoom_steps = max(1, round(max_step / 4))
    w = max(1, max_step // 50)
    out = []
    for name, limit in (("training_curves", None), ("training_curves_zoom", zoom_steps)):
        if limit is not None and limit >= max_step:
            continue
        end = limit if limit is not None else max_step
        evals = sorted({s for _, _, cv in runs for s in cv["eval_step"] if s <= end})
        keys = [(k, f"{label} (%)") for k, label in metric_keys(data)] if evals else []
        keys.append(("loss", "training loss"))
        fig, axes = plt.subplots(1, len(keys), figsize=(max(6.0, 3.7 * len(keys)), 3.4), squeeze=False)
        axes = axes[0]
        for t, r, cv in runs:
            col = c[t["method"]]
            lab = f"{group_label(t['group'])}, lr {t['best_lr']:.3g}, seed {r['seed']}"
            for ax, (key, _) in zip(axes, keys):
                xs = cv["eval_step"] if key != "loss" else cv["step"]
                keep = [i for i, s in enumerate(xs) if s <= end]
                y = [cv["loss"][i] if key == "loss" else cv["evals"][key][i] * 100 for i in keep]
                if key == "loss":
                    ax.plot([xs[i] for i in keep], _smooth(y, w if limit is None else 1), color=col, lw=1, label=lab,
                            marker=mk[t["method"]], ms=3, markevery=max(1, len(keep) // 8))
                else:
                    ax.plot([xs[i] for i in keep], y, marker=mk[t["method"]], ms=4, color=col, alpha=0.9)
        for ax, (_, yl) in zip(axes, keys):
            ax.set_xlabel("training step")
            ax.set_ylabel(yl)
            ax.set_xlim(0, end * 1.02)
        fig.legend(*axes[-1].get_legend_handles_labels(), loc="upper center", frameon=False,
                   ncol=min(3 if len(keys) > 1 else 2, len(runs)), bbox_to_anchor=(0.5, 1.1 if len(keys) > 1 else 1.14))
        fig.tight_layout()
        out.append(Figure(save(fig, out_dir, name), _curves_caption(evals, limit, w)))
    return out


def _curves_caption(evals: list[int], limit: int | None, w: int) -> str:
    what = "Dev accuracy, macro-F1 and training loss" if evals else "Training loss"
    cap = (f"{what} against the training step for the best run of each method (at its best learning rate"
           + (f"; evaluated at steps {_steps_str(evals)})" if evals else ")"))
    if limit is None:
        return cap + (f"; loss: moving average over {w} steps" if w > 1 else "; loss at every step") + "."
    cap = f"The first {limit} steps of the figure above: " + cap[0].lower() + cap[1:] + "; loss at every step"
    return cap + (" (no evaluation in these steps)" if not evals else "") + "."


def _steps_str(steps: list[int]) -> str:
    if len(steps) > 6:
        return f"{steps[0]}, {steps[1]}, …, {steps[-1]}"
    return ", ".join(map(str, steps)) or "none"


def rate_heatmaps(data: SweepData, out_dir: Path) -> list[Figure]:
    """Dev accuracy over a two-rate grid (lr × a method's second learning-rate axis), one figure per group."""
    out = []
    for t in _groups(data):
        rows = [r for r in data.group_rows(t["group"]) if rate_axes(r["axes"])]
        if not rows:
            continue
        axis = next(iter(rate_axes(rows[0]["axes"])))
        a_vals = sorted({r["lr"] for r in rows})
        b_vals = sorted({r["axes"][axis] for r in rows})
        acc = np.full((len(b_vals), len(a_vals)), np.nan)
        notes: dict[tuple[int, int], str] = {}
        for i, b in enumerate(b_vals):
            for j, a in enumerate(a_vals):
                cell = [r for r in rows if r["lr"] == a and r["axes"][axis] == b]
                accs = [x for x in (final(r) for r in cell) if x is not None]
                if accs:
                    acc[i, j] = 100 * float(np.mean(accs))
                bad = sorted({r["status"].value for r in cell if r["status"] != "ok"})
                notes[(i, j)] = "–" if not cell else ("\n" + "/".join(bad) if bad else "")
        fig, ax = plt.subplots(figsize=(1.1 * len(a_vals) + 2.2, 0.75 * len(b_vals) + 1.6))
        im = ax.imshow(np.ma.masked_invalid(acc), origin="lower", cmap="viridis", aspect="auto")
        ax.set_facecolor("#dddddd")
        ax.grid(False)
        ax.set_xticks(range(len(a_vals)), [fmt_value(a) for a in a_vals])
        ax.set_yticks(range(len(b_vals)), [fmt_value(b) for b in b_vals])
        ax.set_xlabel("lr")
        ax.set_ylabel(axis)
        finite = acc[np.isfinite(acc)]
        mid = float(np.mean([finite.min(), finite.max()])) if finite.size else 0
        for (i, j), note in notes.items():
            v = acc[i, j]
            txt = (f"{v:.1f}" if np.isfinite(v) else "") + note
            ax.text(j, i, txt.strip("\n") or "–", ha="center", va="center", fontsize=7,
                    color="white" if np.isfinite(v) and v < mid else "black")
        fig.colorbar(im, ax=ax, label="dev accuracy (%)")
        derived = get_method(t["method"]).rate_axes.get(axis)
        s = setting({k: v for k, v in t["group"].items() if k != derived})
        ax.set_title(f"{t['method']} accuracy over lr × {axis}" + (f" ({s})" if s else ""))
        fig.tight_layout()
        name = f"lr_heatmap_{t['method']}" + (f"_{slug(s)}" if s else "")
        if np.isfinite(acc).any():
            bi, aj = np.unravel_index(np.nanargmax(acc), acc.shape)
            top = f"; best cell lr = {fmt_value(a_vals[aj])}, {axis} = {fmt_value(b_vals[bi])} ({acc[bi, aj]:.2f}%)"
        else:
            top = ""
        out.append(Figure(save(fig, out_dir, name),
                          f"{t['method']} dev accuracy (mean over seeds) for every lr × {axis} pair{top}; "
                          "a cell names the statuses of trials that did not finish ok, – where none ran."))
    return out


def sensitivity(data: SweepData, out_dir: Path) -> list[Figure]:
    c, mk = colors(data), markers(data)
    out = []
    for axis in sensitivity_axes(data):
        series: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for t in _groups(data):
            if axis in t["group"]:
                rest = {k: v for k, v in t["group"].items() if k != axis}
                series[json.dumps(rest, sort_keys=True)].append(t)
        series = {k: sorted(v, key=lambda t: t["group"][axis]) for k, v in series.items() if len(v) >= 2}
        if not series:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        for k, ts in series.items():
            rest = json.loads(k)
            col = c[rest["method"]]
            x = [t["group"][axis] for t in ts]
            axes[0].errorbar(x, [100 * t["accuracy"]["mean"] for t in ts],
                             yerr=[100 * (t["accuracy"]["std"] or 0.0) for t in ts], marker=mk[rest["method"]], ms=4,
                             capsize=2, color=col,
                             label=group_label(rest))
            axes[1].plot(x, [t["best_lr"] for t in ts], marker=mk[rest["method"]], ms=4, color=col)
        name = axis.replace("_", " ")
        for ax in axes:
            ax.set_xscale("log", base=2 if axis in ("rank", "batch_size") else 10)
            xs = sorted({t["group"][axis] for ts in series.values() for t in ts})
            ax.set_xticks(xs, [fmt_value(v) for v in xs])
            ax.minorticks_off()
            ax.set_xlabel(name)
        axes[0].set_ylabel("best dev accuracy (%)")
        axes[1].set_ylabel("best learning rate")
        axes[1].set_yscale("log")
        lrs = sorted({t["best_lr"] for ts in series.values() for t in ts})
        if len(lrs) <= 8:  # label exactly the rates that were found best
            axes[1].set_yticks(lrs, [f"{v:.3g}" for v in lrs])
            axes[1].yaxis.set_minor_formatter(NullFormatter())
        else:
            _plain_log(axes[1].yaxis)
        fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=min(5, len(series)),
                   frameon=False, bbox_to_anchor=(0.5, 1.08))
        fig.tight_layout()
        out.append(Figure(save(fig, out_dir, f"sensitivity_{axis}"),
                          f"Sensitivity to {name}: each method's accuracy at its best learning rate (left, mean ± std "
                          f"over seeds) and that learning rate (right), for every {name} swept."))
    return out


def lr_vs_lambda(data: SweepData, out_dir: Path) -> list[Figure]:
    measured = [(t, lambda_max(t)) for t in per_method_best(data)]
    pts = [(t, lam) for t, lam in measured if lam is not None]
    if len({t["method"] for t, _ in pts}) < 2:
        return []
    c, mk = colors(data), markers(data)
    fig, ax = plt.subplots(figsize=(4.8, 3.8))
    lams = [lam for _, lam in pts]
    lo, hi = min(lams) / 2, max(lams) * 2
    xs = np.geomspace(lo, hi, 50)
    ax.plot(xs, 2 / xs, color="black", ls="-", lw=1, label=r"lr = 2/$\lambda_{\max}$")
    ref = next((t["prediction"] for t, _ in pts if t.get("prediction")), None)
    anchor = next(((t["best_lr"], lam) for t, lam in pts if ref and t["method"] == ref["reference"]), None)
    if anchor:  # the prediction's line: through the reference's point, slope −1
        ax.plot(xs, anchor[0] * anchor[1] / xs, color="gray", ls="--", lw=1,
                label=r"$\gamma$ = 1 through " + ref["reference"])  # type: ignore[index]
    fit = data.best.get("exponent_fit")
    if fit:
        ax.plot(xs, np.exp(fit["intercept"]) * xs ** fit["slope"], color="tab:red", ls=":", lw=1.2,
                label=rf"fit: $\hat\gamma$ = {fit['exponent']:.2f}" + (f", R² {fit['r2']:.2f}" if fit["r2"] else ""))
    for t, lam in pts:
        ax.plot([lam], [t["best_lr"]], marker=mk[t["method"]], ms=7, color=c[t["method"]], ls="none")
        ax.annotate(group_label(t["group"]), (lam, t["best_lr"]), xytext=(5, 4), textcoords="offset points",
                    fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\lambda_{\max}$ (largest Hessian eigenvalue)")
    _plain_log(ax.xaxis)
    _plain_log(ax.yaxis)
    ax.set_ylabel("best learning rate")
    ax.legend(loc="best", frameon=False)
    fig.tight_layout()
    prods = [t["best_lr"] * lam for t, lam in pts]
    return [Figure(save(fig, out_dir, "best_lr_vs_lambda_max"),
                   "Each method's best learning rate against its λ_max (log-log), with lr = 2/λ_max (the stability "
                   "bound of gradient descent on a quadratic), the γ = 1 prediction through the reference method's "
                   "point and the least-squares fit log lr = a − γ̂ log λ_max; lr·λ_max ranges from "
                   f"{min(prods):.3g} to {max(prods):.3g}.")]


def all_figures(data: SweepData, out_dir: Path, zoom_steps: int | None = None) -> list[Figure]:
    figs = lr_curves(data, out_dir)
    figs += by_method(data, out_dir)
    figs += training_curves(data, out_dir, zoom_steps)
    figs += rate_heatmaps(data, out_dir)
    figs += sensitivity(data, out_dir)
    figs += lr_vs_lambda(data, out_dir)
    return figs

