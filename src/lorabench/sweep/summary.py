"""What a sweep found: status counts, and per method the best learning rate with mean ± std over seeds."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from pathlib import Path
from statistics import mean
from typing import Any

from ..errors import ConfigError
from ..records import FINISHED, Stat, Status, SummaryRow, TrialRow
from .store import worker_gone
from .curves import best_point, points, stat
from .prediction import fit_exponent, grid_steps, predict_lr, reference_group
from .space import SweepSpace
from ..text import num
from .store import Store, default_url


def open_store(sweep_dir: str | Path, store_url: str | None = None) -> Store:
    sweep_dir = Path(sweep_dir)
    if store_url is None and not (sweep_dir / "sweep.db").is_file():
        raise ConfigError(f"{sweep_dir}: no sweep here (sweep.db not found)")
    return Store(store_url or default_url(sweep_dir), read_only=True)


def status(store: Store) -> dict[str, Any]:
    rows = store.rows()
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[r["status"].value] += 1
    finished = [r for r in rows if r["status"] in FINISHED and r["started"] and r["finished"]]
    per_trial = mean(r["finished"] - r["started"] for r in finished) if finished else None  # type: ignore[operator]
    now = time.time()
    running = [{"key": r["key"], "method": r["method"], "lr": r["lr"], "seed": r["seed"], "owner": r["owner"],
                "step": r["step"], "steps": r["config"]["steps"], "since_s": now - (r["started"] or now),
                "dead": worker_gone(r["owner"], r["heartbeat"]), "quiet_s": now - (r["heartbeat"] or now)}
               for r in rows if r["status"] is Status.RUNNING]
    live = [r for r in running if not r["dead"]]
    eta = None
    if per_trial is not None and (counts.get(Status.PENDING.value) or running):
        # what is left of the live trials, plus every pending (and abandoned) one, over the live workers
        work = sum(max(0.0, per_trial - r["since_s"]) for r in live)
        work += per_trial * (counts.get(Status.PENDING.value, 0) + len(running) - len(live))
        eta = work / max(1, len(live))
    return {"total": len(rows), "counts": dict(counts), "strategy": store.get_meta("strategy"), "running": running,
            "eta_seconds": eta}


def format_status(s: dict[str, Any]) -> str:
    """``lorabench status``'s lines: counts, the running trials, the ETA."""
    lines = [f"{s['total']} trials ({s['strategy']}): " + ", ".join(f"{k}={v}" for k, v in sorted(s["counts"].items()))]
    lines += [(f"  dead    {r['method']} lr={num(r['lr'])} seed={r['seed']} at step {r['step']}/{r['steps']}: its "
               f"worker {r['owner']} is gone (no heartbeat for {r['quiet_s']:.0f} s); the next sweep run reruns it")
              if r.get("dead") else
              f"  running {r['method']} lr={num(r['lr'])} seed={r['seed']} step {r['step']}/{r['steps']} on {r['owner']}"
              for r in s["running"]]
    if s["eta_seconds"] is not None:
        lines.append(f"ETA ≈ {s['eta_seconds'] / 60:.1f} min")
    return "\n".join(lines)


def best(store: Store) -> dict[str, Any]:
    """Per group (method and its other axes): its learning-rate curve (:func:`lorabench.sweep.curves.points`),
    the best point, its cost, and the group's λ_max at init if the sweep measured it (``hessian: true``).

    Only trials that finished ok enter a mean or the spread of the peaks; a group none of whose trials did is
    listed under ``no_ok`` with its trials by status, and has no best learning rate."""
    every = store.rows()
    rows = [r for r in every if r["status"] in FINISHED]
    unfinished = dict(Counter(r["status"].value for r in every if r["status"] not in FINISHED))
    hessian = store.get_meta("hessian") or {}  # group (JSON) → its Hessian at init
    costs = store.get_meta("costs") or {}  # group (JSON) → its best setting timed alone (the cost pass)
    groups: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        groups[r["grp"]].append(r)
    table, no_ok = [], []
    for grp, rs in groups.items():
        curve = points(rs)
        top = best_point(curve)
        if top is None or top["accuracy"] is None:
            no_ok.append({"group": json.loads(grp), "method": json.loads(grp)["method"], "trials": len(rs),
                          "counts": dict(sorted(Counter(r["status"].value for r in rs).items()))})
            continue
        at_top = [r for r in rs if r["lr"] == top["lr"] and r["status"] is Status.OK and (r["result"] or {}).get("final")
                  and {k: r["axes"][k] for k in top.get("paired", {})} == top.get("paired", {})]
        res = [r["result"] for r in at_top if r["result"]]
        group = json.loads(grp)
        fused = max((x.get("fused", 1) for x in res), default=1)
        cost = _costs(res, fused, costs.get(grp))
        tests = [x["held_out"]["test"]["accuracy"] for x in res if "test" in (x.get("held_out") or {})]
        row = SummaryRow(
            group=group, method=group["method"], best_lr=top["lr"], lambda_max=(hessian.get(grp) or {}).get("lambda_max"),
            axes=top["axes"], accuracy=top["accuracy"], macro_f1=top["macro_f1"], seeds=top["seeds"],
            test=stat(tests) if tests else None, majority=res[0].get("majority") if res else None,
            degenerate=sum(bool(x.get("one_class")) for x in res),
            trainable_params=res[0]["trainable_params"] if res else None, fused=fused,
            trials=sum(c["seeds"] for c in curve), curve=curve, train_seconds=cost["train_seconds"],
            samples_per_second=cost["samples_per_second"], peak_memory_mb=cost["peak_memory_mb"],
            memory_kind=cost["memory_kind"], cost_source=cost["cost_source"])
        if "sets" in top:
            row["sets"] = top["sets"]
        if (costs.get(grp) or {}).get("final") and costs[grp].get("key") in {r["key"] for r in at_top}:
            row["final_pass"] = _final_pass(costs[grp])
        if details := _details(res):
            row["details"] = details
        table.append(row)
    peaks = [t["accuracy"]["mean"] for t in table]
    grid_trials = store.get_meta("grid_trials") or {}
    for t in table:
        t["grid_trials"] = grid_trials.get(json.dumps(t["group"], sort_keys=True))
    fit = predictions(table, store.get_meta("prediction") or {}, (store.get_meta("sweep") or {}).get("sweep"))
    return {"strategy": store.get_meta("strategy"), "trials": len(rows), "unfinished": unfinished, "table": table,
            "no_ok": no_ok, "grid_trials": sum(grid_trials.values()) if grid_trials else None,
            "exponent_fit": fit, "spread": (max(peaks) - min(peaks)) if peaks else None}


def best_point_rows(store: Store) -> list[tuple[SummaryRow, list[TrialRow]]]:
    """Each ``best()`` table row with the trials at its point (learning rate and any second rate) that finished ok,
    by seed: what the held-out, cost and final passes act on."""
    rows = store.rows()
    out = []
    for t in best(store)["table"]:
        grp = json.dumps(t["group"], sort_keys=True)
        out.append((t, sorted((r for r in rows if r["grp"] == grp and r["lr"] == t["best_lr"] and r["axes"] == t["axes"]
                               and r["status"] is Status.OK), key=lambda r: r["seed"])))
    return out


def grid_lrs(space: SweepSpace | None, method: str) -> list[float] | None:
    """The sorted learning rates of ``method``'s full grid in the recorded sweep space (its two-rate grid's lr)."""
    if space is None:
        return None
    pair = space.rate_grid.get(method)
    return sorted(float(x) for x in pair["lr"]) if pair and "lr" in pair else space.lrs(method)


def predictions(table: list[Any], settings: dict[str, Any], sweep: dict[str, Any] | None) -> dict[str, Any] | None:
    """Per row with a λ_max, the rate predicted from its reference's best (``prediction`` in the row: the predicted
    rate, found / predicted, the signed grid steps between them, ``far`` beyond one step); returns the fit of
    log(best lr) on log(λ_max) over the rows (:func:`lorabench.sweep.prediction.fit_exponent`)."""
    reference, exponent = settings.get("reference", "lora"), float(settings.get("exponent", 1.0))
    space = SweepSpace.model_validate(sweep["space"]) if sweep else None
    by_group = {json.dumps(t["group"], sort_keys=True): t for t in table}
    usable = [t for t in table if t.get("lambda_max") is not None and t["lambda_max"] > 0]
    for t in usable:
        grp = json.dumps(t["group"], sort_keys=True)
        ref = by_group.get(reference_group(grp, reference))
        if t["method"] == reference or ref is None or ref not in usable:
            continue
        lr = predict_lr(ref["best_lr"], ref["lambda_max"], t["lambda_max"], exponent)
        grid = grid_lrs(space, t["method"])
        steps = grid_steps(grid, lr, t["best_lr"]) if grid else None
        t["prediction"] = {"reference": reference, "reference_lr": ref["best_lr"], "exponent": exponent,
                           "predicted_lr": lr, "ratio": t["best_lr"] / lr, "grid_steps": steps,
                           "far": steps is not None and abs(steps) > 1}
    fit = fit_exponent([t["lambda_max"] for t in usable], [t["best_lr"] for t in usable])
    return fit.as_dict() if fit else None


def _final_pass(run: dict[str, Any]) -> dict[str, Any]:
    """The final pass's figures: validation and held-out metrics of the best setting trained again alone."""
    labels = (run.get("counts") or {}).get("label_counts") or {}  # a classification run's examples per split
    return {"validation": run["final"], "held_out": run.get("held_out") or {}, "run_dir": run.get("run_dir"),
            "n": {k: sum(v.values()) for k, v in labels.items() if k != "train"}}


DETAIL_COLUMNS = ("plus", "prompt_strict", "inst_strict")  # the further figures `best` prints as columns


def _details(res: list[Any]) -> dict[str, dict[str, Stat]]:
    """Each set's further figures (``final.details``) over the best setting's seeds."""
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for x in res:
        for name, figures in ((x.get("final") or {}).get("details") or {}).items():
            for key, v in figures.items():
                values[name][key].append(v)
    return {name: {k: stat(v) for k, v in figures.items()} for name, figures in values.items()}


def _costs(res: list[Any], fused: int, alone: dict[str, Any] | None) -> dict[str, Any]:
    """A best row's cost columns, always from runs that trained alone: the final pass's when the sweep has one (each
    best setting retrained alone at the end), else its trials' own when unfused, else the cost pass's; none (``cost_source`` says so) when the best trained fused and was not yet timed alone."""
    if fused <= 1 and res and not (alone or {}).get("overrides"):
        return dict(train_seconds=mean(x["train_seconds"] for x in res),
                    samples_per_second=mean(x.get("samples_per_second") or 0.0 for x in res),
                    peak_memory_mb=max(x["peak_memory_mb"] for x in res), memory_kind=res[0]["memory_kind"],
                    cost_source="trials")
    if alone:
        return {**{k: alone.get(k) for k in ("train_seconds", "samples_per_second", "peak_memory_mb", "memory_kind")},
                "cost_source": "cost pass"}
    return dict(train_seconds=None, samples_per_second=None, peak_memory_mb=None, memory_kind=None, cost_source="none")


def _final_columns(table: list[Any]) -> list[str]:
    """The final pass's columns: validation accuracy on all its rows, and each held-out split's."""
    runs = [t["final_pass"] for t in table if t.get("final_pass")]
    if not runs:
        return []
    n = max((r["n"].get("validation") or 0 for r in runs), default=0)
    held = sorted({k for r in runs for k in r["held_out"]})
    return [f"final val ({n})" if n else "final val"] + [f"final {k} ({max(r['n'].get(k) or 0 for r in runs)})"
                                                          for k in held]


def _final_cells(t: Any, columns: list[str]) -> list[str]:
    if not columns:
        return []
    fp = t.get("final_pass")
    if not fp:
        return ["-"] * len(columns)
    held = [c.split(" ")[1] for c in columns[1:]]
    return [f"{fp['validation']['accuracy']:.4f}",
            *(f"{fp['held_out'][k]['accuracy']:.4f}" if k in fp["held_out"] else "-" for k in held)]


def _prediction_cells(t: Any, reference: str | None) -> list[str]:
    p = t.get("prediction")
    if not p:
        return ["(reference)" if t["method"] == reference else "-", "-"]
    return [num(p["predicted_lr"]), f"{p['ratio']:.3g}" + (" far" if p["far"] else "")]


def _prediction_lines(b: dict[str, Any], saved: bool) -> list[str]:
    """How the λ_max prediction held: the trials spent, the methods it missed, the fitted exponent."""
    out = []
    rows = [t for t in b["table"] if t.get("prediction")]
    if saved:
        out.append(f"trials: {b['trials']} of the full grid's {b['grid_trials']} "
                   f"({b['trials'] / b['grid_trials']:.0%}); trials column: run/full grid per group")
    if rows:
        p = rows[0]["prediction"]
        out.append(f"predicted lr = lr_ref · (λ_ref / λ_max)^{num(p['exponent'])} from {p['reference']}'s best rate; "
                   "found/pred is the rate found over the prediction")
    for t in rows:
        p = t["prediction"]
        if p["far"]:
            out.append(f"{t['method']}: its best rate {num(t['best_lr'])} is {abs(p['grid_steps'])} grid steps "
                       f"{'above' if p['grid_steps'] > 0 else 'below'} the prediction {num(p['predicted_lr'])}: "
                       "the λ_max prediction did not hold for it; do not trust it for this method")
    fit = b.get("exponent_fit")
    if fit:
        ci = f" [{fit['ci'][0]:.2f}, {fit['ci'][1]:.2f}] (95%)" if fit["ci"] else " (no interval from 2 points)"
        r2 = f", R² {fit['r2']:.2f}" if fit["r2"] is not None else ""
        out.append(f"fitted exponent γ̂ = {fit['exponent']:.2f}{ci}{r2} over {fit['n']} groups: log(best lr) = a − γ̂ · "
                   "log(λ_max); γ = 1 is the 2/λ stability argument")
    return out


def _pm(s: Stat | None) -> str:
    """Mean ± sample std; the mean alone for one seed (its spread is unknown)."""
    if s is None:
        return "-"
    return f"{s['mean']:.4f}" + (f" ± {s['std']:.4f}" if s["std"] is not None else "")


def format_best(b: dict[str, Any]) -> str:
    sets = list(dict.fromkeys(n for t in b["table"] for n in t.get("sets", {})))
    extra = list(dict.fromkeys((n, k) for t in b["table"] for n, d in t.get("details", {}).items()
                               for k in DETAIL_COLUMNS if k in d))
    test = any(t.get("test") for t in b["table"])
    final = _final_columns(b["table"])
    predicted = any(t.get("prediction") for t in b["table"])
    reference = next((t["prediction"]["reference"] for t in b["table"] if t.get("prediction")), None)
    saved = b.get("strategy") not in (None, "grid") and b.get("grid_trials")
    head = ["method", "axes", "best lr", "λ_max", *(["predicted lr", "found/pred"] if predicted else []),
            "mean of sets" if sets else "val accuracy", *sets,
            *(f"{n} {k}" for n, k in extra),
            *([] if sets else ["macro-F1"]), *(["test accuracy"] if test else []), *final, "seeds", "train s",
            "peak MB", "params", "trials"]
    lines = []
    for t in sorted(b["table"], key=lambda t: -t["accuracy"]["mean"]):
        axes = ",".join(f"{k}={num(v)}"
                        for k, v in t["group"].items() if k != "method") or "-"
        lines.append([t["method"], axes, num(t["best_lr"]),
                      f"{t['lambda_max']:.4g}" if t.get("lambda_max") is not None else "-",
                      *(_prediction_cells(t, reference) if predicted else []), _pm(t["accuracy"]), *(_pm(t.get("sets", {}).get(n)) for n in sets),
                      *(_pm(t.get("details", {}).get(n, {}).get(k)) for n, k in extra),
                      *([] if sets else [_pm(t["macro_f1"])]), *([_pm(t.get("test"))] if test else []),
                      *_final_cells(t, final), str(t["seeds"]),
                      f"{t['train_seconds']:.1f}" if t["train_seconds"] is not None else "-",
                      f"{t['peak_memory_mb']:.0f}" if t["peak_memory_mb"] is not None else "-",
                      f"{t['trainable_params']:,}" if t["trainable_params"] else "-",
                      f"{t['trials']}/{t['grid_trials']}" if saved and t.get("grid_trials") else str(t["trials"])])
    widths = [max(len(r[i]) for r in [head, *lines]) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    left = b.get("unfinished") or {}
    out = [f"strategy: {b['strategy']}, {b['trials']} finished trials"
           + (f"; not finished: {', '.join(f'{n} {s}' for s, n in sorted(left.items()))}, so these figures may change"
              if left else ""), fmt(head), fmt(["-" * w for w in widths])]
    out += [fmt(r) for r in lines]
    if b["spread"] is not None:
        out.append(f"spread of the peaks across methods: {b['spread'] * 100:.2f} accuracy points "
                   "(over trials that finished ok)")
    out += _prediction_lines(b, bool(saved))
    for g in b.get("no_ok", []):
        axes = ",".join(f"{k}={num(v)}" for k, v in g["group"].items() if k != "method")
        out.append(f"{g['method']}{f' ({axes})' if axes else ''}: no trial finished ok ("
                   + ", ".join(f"{n} {s}" for s, n in g["counts"].items()) + "); no best learning rate")
    if final:
        out.append(f"{' and '.join(final)}: the final pass, each best setting trained again alone and evaluated on "
                   "every row (one seed; the best was chosen on the sweep's own evaluation)")
    unmeasured = sorted({t["method"] for t in b["table"] if t.get("cost_source") == "none"})
    alone = sorted({t["method"] for t in b["table"] if t.get("cost_source") == "cost pass"})
    if alone:
        out.append(f"costs of {', '.join(alone)}: their best setting timed alone after the fused sweep (the cost pass)")
    if unmeasured:
        out.append(f"costs of {', '.join(unmeasured)}: not measured alone yet (their trials trained fused); resume the "
                   "sweep to run the cost pass")
    return "\n".join(out)
