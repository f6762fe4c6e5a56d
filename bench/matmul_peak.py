"""The device's measured matrix-multiply rate: the denominator of model-FLOPs utilisation (MFU).

Times ``iters`` square ``torch.matmul`` products of size ``n`` (2·n³ FLOPs each) after a warm-up,
with the device synchronised before and after, and reports the best of ``repeats`` timings in
TFLOP/s. Run it in its own process so that the benchmark's runs do not share its memory.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from benchlib import BenchError, run_main, sync, write_json  # noqa: E402

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/matmul_peak.py",
        description="Measure the device's dense matmul rate (TFLOP/s) with a timed torch.matmul loop; "
                    "bench/compare.py divides achieved model FLOPs/s by it to report MFU.")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where to measure (auto: cuda if available)")
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES), help="operand dtype")
    parser.add_argument("--size", type=int, default=8192, help="matrix side n (default 8192)")
    parser.add_argument("--iters", type=int, default=50, help="products per timing (default 50)")
    parser.add_argument("--repeats", type=int, default=5, help="timings; the best counts (default 5)")
    parser.add_argument("--out", help="write the result JSON here (default: print it)")
    args = parser.parse_args(argv)
    for name in ("size", "iters", "repeats"):
        if getattr(args, name) < 1:
            raise BenchError(f"--{name}: must be >= 1 (got {getattr(args, name)})")
    return args


def matmul_tflops(device: torch.device, dtype: torch.dtype, n: int, iters: int, repeats: int) -> dict[str, Any]:
    """Best-of-``repeats`` rate of ``iters`` n×n products, in TFLOP/s, with every timing kept."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    out = torch.empty(n, n, device=device, dtype=dtype)
    for _ in range(3):  # warm-up: kernel selection, clocks
        torch.matmul(a, b, out=out)
    rates = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            torch.matmul(a, b, out=out)
        sync(device)
        rates.append(2 * n**3 * iters / (time.perf_counter() - start) / 1e12)
    return {"kind": "matmul_peak", "device": device.type,
            "name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "dtype": str(dtype).removeprefix("torch."), "size": n, "iters": iters, "tflops": max(rates),
            "tflops_all": rates}


def main(argv: list[str] | None = None) -> None:
    """Measure, then print the rate or write it as JSON."""
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA device is available")
    name = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    result = matmul_tflops(torch.device(name), DTYPES[args.dtype], args.size, args.iters, args.repeats)
    if args.out:
        write_json(Path(args.out), result)
    else:
        print(f"{result['tflops']:.2f} TFLOP/s ({result['dtype']} {args.size}x{args.size} matmul on {name})")


if __name__ == "__main__":
    run_main(main)
