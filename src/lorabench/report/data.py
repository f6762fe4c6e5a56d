"""What a report is made of: the store's rows, ``lorabench.sweep.best``'s table, and each trial's curves.

Everything the figures, tables and summary show is computed here, from the store and the trials'
run folders, so that the three can never disagree.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from ..errors import ConfigError
from ..methods.registry import get_method
from ..records import BAD, FINISHED, CurvePoint, Stat, TrialRow
from ..sweep.curves import final, per_rate, points, set_names
from ..sweep.summary import best as sweep_best, open_store
from ..text import num as fmt_value


@dataclass
class SweepData:
    sweep_dir: Path
    rows: list[TrialRow]  # every trial of the store, any status
    best: dict[str, Any]  # lorabench.sweep.best(store), as is
    meta: dict[str, Any] | None  # the sweep config recorded by run_sweep (sweep + base)
    strategy: str | None
    methods: list[str] = field(default_factory=list)  # in the sweep config's order

    @property
    def finished(self) -> list[TrialRow]:
        return [r for r in self.rows if r["status"] in FINISHED]

    def method_rows(self, method: str) -> list[TrialRow]:
        return [r for r in self.rows if r["method"] == method]

    def group_rows(self, group: dict[str, Any]) -> list[TrialRow]:
        g = json.dumps(group, sort_keys=True)
        return [r for r in self.rows if r["grp"] == g]


def load(sweep_dir: str | Path, store_url: str | None = None) -> SweepData:
    """Read a sweep; a missing store or a sweep without any finished trial is a ``ConfigError``."""
    sweep_dir = Path(sweep_dir)
    store = open_store(sweep_dir, store_url)
    try:
        rows = store.rows()
        if not rows:
            raise ConfigError(f"{sweep_dir}: the sweep has no trials")
        if not any(r["status"] in FINISHED for r in rows):
            raise ConfigError(f"{sweep_dir}: no finished trial yet ({len(rows)} pending or running)")
        b = sweep_best(store)
        meta = store.get_meta("sweep")
        strategy = store.get_meta("strategy")
    finally:
        store.close()
    order = list(((meta or {}).get("sweep") or {}).get("space", {}).get("methods") or [])
    seen = [m for m in dict.fromkeys(r["method"] for r in rows)]
    methods = [m for m in order if m in seen] + [m for m in seen if m not in order]
    return SweepData(sweep_dir, rows, b, meta, strategy, methods)


# --- labels and numbers ---------------------------------------------------------------------------------

def setting(group: dict[str, Any]) -> str:
    """The group's axes other than the method, e.g. ``rank=8, batch_size=16`` (empty if none)."""
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in group.items() if k != "method")


def group_label(group: dict[str, Any]) -> str:
    s = setting(group)
    return f"{group['method']} ({s})" if s else group["method"]


def lambda_max(t: dict[str, Any]) -> float | None:
    """λ_max of a ``best()`` table row, if measured (a positive finite number), else None."""
    v = t.get("lambda_max")
    return float(v) if isinstance(v, int | float) and math.isfinite(v) and v > 0 else None


def per_method_best(data: SweepData) -> list[dict[str, Any]]:
    """Each method's best group (``best()`` table rows), by mean accuracy, best first (stable)."""
    out: dict[str, dict[str, Any]] = {}
    for t in data.best["table"]:
        m = t["method"]
        if m not in out or t["accuracy"]["mean"] > out[m]["accuracy"]["mean"]:
            out[m] = t
    order = {m: i for i, m in enumerate(data.methods)}
    return sorted(out.values(), key=lambda t: (-t["accuracy"]["mean"], order.get(t["method"], 0)))


# --- learning-rate curves -------------------------------------------------------------------------------

def lr_points(rows: list[TrialRow]) -> list[CurvePoint]:
    """A group's curve with one point per learning rate (:func:`lorabench.sweep.curves.points`, the curve
    ``best`` uses; where a second rate axis varies, the best point at each rate)."""
    return per_rate(points(rows))


def metric_keys(data: SweepData) -> list[tuple[str, str]]:
    """The figures a report shows, as (key, label): accuracy and macro-F1 for a classification task; for a
    generative task the mean over its evaluation sets (the figure the best is chosen on), then each set
    (key ``set:NAME``)."""
    sets = set_names(data.finished)
    if sets:
        return [("accuracy", "mean over sets"), *((f"set:{n}", n) for n in sets)]
    return [("accuracy", "dev accuracy"), ("macro_f1", "dev macro-F1")]


def stat_of(holder: Any, key: str) -> Stat | None:
    """Metric ``key`` (see :func:`metric_keys`) of a curve point or a ``best`` row."""
    if key.startswith("set:"):
        return (holder.get("sets") or {}).get(key[4:])
    value: Stat | None = holder.get(key)
    return value


def shown(p: CurvePoint, key: str = "accuracy") -> float | None:
    """A point's mean as the report shows it: None (the statuses are shown instead) when no seed finished ok."""
    st = stat_of(p, key)
    return st["mean"] if p["n_ok"] and st is not None else None


def bad_trials(data: SweepData) -> list[TrialRow]:
    return [r for r in data.rows if r["status"] in BAD]


# --- per-trial curves -----------------------------------------------------------------------------------

def run_dir(data: SweepData, r: TrialRow) -> Path | None:
    here = data.sweep_dir / "trials" / r["key"]
    if here.is_dir():
        return here
    res = r.get("result")
    there = res.get("run_dir") if res else None
    return Path(there) if there and Path(there).is_dir() else None


def read_metrics(folder: Path | None) -> list[dict[str, Any]]:
    if folder is None or not (folder / "metrics.jsonl").is_file():
        return []
    out = []
    for line in (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a run killed mid-line: keep what is whole
            continue
    return out


def best_run(data: SweepData, t: dict[str, Any]) -> TrialRow | None:
    """The trial behind a ``best()`` table row: at its best lr, the seed with the highest final accuracy."""
    rows = [r for r in data.group_rows(t["group"]) if r["lr"] == t["best_lr"] and final(r) is not None]
    if not rows:
        return None
    return max(rows, key=lambda r: (final(r), -r["seed"]))


class Curves(TypedDict):
    """A trial's metrics: ``loss`` at the steps ``step``; at the steps ``eval_step``, each metric of
    :func:`metric_keys` (``evals[key]``, NaN where an evaluation lacks it)."""

    step: list[int]
    loss: list[float]
    eval_step: list[int]
    evals: dict[str, list[float]]


def _logged(key: str) -> str:
    """The name of metric ``key`` in ``metrics.jsonl``."""
    return f"eval_{key[4:]}" if key.startswith("set:") else f"eval_{key}"


def curves(data: SweepData, r: TrialRow) -> Curves:
    """A trial's training loss at every step and its evaluation metrics at every evaluation."""
    keys = [k for k, _ in metric_keys(data)]
    out: Curves = {"step": [], "loss": [], "eval_step": [], "evals": {k: [] for k in keys}}
    for m in read_metrics(run_dir(data, r)):
        if "step" not in m:
            continue
        if isinstance(m.get("loss"), int | float):
            out["step"].append(m["step"])
            out["loss"].append(m["loss"])
        if isinstance(m.get("eval_accuracy"), int | float):
            out["eval_step"].append(m["step"])
            for k in keys:
                out["evals"][k].append(m.get(_logged(k), math.nan))
    return out


# --- what was explored ----------------------------------------------------------------------------------

def sensitivity_axes(data: SweepData) -> list[str]:
    """Every swept axis but the learning rates (and the options a two-rate grid derives from them)."""
    out: set[str] = set()
    for r in data.rows:
        declared = get_method(r["method"]).rate_axes
        derived = {declared[a] for a in r["axes"] if a in declared}
        out |= {a for a in r["axes"] if not a.startswith("lr_") and a not in derived}
    return sorted(out)


def explored(data: SweepData, method: str) -> dict[str, Any]:
    """The values each axis took for a method, its seeds, and its trials by status."""
    rows = data.method_rows(method)
    axes: dict[str, set[Any]] = defaultdict(set)
    for r in rows:
        for k, v in r["axes"].items():
            axes[k].add(v)
    declared = get_method(method).rate_axes
    for axis in [a for a in axes if a in declared]:  # a two-rate grid: its option is derived, show the rate instead
        axes.pop(declared[axis], None)
    return {"method": method, "lrs": sorted({r["lr"] for r in rows}), "axes": {k: sorted(v) for k, v in axes.items()},
            "seeds": sorted({r["seed"] for r in rows}), "trials": len(rows),
            "statuses": dict(sorted(Counter(r["status"] for r in rows).items()))}


def shared_setup(data: SweepData) -> list[tuple[str, str]]:
    """The run settings common to every trial (those that vary are marked as swept)."""
    keys = [("model", ("model", "name")), ("head", ("model", "head")), ("rank", ("rank",)), ("alpha", ("alpha",)),
            ("target modules", ("target_modules",)), ("schedule", ("schedule",)),
            ("warmup steps", ("warmup_steps",)), ("warmup ratio", ("warmup_ratio",)), ("steps", ("steps",)), ("batch size", ("batch_size",)),
            ("gradient accumulation", ("grad_accum",)), ("max grad norm", ("max_grad_norm",)),
            ("weight decay", ("weight_decay",)), ("train examples", ("data", "n_train")),
            ("dev examples", ("data", "n_eval")), ("train data", ("data", "train", "path")),
            ("train data (hub)", ("data", "train", "hub")), ("train rows", ("data", "train", "n")),
            ("prompt template", ("data", "template")), ("max new tokens", ("data", "max_new_tokens")),
            ("max length", ("model", "max_length")), ("eval every", ("eval_every",)), ("device", ("device",)),
            ("bf16", ("bf16",))]

    def get(cfg: Any, path: tuple[str, ...]) -> Any:
        for p in path:
            cfg = cfg.get(p) if isinstance(cfg, dict) else None
        return cfg

    out = []
    for name, path in keys:
        vals = {json.dumps(get(r["config"], path), sort_keys=True) for r in data.rows}
        if len(vals) == 1:
            v = json.loads(vals.pop())
            if v is None and name not in ("max grad norm",):
                continue
            out.append((name, "none" if v is None else fmt_value(v)))
        else:
            out.append((name, "swept"))
    return out


def task_label(cfg: dict[str, Any]) -> str:
    """What a trial config trains on, in words: ``sst2``, or a generative task and its evaluation sets."""
    d = cfg.get("data") or {}
    if d.get("kind") == "sft":
        sets = ", ".join(f"{e['name']} ({e['evaluator']}{', ' + str(e['n']) + ' rows' if e.get('n') else ''})"
                         for e in d.get("eval", []))
        return f"supervised fine-tuning scored by generation on {sets}"
    train = d.get("train") or {}
    where = train.get("path") or f"hub:{train.get('hub')}"
    return f"classification of {where}" + (f" (and test {(d.get('test') or {}).get('path')})" if d.get("test") else "")


def provenance(data: SweepData) -> list[tuple[str, str]]:
    """Where the numbers come from, as the trials recorded it: versions, commit, device, data hashes."""
    vals: dict[str, set[str]] = defaultdict(set)
    for r in data.finished:
        res = r["result"]
        p = (res.get("provenance") if res else None) or {}
        for k, v in (p.get("versions") or {}).items():
            vals[k].add(str(v))
        git = p.get("git") or {}
        if git.get("commit"):
            vals["git commit"].add(git["commit"][:12] + (" (dirty)" if git.get("dirty") else ""))
        if p.get("device"):
            vals["device"].add(", ".join(f"{k}={v}" for k, v in p["device"].items()))
        for split, d in (p.get("data") or {}).items():
            if isinstance(d, dict) and d.get("sha256"):
                vals[f"{split} data sha256"].add(d["sha256"][:16])
        if p.get("host"):
            vals["host"].add(str(p["host"]))
    return [(k, "; ".join(sorted(v))) for k, v in vals.items()]


# --- significance against the reference method ---------------------------------------------------------

REFERENCE = "lora"  # the method every other is tested against


def evaluated_split(data: SweepData) -> str:
    """The split the comparison reports: ``test`` when the trials evaluated one, else ``validation``."""
    held = [r["result"].get("held_out") or {} for r in data.finished if r["result"]]
    return "test" if any("test" in h for h in held) else "validation"


def final_split(best: list[dict[str, Any]]) -> str | None:
    """The split the final pass (a sweep's ``final:`` overrides) reports: ``test`` when every best row's final run
    evaluated one, ``validation`` when they have final runs without it, None without a final pass."""
    runs = [t.get("final_pass") for t in best]
    if not runs or not all(runs):
        return None
    return "test" if all("test" in r["held_out"] for r in runs if r) else "validation"


def final_figure(t: dict[str, Any], split: str) -> float:
    """A best row's final-pass accuracy on ``split``."""
    fp = t["final_pass"]
    return float((fp["validation"] if split == "validation" else fp["held_out"][split])["accuracy"])


def _correct(folder: Path | None, split: str) -> dict[int, bool] | None:
    """Example index → whether the run in ``folder`` predicted it right, from its predictions file on ``split``."""
    name = "predictions.test.jsonl" if split == "test" else "predictions.jsonl"
    if folder is None or not (folder / name).is_file():
        return None
    rows = [json.loads(x) for x in (folder / name).read_text(encoding="utf-8").splitlines() if x.strip()]
    return {int(p["index"]): p["label"] == p["prediction"] for p in rows}


def paired_test(data: SweepData, t: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any] | None:
    """McNemar's exact test of a method's best run against the reference's on the same examples (same seed when
    both ran it): ``b`` examples only the method gets right, ``c`` only the reference; the two-sided p-value is the
    binomial test of b against b + c at 1/2. None when a predictions file is missing. With a final pass (see
    :func:`final_split`) the test compares the final runs on all rows of their split."""
    fsplit = final_split([t, ref])
    if fsplit is not None:  # the final pass's runs: every row of the split, each best setting trained alone
        a, b_ = (_correct(Path(x["final_pass"]["run_dir"]), fsplit) for x in (t, ref))
        return _mcnemar(a, b_, f"final {fsplit}", None)
    mine, theirs = best_run(data, t), best_run(data, ref)
    if mine is None or theirs is None:
        return None
    same_seed = [r for r in data.group_rows(ref["group"]) if r["lr"] == ref["best_lr"] and r["seed"] == mine["seed"]
                 and final(r) is not None]
    theirs = same_seed[0] if same_seed else theirs
    split = evaluated_split(data)
    return _mcnemar(_correct(run_dir(data, mine), split), _correct(run_dir(data, theirs), split), split, mine["seed"])


def _mcnemar(a: dict[int, bool] | None, b_: dict[int, bool] | None, split: str, seed: int | None
             ) -> dict[str, Any] | None:
    from scipy.stats import binomtest

    if a is None or b_ is None or set(a) != set(b_):
        return None
    b = sum(a[i] and not b_[i] for i in a)
    c = sum(b_[i] and not a[i] for i in a)
    p = binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    return {"delta": (sum(a.values()) - sum(b_.values())) / len(a), "b": b, "c": c, "p": float(p), "n": len(a),
            "split": split, "seed": seed}


def run_interval(data: SweepData, t: dict[str, Any], split: str) -> list[float] | None:
    """The 95% bootstrap interval of the best run's accuracy on ``split`` (as it recorded it)."""
    r = best_run(data, t)
    res: dict[str, Any] = dict(r["result"] or {}) if r else {}
    m = ((res.get("held_out") or {}).get("test") if split == "test" else res.get("final")) or {}
    ci = m.get("accuracy_ci")
    return list(ci) if ci else None
