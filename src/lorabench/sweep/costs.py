"""The cost pass: each group's best setting timed alone, so that cost columns never show a fused share.

A fused trial's ``train_seconds`` is its share of its group's time and its peak memory the group's (see
:mod:`lorabench.fuse`): fine for choosing learning rates, not a method's cost. After a sweep in which a group's
best trial trained fused, that trial's config (its first ok seed) is trained again alone, in a fresh process
(``lorabench train``), into ``SWEEP_DIR/costs/KEY``; the store's meta ``costs`` keeps, per group, what it
measured. A cost run already on disk is adopted, not repeated, so the pass resumes like the sweep.

A sweep with ``final:`` overrides makes this the *final pass*: every group's best setting, fused or not, is
trained again alone with the overrides merged into its config — typically the full validation split and a test
split where the sweep scored a sample — and the pass records that run's figures (``final``, ``held_out``,
``counts``) beside its costs. The best setting is still chosen on the sweep's own evaluation; the final pass
only reports it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ..config import merge
from ..files import atomic_write_text
from ..records import Status
from .store import Store
from .summary import best_point_rows

COST_FIELDS = ("train_seconds", "samples_per_second", "peak_memory_mb", "memory_kind")


FINAL_FIELDS = ("final", "held_out", "counts")  # what the final pass also keeps


def _best_trials(store: Store, every: bool) -> dict[str, Any]:
    """Group (JSON) → the trial row of its best setting: every group's, or only those whose best trained fused."""
    out = {}
    for t, ok in best_point_rows(store):
        if t["fused"] <= 1 and not every:
            continue
        if ok:
            grp = json.dumps(t["group"], sort_keys=True)
            out[grp] = ok[0]
    return out


def measure_costs(store: Store, out: Path, *, final: dict[str, Any] | None = None,
                  log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Time each group's fused best setting alone, or with ``final`` overrides every group's best setting (see the
    module docstring); returns the meta ``costs``."""
    costs: dict[str, Any] = dict(store.get_meta("costs") or {})
    final = final or {}
    folder = out / ("final" if final else "costs")
    for grp, row in _best_trials(store, every=bool(final)).items():
        done = costs.get(grp) or {}
        if done.get("key") == row["key"] and done.get("overrides", {}) == final:
            continue
        run_dir = folder / row["key"]
        result_path = run_dir / "result.json"
        if not result_path.is_file():
            log(f"{'final' if final else 'cost'} pass: {row['method']} lr={row['lr']:g} seed {row['seed']} alone")
            run_dir.mkdir(parents=True, exist_ok=True)
            # a timing (and, with overrides, a fuller evaluation), not a trial to track
            # held-out splits only in a final pass: a cost run's figures are not reported (the held-out pass's are)
            over = final or ({"data": {"test": None}} if (row["config"].get("data") or {}).get("test") else {})
            cfg = {**merge(row["config"], over), "save_adapter": False, "report_to": []}
            atomic_write_text(run_dir / "cost-config.yaml", yaml.safe_dump(cfg, sort_keys=False))
            done = subprocess.run([sys.executable, "-m", "lorabench.cli", "train", str(run_dir / "cost-config.yaml"),
                                   "-o", str(run_dir), "-q"], capture_output=True, text=True)
            if done.returncode != 0 or not result_path.is_file():
                log(f"cost pass: {row['method']} failed alone ({(done.stderr or done.stdout).strip()[-200:]})")
                continue
        result = json.loads(result_path.read_text(encoding="utf-8"))
        if result.get("status") != Status.OK.value:
            continue
        costs[grp] = {"key": row["key"], "run_dir": str(run_dir), **{k: result.get(k) for k in COST_FIELDS}}
        if final:
            costs[grp].update(overrides=final, **{k: result.get(k) for k in FINAL_FIELDS})
        store.set_meta("costs", costs)
    return costs
