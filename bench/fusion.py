"""A learning-rate grid with and without fused training, side by side: wall time and per-trial equality.

The same sweep (one method, a 12-point learning-rate grid, short runs) is run twice with the real
``lorabench sweep`` command, each into a fresh folder and a fresh token cache warmed once beforehand:

* ``--fuse 1``: the trials one after another, each in its own process (the sweep's normal path);
* ``--fuse K``: the K trials in one process, trained through one fused forward/backward.

It prints and records both wall times and their ratio, the summed training time of the trials
(loading, evaluation and process start excluded) and, per trial, whether the fused run's final
metrics equal the sequential one's and the largest relative difference of their per-step losses.
Writes ``bench/results/fusion-<case>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from benchlib import BenchError, lorabench_cli, run_main, stamp, write_json  # noqa: E402

CASES: dict[str, dict[str, Any]] = {
    "minilm-cls": {
        "config": "configs/sst2-minilm.yaml", "gpu": False,
        "set": {"steps": 40, "eval_every": 40, "warmup_steps": 4, "save_adapter": False,
                "data": {"n_train": 2000, "n_eval": 300}},
        "description": "MiniLM cls, LoRA r=8, batch 16, 40 steps, 300 dev examples",
    },
    "tinyllama1b-lm": {
        "config": "configs/sst2-tinyllama.yaml", "gpu": True,
        "set": {"steps": 40, "eval_every": 40, "warmup_steps": 4, "save_adapter": False, "device": "cuda",
                "bf16": True, "model": {"dtype": "bfloat16"}, "data": {"n_train": 2000, "n_eval": 200}},
        "description": "TinyLlama-1.1B architecture (random weights), lm head, LoRA r=8, batch 16, bf16, 40 steps",
    },
}
LRS = {"min": 5.62e-5, "max": 3.16e-2, "per_decade": 4}  # 12 points


def sweep_file(folder: Path, case: dict[str, Any], method: str) -> Path:
    p = folder / "sweep.yaml"
    p.write_text(yaml.safe_dump({"base": str(ROOT / case["config"]), "set": case["set"],
                                 "space": {"methods": [method], "lr": LRS}}))
    return p


def run_sweep(cli: str, sweep: Path, out: Path, fuse: int, env: dict[str, str]) -> float:
    """Wall seconds of ``lorabench sweep`` into ``out`` with ``--fuse fuse``."""
    t0 = time.perf_counter()
    res = subprocess.run([cli, "sweep", str(sweep), "-o", str(out), "--fuse", str(fuse), "-q"], env=env,
                         capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise BenchError(f"lorabench sweep --fuse {fuse} failed: {(res.stderr or res.stdout).strip()[-500:]}")
    return seconds


def trials(out: Path) -> dict[float, dict[str, Any]]:
    """lr → result and per-step losses of each trial of a sweep folder."""
    found = {}
    for d in sorted((out / "trials").iterdir()):
        r = json.loads((d / "result.json").read_text())
        losses = [json.loads(x)["loss"] for x in (d / "metrics.jsonl").read_text().splitlines()]
        found[r["config"]["lr"]] = {"result": r, "losses": losses}
    return found


def compare(seq: dict[float, dict[str, Any]], fused: dict[float, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for lr in sorted(seq):
        a, b = seq[lr], fused[lr]
        n = len(a["losses"]) - (a["result"]["status"] == "diverged")  # a diverging step's loss has blown up
        rel = max((abs(x - y) / max(abs(y), 1e-12) for x, y in zip(b["losses"][:n], a["losses"][:n])), default=0.0)
        rows.append({"lr": lr, "status": a["result"]["status"], "fused_status": b["result"]["status"],
                     "accuracy": (a["result"]["final"] or {}).get("accuracy"),
                     "fused_accuracy": (b["result"]["final"] or {}).get("accuracy"),
                     "same_final": a["result"]["final"] == b["result"]["final"],
                     "same_steps": len(a["losses"]) == len(b["losses"]),
                     "max_rel_loss_diff": rel, "train_seconds": a["result"]["train_seconds"],
                     "fused_train_seconds_share": b["result"]["train_seconds"]})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=sorted(CASES), default="minilm-cls")
    ap.add_argument("--method", default="lora")
    ap.add_argument("--fuse", type=int, default=12, help="trials per fused group (default 12: the whole grid)")
    ap.add_argument("--steps", type=int, help="override the case's training steps")
    ap.add_argument("--keep", type=Path, help="keep the two sweep folders here (default: a temporary folder)")
    args = ap.parse_args(argv)
    case = json.loads(json.dumps(CASES[args.case]))
    if case["gpu"] and not torch.cuda.is_available():
        raise BenchError(f"case {args.case} needs a CUDA GPU")
    if args.steps:
        case["set"].update(steps=args.steps, eval_every=args.steps)
    cli = lorabench_cli()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "LORABENCH_CACHE": str(folder / "cache")}
        sweep = sweep_file(folder, case, args.method)
        # warm the token cache so neither side pays for tokenisation
        warm = {**case["set"], "steps": 1, "eval_every": 1}
        (folder / "warm.yaml").write_text(yaml.safe_dump({"base": str(ROOT / case["config"]), "set": warm,
                                                          "space": {"methods": [args.method], "lr": [1e-4]}}))
        run_sweep(cli, folder / "warm.yaml", folder / "warm", 1, env)
        seq_s = run_sweep(cli, sweep, folder / "sequential", 1, env)
        fused_s = run_sweep(cli, sweep, folder / "fused", args.fuse, env)
        seq, fused = trials(folder / "sequential"), trials(folder / "fused")
    rows = compare(seq, fused)
    result = {
        "kind": "fusion", "case": args.case, "description": case["description"], "method": args.method,
        "trials": len(rows), "fuse": args.fuse, "sequential_wall_s": seq_s, "fused_wall_s": fused_s,
        "wall_ratio": fused_s / seq_s,
        "sequential_train_s": sum(r["train_seconds"] for r in rows),
        "fused_train_s": sum(r["fused_train_seconds_share"] for r in rows),
        "all_same_final": all(r["same_final"] for r in rows), "max_rel_loss_diff": max(r["max_rel_loss_diff"] for r in rows),
        "rows": rows, **stamp(torch.device("cuda" if case["gpu"] else "cpu")),
    }
    result["train_ratio"] = result["fused_train_s"] / result["sequential_train_s"]
    print(f"{args.case}: {len(rows)} trials of {args.method}")
    print(f"{'lr':>9}  {'status':<9} {'acc seq':>8} {'acc fused':>9}  same  max rel loss diff")
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        facc = "-" if r["fused_accuracy"] is None else f"{r['fused_accuracy']:.4f}"
        print(f"{r['lr']:>9.3g}  {r['status']:<9} {acc:>8} {facc:>9}  {'yes' if r['same_final'] else 'NO ':<4}  "
              f"{r['max_rel_loss_diff']:.2e}")
    print(f"wall time: sequential {seq_s:.1f} s, fused {fused_s:.1f} s, ratio {result['wall_ratio']:.3f}")
    print(f"training time: sequential {result['sequential_train_s']:.1f} s, fused {result['fused_train_s']:.1f} s, "
          f"ratio {result['train_ratio']:.3f}")
    out = BENCH / "results" / f"fusion-{args.case}.json"
    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    run_main(main)
