"""A finished sweep as a study's result: each method's best setting, its figures and costs, and what it took.

Reads a sweep folder (``lorabench best``'s table) and writes ``bench/results/study-<case>.json`` for
``bench/report.py``: per method the best learning rate (and LoRA+'s η_B), the sweep's validation figure over
seeds, the final pass's figures on every validation and test row where the sweep has one, train time, peak
memory, trainable parameters and λ_max at init where measured; the sweep's and the final pass's wall time; and,
with λ_max, the two claims of "Learning Rate Matters" checked on these numbers: the spread of the peaks, and
whether the best learning rate falls as λ_max grows (Spearman's ρ over methods, and the exponent of
log(best lr) on log(λ_max) with scipy's linregress).

    python bench/study.py runs/sweep-sst2-smollm2 --case sst2-smollm2 --command "lorabench sweep ..."
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from benchlib import BenchError, run_main, write_json  # noqa: E402


def _wall(sweep_dir: Path, rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Seconds from the first trial's start to the last one's end, and the final (or cost) pass's runs."""
    times = [(r["started"], r["finished"]) for r in rows if r["started"] and r["finished"]]
    sweep = max(f for _, f in times) - min(s for s, _ in times) if times else None
    passes = [p for sub in ("final", "costs") for p in (sweep_dir / sub).glob("*/result.json")]
    after = sum(p.stat().st_mtime - (p.parent / "cost-config.yaml").stat().st_mtime for p in passes
                if (p.parent / "cost-config.yaml").is_file())
    return {"sweep_seconds": sweep, "final_pass_seconds": after if passes else None}


def _rate_claim(table: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Does the best rate fall as λ_max grows? Spearman's ρ and the log-log slope over methods."""
    pts = [(t["lambda_max"], t["best_lr"]) for t in table if t.get("lambda_max") and t["lambda_max"] > 0]
    if len(pts) < 3:
        return None
    from scipy.stats import linregress, spearmanr

    lam, lr = zip(*pts)
    fit = linregress([math.log(x) for x in lam], [math.log(y) for y in lr])
    rho = spearmanr(lam, lr)
    return {"n": len(pts), "spearman_rho": float(rho.statistic), "spearman_p": float(rho.pvalue),
            "slope": float(fit.slope), "slope_stderr": float(fit.stderr), "r2": float(fit.rvalue ** 2)}


def _row(t: dict[str, Any]) -> dict[str, Any]:
    fp = t.get("final_pass") or {}
    return {"method": t["method"], "best_lr": t["best_lr"], "lr_b": (t.get("axes") or {}).get("lr_b"),
            "lambda_max": t.get("lambda_max"), "accuracy": t["accuracy"], "macro_f1": t["macro_f1"],
            "seeds": t["seeds"], "trials": t["trials"],
            "final_validation": (fp.get("validation") or {}) or None,
            "final_test": (fp.get("held_out") or {}).get("test"), "final_n": fp.get("n"),
            "train_seconds": t["train_seconds"], "samples_per_second": t["samples_per_second"],
            "peak_memory_mb": t["peak_memory_mb"], "memory_kind": t["memory_kind"],
            "trainable_params": t["trainable_params"], "majority": t.get("majority"),
            "curve": [{"lr": c["lr"], "axes": c.get("axes"), "accuracy": (c.get("accuracy") or {}).get("mean"),
                       "n_ok": c.get("n_ok"), "counts": c.get("counts")} for c in t["curve"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--case", required=True, help="the result's name: bench/results/study-CASE.json")
    ap.add_argument("--title", default="", help="one line on what the sweep reproduces")
    ap.add_argument("--command", required=True, help="the command that ran the sweep (recorded as is)")
    ap.add_argument("--hessian", type=Path, help="a folder of `lorabench hessian` results named METHOD.json, for "
                                                  "methods whose λ_max the sweep did not measure")
    args = ap.parse_args()

    from lorabench.sweep.summary import best, open_store

    store = open_store(args.sweep_dir)
    b = best(store)
    if not b["table"]:
        raise BenchError(f"{args.sweep_dir}: no method has a trial that finished ok")
    rows = store.rows()
    first_ok = next(r for r in rows if r["result"] and r["result"].get("provenance"))
    table = sorted(b["table"], key=lambda t: -t["accuracy"]["mean"])
    for t in table:  # λ_max measured outside the sweep by `lorabench hessian ... -o DIR/METHOD.json`
        path = args.hessian / f"{t['method']}.json" if args.hessian else None
        if t.get("lambda_max") is None and path is not None and path.is_file():
            t["lambda_max"] = json.loads(path.read_text(encoding="utf-8"))["lambda_max"]
    write_json(BENCH / "results" / f"study-{args.case}.json", {
        "kind": "study", "case": args.case, "title": args.title, "command": args.command,
        "provenance": first_ok["result"]["provenance"], "strategy": b["strategy"], "finished_trials": b["trials"],
        "unfinished": b["unfinished"], "spread": b["spread"], "no_ok": b["no_ok"], **_wall(args.sweep_dir, rows),
        "config": json.loads(json.dumps(store.get_meta("sweep") or {})), "methods": [_row(t) for t in table],
        "rate_vs_curvature": _rate_claim(table)})
    print(f"wrote bench/results/study-{args.case}.json ({len(table)} methods)")


if __name__ == "__main__":
    run_main(main)
