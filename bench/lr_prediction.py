"""The full learning-rate grid against ``strategy: hessian`` on one space, side by side in one run.

Both sweeps start from the same sweep config (default ``configs/sweep-demo.yaml``: MiniLM on SST-2, the demo's
rates and steps), in fresh folders, one after the other on the same machine, with the same fusion and no cost pass
(what selection costs, not what reporting costs). The grid measures no λ_max; the hessian sweep's wall time includes
its λ_max measurements. Per method: the rate each chose and its accuracy, and the grid's own accuracy at the
hessian strategy's pick (the same trial config, so the criterion "the pick is the grid's best or within 0.5
points of it" compares like with like). Writes ``bench/results/lr-prediction-CASE.json``; ``bench/report.py``
renders it into BENCHMARKS.md.

    python bench/lr_prediction.py --case demo4
    python bench/lr_prediction.py --case demo8 --methods lora,init_b,pissa,loraplus,rslora,olora,milora,dora
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from benchlib import BenchError, run_main
from lorabench.files import atomic_write_json
from lorabench.provenance import device_info, git_commit, versions

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TOLERANCE = 0.005  # the pick's accuracy may be this far below the grid's best
BUDGET = 0.60  # of the grid's trials


def _sweep(cfg: dict[str, Any], folder: Path) -> tuple[float, dict[str, Any]]:
    """Run ``lorabench sweep`` on ``cfg`` into a fresh ``folder``; (wall seconds, ``lorabench best --json``)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    path = folder.parent / f"{folder.name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    exe = [sys.executable, "-m", "lorabench.cli"]
    t0 = time.perf_counter()
    run = subprocess.run([*exe, "sweep", str(path), "-o", str(folder), "-q", "--no-costs"], text=True,
                         capture_output=True)
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        raise BenchError(f"lorabench sweep {path} failed: {(run.stderr or run.stdout).strip()[-400:]}")
    best = subprocess.run([*exe, "best", str(folder), "--json"], text=True, capture_output=True, check=True)
    return wall, json.loads(best.stdout)


def _curve_accuracy(t: dict[str, Any], lr: float) -> float | None:
    point = next((c for c in t["curve"] if c["lr"] == lr and c.get("accuracy")), None)
    return point["accuracy"]["mean"] if point else None


def _rows(grid: dict[str, Any], hess: dict[str, Any]) -> list[dict[str, Any]]:
    by_method = {t["method"]: t for t in grid["table"]}
    out = []
    for h in hess["table"]:
        g = by_method[h["method"]]
        at_pick = _curve_accuracy(g, h["best_lr"])
        p = h.get("prediction") or {}
        out.append({"method": h["method"], "lambda_max": h.get("lambda_max"), "predicted_lr": p.get("predicted_lr"),
                    "grid_steps": p.get("grid_steps"), "far": p.get("far"),
                    "grid_lr": g["best_lr"], "grid_accuracy": g["accuracy"]["mean"],
                    "hessian_lr": h["best_lr"], "hessian_accuracy": h["accuracy"]["mean"],
                    "grid_accuracy_at_pick": at_pick,
                    "within": at_pick is not None and at_pick >= g["accuracy"]["mean"] - TOLERANCE - 1e-12,
                    "grid_trials": g["trials"], "hessian_trials": h["trials"]})
    return out


def _grid_fit(grid: dict[str, Any], hess: dict[str, Any]) -> dict[str, Any] | None:
    """The exponent fit on the grid's best rates with the λ_max the hessian sweep measured (the same configs)."""
    from lorabench.sweep.prediction import fit_exponent

    lam = {h["method"]: h["lambda_max"] for h in hess["table"] if h.get("lambda_max")}
    pts = [(lam[t["method"]], t["best_lr"]) for t in grid["table"] if t["method"] in lam]
    fit = fit_exponent([p[0] for p in pts], [p[1] for p in pts])
    return fit.as_dict() if fit else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", required=True, help="the result's name: bench/results/lr-prediction-CASE.json")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "sweep-demo.yaml", help="the sweep config")
    ap.add_argument("--methods", help="comma-separated methods (default: the config's)")
    ap.add_argument("--reference-search", choices=["grid", "adaptive"], default="adaptive",
                    help="how the hessian strategy searches the reference's rate (default adaptive: on a 6-point grid "
                         "the whole grid alone is a quarter of a 4-method sweep)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-lr-prediction", help="scratch folder")
    args = ap.parse_args()

    if not args.config.is_file():
        raise BenchError(f"{args.config}: no such sweep config")
    cfg = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    cfg["base"] = str((args.config.parent / cfg["base"]).resolve()) if isinstance(cfg["base"], str) else cfg["base"]
    if args.methods:
        cfg["space"]["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    grid_cfg = {**cfg, "strategy": "grid", "hessian": False}
    hess_cfg = {**cfg, "strategy": "hessian", "hessian": True,
                "prediction": {**cfg.get("prediction", {}), "reference_search": args.reference_search}}
    work = args.work / args.case
    work.mkdir(parents=True, exist_ok=True)
    print(f"grid over {len(cfg['space']['methods'])} methods …", flush=True)
    grid_s, grid = _sweep(grid_cfg, work / "grid")
    print(f"grid: {grid_s:.0f} s, {grid['trials']} trials; hessian strategy …", flush=True)
    hess_s, hess = _sweep(hess_cfg, work / "hessian")
    print(f"hessian: {hess_s:.0f} s, {hess['trials']} trials", flush=True)
    rows = _rows(grid, hess)
    result = {
        "kind": "lr-prediction", "case": args.case,
        "command": f"python bench/lr_prediction.py --case {args.case}"
                   + (f" --methods {args.methods}" if args.methods else "")
                   + (f" --reference-search {args.reference_search}" if args.reference_search != "adaptive" else "")
                   + (f" --config {args.config}" if args.config != ROOT / "configs" / "sweep-demo.yaml" else ""),
        "config": hess_cfg, "provenance": {"versions": versions(), "git": git_commit(), "device": device_info(torch.device("cpu"))},
        "date": time.strftime("%Y-%m-%d"),
        "grid": {"seconds": grid_s, "trials": grid["trials"], "fit": _grid_fit(grid, hess)},
        "hessian": {"seconds": hess_s, "trials": hess["trials"], "fit": hess.get("exponent_fit")},
        "methods": rows,
        "criteria": {"all_within_0.5_points": all(r["within"] for r in rows),
                     "trial_fraction": hess["trials"] / grid["trials"], "budget": BUDGET,
                     "faster": hess_s < grid_s},
    }
    out = BENCH / "results" / f"lr-prediction-{args.case}.json"
    atomic_write_json(out, result)
    for r in rows:
        print(f"{r['method']:10s} grid {r['grid_lr']:.3g} ({100 * r['grid_accuracy']:.2f})  hessian {r['hessian_lr']:.3g} "
              f"({100 * r['hessian_accuracy']:.2f}; grid at it {100 * (r['grid_accuracy_at_pick'] or 0):.2f})"
              f"{'' if r['within'] else '  MISSED'}")
    print(f"trials {hess['trials']}/{grid['trials']} = {hess['trials'] / grid['trials']:.0%}; wall "
          f"{hess_s:.0f}/{grid_s:.0f} s = {hess_s / grid_s:.2f}×; wrote {out}")


if __name__ == "__main__":
    run_main(main)
