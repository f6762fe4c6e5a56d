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
from statistics import mean, pstdev
from typing import Any

from ..errors import ConfigError
from ..sweep import best as sweep_best, open_store
from ..sweep.store import DONE

BAD = ("diverged", "failed", "oom")  # finished without a final accuracy


@dataclass
class SweepData:
    sweep_dir: Path
    rows: list[dict[str, Any]]  # every trial of the store, any status
    best: dict[str, Any]  # lorabench.sweep.best(store), as is
    meta: dict[str, Any] | None  # the sweep config recorded by run_sweep (sweep + base)
    strategy: str | None
    methods: list[str] = field(default_factory=list)  # in the sweep config's order

    @property
    def finished(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] in DONE]

    def method_rows(self, method: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["method"] == method]

    def group_rows(self, group: dict[str, Any]) -> list[dict[str, Any]]:
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
        if not any(r["status"] in DONE for r in rows):
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

def fmt_value(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def setting(group: dict[str, Any]) -> str:
    """The group's axes other than the method, e.g. ``rank=8, batch_size=16`` (empty if none)."""
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in group.items() if k != "method")


def group_label(group: dict[str, Any]) -> str:
    s = setting(group)
    return f"{group['method']} ({s})" if s else group["method"]


def lambda_max(t: dict[str, Any]) -> float | None:
    """λ_max of a ``best()`` table row, if measured: a number, or a {mean: …} mapping; else None."""
    v = t.get("lambda_max")
    if isinstance(v, dict):
        v = v.get("mean")
    if isinstance(v, int | float) and math.isfinite(v) and v > 0:
        return float(v)
    return None


def final(r: dict[str, Any], key: str = "accuracy") -> float | None:
    f = (r.get("result") or {}).get("final") if r["status"] == "ok" else None
    return float(f[key]) if f and f.get(key) is not None else None


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

def _ms(xs: list[float]) -> tuple[float | None, float | None]:
    return (mean(xs), pstdev(xs) if len(xs) > 1 else 0.0) if xs else (None, None)


def lr_points(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per learning rate of a group: mean ± std over the seeds that finished ``ok``, and the
    statuses of those that did not. Where a group holds several trials per rate that differ by more
    than the seed (the LoRA+ η_A × η_B grid: ``lr_b``), the best of them at that rate is shown."""
    cells: dict[tuple[float, Any], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        cells[(r["lr"], r["axes"].get("lr_b"))].append(r)
    by_lr: dict[float, list[dict[str, Any]]] = defaultdict(list)
    for (lr, lr_b), rs in cells.items():
        accs = [a for a in (final(r) for r in rs) if a is not None]
        f1s = [a for a in (final(r, "macro_f1") for r in rs) if a is not None]
        am, asd = _ms(accs)
        fm, fsd = _ms(f1s)
        by_lr[lr].append({"lr": lr, "lr_b": lr_b, "accuracy": am, "accuracy_std": asd, "macro_f1": fm,
                          "macro_f1_std": fsd, "n_ok": len(accs), "n": len(rs),
                          "statuses": dict(Counter(r["status"] for r in rs))})
    out = []
    for lr in sorted(by_lr):
        pts = by_lr[lr]
        top = max(pts, key=lambda p: -1.0 if p["accuracy"] is None else p["accuracy"])
        statuses: Counter[str] = Counter()
        for p in pts:
            statuses.update(p["statuses"])
        out.append({**top, "statuses": dict(statuses), "n": sum(p["n"] for p in pts),
                    "bad": sum(statuses.get(s, 0) for s in BAD)})
    return out


def bad_trials(data: SweepData) -> list[dict[str, Any]]:
    return [r for r in data.rows if r["status"] in BAD]


# --- per-trial curves -----------------------------------------------------------------------------------

def run_dir(data: SweepData, r: dict[str, Any]) -> Path | None:
    here = data.sweep_dir / "trials" / r["key"]
    if here.is_dir():
        return here
    there = (r.get("result") or {}).get("run_dir")
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


def best_run(data: SweepData, t: dict[str, Any]) -> dict[str, Any] | None:
    """The trial behind a ``best()`` table row: at its best lr, the seed with the highest final accuracy."""
    rows = [r for r in data.group_rows(t["group"]) if r["lr"] == t["best_lr"] and final(r) is not None]
    if not rows:
        return None
    return max(rows, key=lambda r: (final(r), -r["seed"]))


def curves(data: SweepData, r: dict[str, Any]) -> dict[str, list[float]]:
    """A trial's training loss at every step and its dev accuracy / macro-F1 at every evaluation."""
    out: dict[str, list[float]] = {"step": [], "loss": [], "eval_step": [], "eval_accuracy": [],
                                   "eval_macro_f1": []}
    for m in read_metrics(run_dir(data, r)):
        if "step" not in m:
            continue
        if isinstance(m.get("loss"), int | float):
            out["step"].append(m["step"])
            out["loss"].append(m["loss"])
        if isinstance(m.get("eval_accuracy"), int | float):
            out["eval_step"].append(m["step"])
            out["eval_accuracy"].append(m["eval_accuracy"])
            out["eval_macro_f1"].append(m.get("eval_macro_f1", math.nan))
    return out


# --- what was explored ----------------------------------------------------------------------------------

SENSITIVITY_AXES = ("rank", "batch_size", "steps", "loraplus_ratio")


def explored(data: SweepData, method: str) -> dict[str, Any]:
    """The values each axis took for a method, its seeds, and its trials by status."""
    rows = data.method_rows(method)
    axes: dict[str, set[Any]] = defaultdict(set)
    for r in rows:
        for k, v in r["axes"].items():
            axes[k].add(v)
    if "lr_b" in axes:  # the η_A × η_B grid: the ratio is derived, show η_B instead
        axes.pop("loraplus_ratio", None)
    return {"method": method, "lrs": sorted({r["lr"] for r in rows}), "axes": {k: sorted(v) for k, v in axes.items()},
            "seeds": sorted({r["seed"] for r in rows}), "trials": len(rows),
            "statuses": dict(sorted(Counter(r["status"] for r in rows).items()))}


def shared_setup(data: SweepData) -> list[tuple[str, str]]:
    """The run settings common to every trial (those that vary are marked as swept)."""
    keys = [("model", ("model", "name")), ("head", ("model", "head")), ("rank", ("rank",)), ("alpha", ("alpha",)),
            ("target modules", ("target_modules",)), ("schedule", ("schedule",)),
            ("warmup steps", ("warmup_steps",)), ("steps", ("steps",)), ("batch size", ("batch_size",)),
            ("gradient accumulation", ("grad_accum",)), ("max grad norm", ("max_grad_norm",)),
            ("weight decay", ("weight_decay",)), ("train examples", ("data", "n_train")),
            ("dev examples", ("data", "n_eval")), ("eval every", ("eval_every",)), ("device", ("device",)),
            ("bf16", ("bf16",))]

    def get(cfg: dict[str, Any], path: tuple[str, ...]) -> Any:
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


def provenance(data: SweepData) -> list[tuple[str, str]]:
    """Where the numbers come from, as the trials recorded it: versions, commit, device, data hashes."""
    vals: dict[str, set[str]] = defaultdict(set)
    for r in data.finished:
        p = (r["result"] or {}).get("provenance") or {}
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
