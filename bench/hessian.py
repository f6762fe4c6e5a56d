"""Time per Hessian block: ``lorabench hessian`` on one block for a few methods, with and without kept graphs.

For each method, λ_max and λ_min of one block (default: MiniLM's layer 0 query, the default 500
samples, tol 1e-3) are measured in a fresh process, once with each block's gradient graphs kept
between products (the default when they fit in memory) and once recomputing them per product. It
records λ_max, λ_min, the number of Hessian-vector products, seconds per product and per block, and
whether both ends converged. Writes ``bench/results/hessian-<case>.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from benchlib import BenchError, lorabench_cli, run_main, stamp, write_json  # noqa: E402

CASES = {
    "minilm-cpu": {"config": "configs/sst2-minilm.yaml", "sets": [], "layers": "0", "modules": "query",
                   "gpu": False, "description": "MiniLM cls, LoRA r=8, layer 0 query (6,144 parameters)"},
    "tinyllama1b-gpu": {"config": "configs/sst2-tinyllama.yaml",
                        "sets": ["model.name=tinyllama-1.1b-arch", "device=cuda", "rank=128"],
                        "layers": "0", "modules": "q_proj", "gpu": True,
                        "description": "TinyLlama-1.1B architecture, rank 128, layer 0 q_proj"},
}


def measure(cli: str, case: dict[str, Any], method: str, cache: bool, samples: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "h.json"
        cmd = [cli, "hessian", str(ROOT / case["config"]), "--set", f"method={method}", "--no-whole",
               "--layers", case["layers"], "--modules", case["modules"], "--samples", str(samples),
               "--cache" if cache else "--no-cache", "-q", "-o", str(out)]
        for s in case["sets"]:
            cmd += ["--set", s]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if res.returncode != 0:
            raise BenchError(f"lorabench hessian failed: {(res.stderr or res.stdout).strip()[-400:]}")
        r = json.loads(out.read_text())
    b = r["blocks"][0]
    return {"method": method, "graphs_kept": b["graphs_cached"], "block": b["block"], "params": b["params"],
            "lambda_max": b["lambda_max"], "lambda_min": b["lambda_min"], "hvps": b["hvps"],
            "converged": b["max"]["converged"] and b["min"]["converged"], "block_seconds": b["seconds"],
            "seconds_per_hvp": b["seconds"] / b["hvps"], "samples": r["samples"], "wall_seconds": wall}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=sorted(CASES), default="minilm-cpu")
    ap.add_argument("--methods", default="lora,pissa", help="comma-separated (default lora,pissa)")
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--no-recompute", action="store_true", help="skip the runs that recompute graphs per product")
    args = ap.parse_args(argv)
    case = CASES[args.case]
    if case["gpu"] and not torch.cuda.is_available():
        raise BenchError(f"case {args.case} needs a CUDA GPU")
    cli = lorabench_cli()
    rows = []
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        for cache in ([True] if args.no_recompute else [True, False]):
            row = measure(cli, case, method, cache, args.samples)
            rows.append(row)
            print(f"{method:<8} graphs {'kept' if cache else 'recomputed':<10}  λ_max {row['lambda_max']:.6g}  "
                  f"λ_min {row['lambda_min']:.6g}  {row['hvps']} HVPs  {row['seconds_per_hvp']:.2f} s/HVP  "
                  f"{row['block_seconds']:.1f} s per block{'' if row['converged'] else '  (not converged)'}")
    result = {"kind": "hessian", "case": args.case, "description": case["description"], "samples": args.samples,
              "rows": rows, **stamp(torch.device("cuda" if case["gpu"] else "cpu"))}
    out = BENCH / "results" / f"hessian-{args.case}.json"
    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    run_main(main)
