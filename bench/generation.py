"""Greedy generation throughput: batched (left-padded, KV cache) against one prompt at a time.

Both decode the same prompts with lorabench's decoder (``lorabench.generate.generate_many``): once in batches
of ``--batch``, once with batch 1. It checks that the two give the same tokens and records new tokens per second
of each and their ratio. Prompts are Alpaca-formatted GSM8K test questions when the shared data is present
(``$LORABENCH_DATA_ROOT/math/gsm8k_test.jsonl``), else synthetic ones. Models are built locally with random weights
(speed does not depend on their values). Writes ``bench/results/generation-<case>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from benchlib import BenchError, run_main, stamp, write_json  # noqa: E402

from lorabench.data.templates import ALPACA  # noqa: E402
from lorabench.generate import Throughput, generate_many  # noqa: E402
from lorabench.tiny_llama import build_llama, build_tokenizer  # noqa: E402

CASES: dict[str, dict[str, Any]] = {
    "tiny-cpu": {"arch": "tiny-llama", "dtype": "float32", "device": "cpu", "prompts": 64, "new": 32, "batch": 32},
    "tinyllama1b-cpu": {"arch": "tinyllama-1.1b-arch", "dtype": "float32", "device": "cpu", "prompts": 8, "new": 16,
                        "batch": 8},
    "qwen3-0.6b-gpu": {"arch": "qwen3-0.6b-arch", "dtype": "bfloat16", "device": "cuda", "prompts": 128, "new": 128,
                       "batch": 64},
}


def questions(n: int) -> list[str]:
    root = Path(os.environ.get("LORABENCH_DATA_ROOT") or ROOT.parent / "shared" / "data")
    path = root / "math" / "gsm8k_test.jsonl"
    if path.is_file():
        rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()[:n]]
        return [r["question"] for r in rows]
    return [f"What is {i} plus {i + 1}? Show your work." * (1 + i % 3) for i in range(n)]


def timed(model: Any, tok: Any, prompts: list[list[int]], new: int, batch: int, device: torch.device):
    speed = Throughput()
    if device.type == "cuda":
        torch.cuda.synchronize()
    gens = generate_many(lambda sizes, **kw: model(**kw), 1, prompts, tok, max_new_tokens=new, batch_size=batch,
                         device=device, throughput=speed)[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return gens, speed


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=sorted(CASES), default="tiny-cpu")
    ap.add_argument("--prompts", type=int, help="how many prompts (default: the case's)")
    ap.add_argument("--new", type=int, help="new tokens per prompt (default: the case's)")
    ap.add_argument("--batch", type=int, help="batch size of the batched run (default: the case's)")
    args = ap.parse_args(argv)
    case = dict(CASES[args.case])
    case.update({k: v for k, v in (("prompts", args.prompts), ("new", args.new), ("batch", args.batch)) if v})
    device = torch.device(case["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"case {args.case} needs a CUDA GPU")
    tok = build_tokenizer()
    model = build_llama(case["arch"], tok, dtype=getattr(torch, case["dtype"])).to(device).eval()
    prompts = [tok(ALPACA.replace("{instruction}", q))["input_ids"] for q in questions(case["prompts"])]
    timed(model, tok, prompts[:2], 2, 2, device)  # warm-up
    t0 = time.perf_counter()
    batched, fast = timed(model, tok, prompts, case["new"], case["batch"], device)
    single, slow = timed(model, tok, prompts, case["new"], 1, device)
    wall = time.perf_counter() - t0
    same = sum(a.tokens == b.tokens for a, b in zip(batched, single))
    result = {"kind": "generation", "case": args.case, **case, "prompt_tokens_mean": sum(map(len, prompts)) / len(prompts),
              "batched_tokens_per_s": fast.tokens_per_second, "single_tokens_per_s": slow.tokens_per_second,
              "batched_seconds": fast.seconds, "single_seconds": slow.seconds, "new_tokens": fast.new_tokens,
              "ratio": (fast.tokens_per_second or 0) / (slow.tokens_per_second or 1), "same_tokens": same,
              "wall_seconds": wall, **stamp(device)}
    print(f"{args.case}: {len(prompts)} prompts (mean {result['prompt_tokens_mean']:.0f} tokens), {case['new']} new "
          f"tokens each; batched ({case['batch']}) {fast.tokens_per_second:.1f} tokens/s, one at a time "
          f"{slow.tokens_per_second:.1f} tokens/s, ×{result['ratio']:.2f}; same tokens for {same}/{len(prompts)}")
    out = BENCH / "results" / f"generation-{args.case}.json"
    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    run_main(main)
