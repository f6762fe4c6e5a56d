"""The cost pass: each group's best setting timed alone, so that cost columns never show a fused share.

A fused trial's ``train_seconds`` is its share of its group's time and its peak memory the group's (see
:mod:`lorabench.fuse`): fine for choosing learning rates, not a method's cost. After a sweep in which a group's
best trial trained fused, that trial's config (its first ok seed) is trained again alone, in a fresh process
(``lorabench train``), into ``SWEEP_DIR/costs/KEY``; the store's meta ``costs`` keeps, per group, what it
measured. A cost run already on disk is adopted, not repeated, so the pass resumes like the sweep.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ..files import atomic_write_text
from ..records import Status
from .store import Store
from .summary import best

COST_FIELDS = ("train_seconds", "samples_per_second", "peak_memory_mb", "memory_kind")


def _best_fused_trials(store: Store) -> dict[str, Any]:
    """Group (JSON) → the trial row of its best setting, for groups whose best trained fused."""
    rows = store.rows()
    out = {}
    for t in best(store)["table"]:
        if t["fused"] <= 1:
            continue
        grp = json.dumps(t["group"], sort_keys=True)
        ok = sorted((r for r in rows if r["grp"] == grp and r["lr"] == t["best_lr"] and r["status"] is Status.OK
                     and r["axes"] == t["axes"]), key=lambda r: r["seed"])
        if ok:
            out[grp] = ok[0]
    return out


def measure_costs(store: Store, out: Path, *, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Time each group's fused best setting alone (see the module docstring); returns the meta ``costs``."""
    costs: dict[str, Any] = dict(store.get_meta("costs") or {})
    for grp, row in _best_fused_trials(store).items():
        if (costs.get(grp) or {}).get("key") == row["key"]:
            continue
        run_dir = out / "costs" / row["key"]
        result_path = run_dir / "result.json"
        if not result_path.is_file():
            log(f"cost pass: {row['method']} lr={row['lr']:g} seed {row['seed']} alone")
            run_dir.mkdir(parents=True, exist_ok=True)
            cfg = {**row["config"], "save_adapter": False, "report_to": []}  # a timing, not a trial to track
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
        store.set_meta("costs", costs)
    return costs
