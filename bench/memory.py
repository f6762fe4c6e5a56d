"""Peak GPU memory of every method on the TinyLlama-1.1B architecture at rank 32 (the SST-2 study's budget: 8 GB).

Each method trains a few steps in a fresh process (``lorabench train``) with the architecture built
from its config with random weights (memory does not depend on the weights' values), bf16 base,
micro-batch 1 × 16 accumulation as in the study, with and without gradient checkpointing. Peak
memory is ``torch.cuda.max_memory_allocated`` from the first step (lorabench's definition). Writes
``bench/results/memory-tinyllama1b.json``. Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from benchlib import BenchError, lorabench_cli, run_main, stamp, write_json  # noqa: E402

from lorabench.methods import methods as method_names  # noqa: E402

BUDGET_MB = 8 * 1024
SETS = ["model.name=tinyllama-1.1b-arch", "model.dtype=bfloat16", "bf16=true", "device=cuda", "rank=32",
        "batch_size=1", "grad_accum=16", "eval_every=1000", "save_adapter=false",
        "data.n_train=2000", "data.n_eval=32"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", help="comma-separated (default: every registered method)")
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise BenchError("this benchmark needs a CUDA GPU")
    methods = args.methods.split(",") if args.methods else method_names()
    cli = lorabench_cli()
    rows = []
    for method in methods:
        for ckpt in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [cli, "train", str(ROOT / "configs/sst2-tinyllama.yaml"), "-q", "-o", f"{tmp}/run"]
                for s in [*SETS, f"method={method}", f"steps={args.steps}", f"gradient_checkpointing={str(ckpt).lower()}"]:
                    cmd += ["--set", s]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0 or not Path(tmp, "run", "result.json").is_file():
                    rows.append({"method": method, "checkpointing": ckpt, "status": "error",
                                 "error": (res.stderr or res.stdout).strip()[-300:]})
                    continue
                r = json.loads(Path(tmp, "run", "result.json").read_text())
            rows.append({"method": method, "checkpointing": ckpt, "status": r["status"],
                         "peak_memory_mb": r["peak_memory_mb"], "trainable_params": r["trainable_params"],
                         "samples_per_second": r["samples_per_second"], "under_budget": r["peak_memory_mb"] < BUDGET_MB})
            row = rows[-1]
            print(f"{method:<9} checkpointing={'on ' if ckpt else 'off'}  {row['peak_memory_mb']:8.0f} MB  "
                  f"{'under' if row['under_budget'] else 'OVER'} 8 GB  {row['samples_per_second']:.1f} samples/s")
    result = {"kind": "memory", "case": "tinyllama1b", "budget_mb": BUDGET_MB, "settings": SETS, "rows": rows,
              **stamp(torch.device("cuda"))}
    out = BENCH / "results" / "memory-tinyllama1b.json"
    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    run_main(main)
