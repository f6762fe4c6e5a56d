"""lorabench against PEFT + ``transformers.Trainer`` on the same runs: speed, memory and accuracy.

For each case the two systems run alternately (lorabench, Trainer, lorabench, Trainer, …), each run
in a fresh Python process (``bench/lorabench_run.py`` or ``bench/baseline_trainer.py``), so a
process's peak RSS is that run's alone. (Both read token ids from lorabench's on-disk cache, which the
first run fills; tokenisation is outside every timed region.) The script
prints medians and the ratio lorabench / Trainer per metric and writes
``bench/results/compare-<case>.json`` with every raw run, the medians, the ratios, the exact command
and the machine (lorabench's provenance: device, versions, commit).

Cases on a GPU also report model-FLOPs utilisation: 4 × (base parameters) × (non-pad tokens/s),
divided by the GPU's bf16 matmul rate measured by ``bench/matmul_peak.py`` just before the case.
4N FLOPs per token: the forward (2N) and the input-gradient half of the backward (2N); a frozen
base computes no weight gradients.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from benchlib import BenchError, bench_config, run_main, write_json  # noqa: E402

SYSTEMS = {"lorabench": BENCH / "lorabench_run.py", "trainer": BENCH / "baseline_trainer.py"}
BUSY_LOAD = 0.5  # a 1-minute load average above this before a run is reported: timings may be disturbed


@dataclass(frozen=True)
class Case:
    """One comparison: a run config from configs/ and the overrides that make the case."""

    name: str
    config: str  # relative to the repository root
    sets: tuple[str, ...] = ()
    gpu: bool = False
    description: str = ""


CASES = {c.name: c for c in (
    Case("minilm-cls", "configs/sst2-minilm.yaml",
         description="all-MiniLM-L6-v2, classification head, LoRA r=8 on all linear layers, 300 steps of 16"),
    Case("tinyllama-lm", "configs/tiny-llama.yaml",
         description="2-layer random Llama (width 64), SST-2 prompt, causal-LM loss, 50 steps of 8"),
    Case("tinyllama1b-mb1x16", "configs/sst2-tinyllama.yaml",
         ("model.name=tinyllama-1.1b-arch", "batch_size=1", "grad_accum=16", "steps=100", "data.n_eval=256"),
         gpu=True,
         description="TinyLlama-1.1B architecture (random weights, bf16), LoRA r=32, micro-batch 1 × 16 "
                     "accumulation, 100 steps"),
    Case("tinyllama1b-mb16", "configs/sst2-tinyllama.yaml",
         ("model.name=tinyllama-1.1b-arch", "batch_size=16", "grad_accum=1", "steps=100", "data.n_eval=256"),
         gpu=True,
         description="TinyLlama-1.1B architecture (random weights, bf16), LoRA r=32, micro-batch 16, 100 steps"),
)}
GROUPS = {"cpu": [n for n, c in CASES.items() if not c.gpu], "gpu": [n for n, c in CASES.items() if c.gpu],
          "all": list(CASES)}

# (key in a run record, label, format) — the compared metrics, in table order.
METRICS = (
    ("train_samples_per_s", "train samples/s", "{:.2f}"),
    ("train_tokens_per_s", "train tokens/s", "{:.0f}"),
    ("train_seconds", "train seconds", "{:.2f}"),
    ("eval_samples_per_s", "eval samples/s", "{:.1f}"),
    ("peak_memory_mb", "peak memory MiB", "{:.0f}"),
    ("accuracy", "dev accuracy", "{:.4f}"),
    ("macro_f1", "dev macro-F1", "{:.4f}"),
    ("mfu", "MFU", "{:.1%}"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    lines = "\n".join(f"  {c.name:<20} {'(GPU) ' if c.gpu else ''}{c.config}: {c.description}" for c in CASES.values())
    parser = argparse.ArgumentParser(
        prog="bench/compare.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the same LoRA runs with lorabench and with PEFT + transformers.Trainer, alternating "
                    "the two systems, each run in a fresh process; print medians and lorabench/Trainer ratios "
                    "of train samples/s, tokens/s, eval samples/s, peak memory, accuracy and macro-F1, and "
                    "write bench/results/compare-<case>.json.",
        epilog=f"cases:\n{lines}\ngroups: cpu, gpu (skipped without CUDA), all\n\n"
               "The data folder comes from data.dir or $LORABENCH_DATA_DIR, as for lorabench.\n"
               "Like for like: --set length_grouping=false --tag matched gives lorabench the Trainer's batches\n"
               "(the same seeded permutation within the first epoch), so the ratios measure the machinery alone.\n\n"
               "Example (a quick check, not a benchmark):\n"
               "  LORABENCH_DATA_DIR=../shared/data/sst2 .venv/bin/python bench/compare.py --cases tinyllama-lm \\\n"
               "      --steps 5 --set data.n_train=500 --set data.n_eval=64 --out-dir /tmp/bench")
    parser.add_argument("--cases", nargs="+", default=["cpu"], metavar="CASE",
                        help="case names or groups (default: cpu)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per system and case (default 2)")
    parser.add_argument("--steps", type=int, help="override the number of training steps (for quick checks)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override for every run of every case (repeatable)")
    parser.add_argument("--trainer-sampler", choices=["random", "group_by_length"], default="random",
                        help="the baseline's sampler (default random, the Trainer's default; group_by_length "
                             "matches lorabench's length_grouping)")
    parser.add_argument("--tag", help="suffix for the result files, compare-<case>-<tag>.json, to keep a variant "
                                      "(e.g. --set length_grouping=false) beside the default")
    parser.add_argument("--out-dir", type=Path, default=BENCH / "results",
                        help="where compare-<case>.json goes (default bench/results)")
    parser.add_argument("--timeout", type=float, help="seconds allowed per run (default: no limit)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the runs (default: this one)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        raise BenchError(f"--repeats: must be >= 1 (got {args.repeats})")
    if args.steps is not None and args.steps < 1:
        raise BenchError(f"--steps: must be >= 1 (got {args.steps})")
    if args.tag is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.tag):
        raise BenchError(f"--tag {args.tag!r}: use letters, digits, '.', '_' and '-' only")
    if args.timeout is not None and args.timeout <= 0:
        raise BenchError(f"--timeout: must be > 0 (got {args.timeout})")
    for item in args.sets:
        if "=" not in item:
            raise BenchError(f"--set {item!r}: expected key=value")
    return args


def cuda_available(python: str) -> bool:
    """Whether the run interpreter sees a CUDA device (asked in a child, so this process stays off the GPU)."""
    probe = subprocess.run([python, "-c", "import torch; print(torch.cuda.is_available())"],
                           capture_output=True, text=True, check=False)
    return probe.stdout.strip() == "True"


def select_cases(names: list[str], has_cuda: bool) -> list[Case]:
    """Cases named directly or through a group, in table order; GPU cases from a group need CUDA."""
    chosen: list[str] = []
    for name in names:
        if name in GROUPS:
            picked = [n for n in GROUPS[name] if has_cuda or not CASES[n].gpu]
            skipped = [n for n in GROUPS[name] if n not in picked]
            if skipped:
                print(f"note: no CUDA device; skipping {', '.join(skipped)}", file=sys.stderr)
        elif name in CASES:
            if CASES[name].gpu and not has_cuda:
                raise BenchError(f"--cases: {name} needs a CUDA device and none is available")
            picked = [name]
        else:
            raise BenchError(f"--cases: unknown case {name!r} (cases: {', '.join(CASES)}; groups: {', '.join(GROUPS)})")
        chosen += [n for n in picked if n not in chosen]
    if not chosen:
        raise BenchError("--cases: nothing to run")
    return [CASES[n] for n in CASES if n in chosen]


def case_sets(case: Case, args: argparse.Namespace) -> list[str]:
    """The case's overrides, then the user's ``--set``, then ``--steps``: later ones win."""
    return [*case.sets, *args.sets, *([f"steps={args.steps}"] if args.steps is not None else [])]


def load_average() -> float | None:
    """The 1-minute load average, or None where the OS does not say."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


@dataclass
class Runner:
    """Runs one script in a fresh process, keeping its output in ``log_dir``."""

    python: str
    log_dir: Path
    timeout: float | None
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def run(self, script: Path, script_args: list[str], log_name: str) -> Path:
        """Run ``script``; returns the path of the JSON it wrote. A failure raises ``BenchError``."""
        out = self.log_dir / f"{log_name}.json"
        log = self.log_dir / f"{log_name}.log"
        cmd = [self.python, str(script), *script_args, "--out", str(out)]
        with log.open("w", encoding="utf-8") as f:
            f.write(shlex.join(cmd) + "\n")
            f.flush()
            try:
                proc = subprocess.run(cmd, cwd=ROOT, env=self.env, stdout=f, stderr=subprocess.STDOUT,
                                      timeout=self.timeout, check=False)
            except subprocess.TimeoutExpired:
                raise BenchError(f"{log_name}: no result within {self.timeout:g} s (log: {log})") from None
        if proc.returncode != 0 or not out.is_file():
            tail = [ln for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
            last = tail[-1] if tail else "no output"
            raise BenchError(f"{log_name}: exit status {proc.returncode}: {last} (log: {log})")
        return out


def measure_peak(runner: Runner, case: Case) -> dict[str, Any]:
    """The GPU's bf16 matmul rate, measured in its own process."""
    path = runner.run(BENCH / "matmul_peak.py", ["--device", "cuda", "--dtype", "bfloat16"], f"{case.name}-matmul")
    return json.loads(path.read_text(encoding="utf-8"))


def add_mfu(record: dict[str, Any], peak_tflops: float | None) -> None:
    """``record["mfu"]``: 4 × base params × tokens/s over the measured matmul rate (None when unknown)."""
    tps, n = record.get("train_tokens_per_s"), record.get("base_params")
    ok = peak_tflops and tps and n
    record["model_tflops"] = 4 * n * tps / 1e12 if tps and n else None
    record["mfu"] = 4 * n * tps / (peak_tflops * 1e12) if ok else None


def median(values: list[Any]) -> float | None:
    """Median of the numbers in ``values`` (missing values skipped); None when there are none."""
    nums = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(nums) if nums else None


def summarise(runs: list[dict[str, Any]]) -> tuple[dict[str, dict[str, float | None]], dict[str, float | None]]:
    """Medians per system and metric, and the ratio lorabench / trainer of each median."""
    medians = {s: {key: median([r.get(key) for r in runs if r["system"] == s]) for key, _, _ in METRICS}
               for s in SYSTEMS}
    ratios = {}
    for key, _, _ in METRICS:
        a, b = medians["lorabench"][key], medians["trainer"][key]
        ratios[key] = a / b if a is not None and b else None
    return medians, ratios


def fairness_checks(runs: list[dict[str, Any]]) -> dict[str, bool]:
    """Whether both systems trained the same config, data files and number of trainable parameters."""
    def same(key: str) -> bool:
        values = [json.dumps(r.get(key), sort_keys=True) for r in runs]
        return len(set(values)) == 1

    data = [json.dumps({k: v.get("sha256") for k, v in (r.get("data") or {}).items()}, sort_keys=True) for r in runs]
    base_dropout = bool(runs[0]["config"].get("base_dropout", True))
    return {"same_config": same("config"), "same_trainable_params": same("trainable_params"),
            "same_base_params": len({r.get("base_params") for r in runs if r.get("base_params")}) <= 1,
            "same_data_files": len(set(data)) == 1,
            "same_base_dropout": all(r.get("base_dropout") == base_dropout for r in runs if r["system"] == "trainer")}


def format_table(case: Case, result: dict[str, Any]) -> str:
    """The printed summary of one case."""
    med, ratios = result["medians"], result["ratios"]
    cfg = result["runs"][0]["config"]
    runs = f"{result['repeats']} run{'s' if result['repeats'] != 1 else ''} per system"
    shape = f"{cfg['steps']} steps × {cfg['batch_size']}×{cfg['grad_accum']}"
    head = (f"{result['case']}: {case.config} {' '.join(result['sets'])}".rstrip()
            + f"\n  {shape}, {runs}, {result['runs'][0]['device']}")
    rows = [f"  {'metric':<18}{'lorabench':>14}{'trainer':>14}{'ratio':>9}"]
    for key, label, fmt in METRICS:
        a, b, r = med["lorabench"][key], med["trainer"][key], ratios[key]
        if a is None and b is None:
            continue
        cell = lambda v, fmt=fmt: fmt.format(v) if v is not None else "n/a"  # noqa: E731
        rows.append(f"  {label:<18}{cell(a):>14}{cell(b):>14}{(f'{r:.3f}' if r is not None else 'n/a'):>9}")
    return head + "\n" + "\n".join(rows)


def run_case(case: Case, args: argparse.Namespace, runner: Runner, command: str) -> dict[str, Any]:
    """All runs of one case, alternating the systems; returns the result written to JSON."""
    config = ROOT / case.config
    sets = case_sets(case, args)
    peak = measure_peak(runner, case) if case.gpu else None
    runs: list[dict[str, Any]] = []
    for i in range(1, args.repeats + 1):
        for system, script in SYSTEMS.items():
            load = load_average()
            if load is not None and load > BUSY_LOAD:
                print(f"warning: load average {load:.2f} before {system} run {i}; timings may be disturbed",
                      file=sys.stderr)
            print(f"{case.name}: {system} run {i}/{args.repeats} …", file=sys.stderr, flush=True)
            extra = ["--sampler", args.trainer_sampler] if system == "trainer" else []
            path = runner.run(script, [str(config), *[a for s in sets for a in ("--set", s)], *extra],
                              f"{case.name}-{system}-{i}")
            record = json.loads(path.read_text(encoding="utf-8"))
            record.update({"repeat": i, "load_average_before": load})
            if case.gpu:
                add_mfu(record, peak["tflops"] if peak else None)
            runs.append(record)
    medians, ratios = summarise(runs)
    checks = fairness_checks(runs)
    for name, ok in checks.items():
        if not ok:
            print(f"warning: {case.name}: check {name} failed: the systems did not train the same thing",
                  file=sys.stderr)
    first = runs[0]
    return {
        "kind": "compare",
        "schema": 1,
        "case": case.name + (f" ({args.tag})" if args.tag else ""),
        "description": case.description,
        "config": case.config,
        "sets": sets,
        "repeats": args.repeats,
        "systems": list(SYSTEMS),
        "trainer_sampler": args.trainer_sampler,
        "command": command,
        "data_dir": os.environ.get("LORABENCH_DATA_DIR"),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": first["machine"],
        "matmul_peak": peak,
        "metrics": [{"key": k, "label": label, "format": fmt} for k, label, fmt in METRICS],
        "medians": medians,
        "ratios": ratios,
        "checks": checks,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> None:
    """Validate every case, run them one after another, write one JSON per case."""
    raw = sys.argv[1:] if argv is None else argv
    args = parse_args(raw)
    cases = select_cases(args.cases, cuda_available(args.python))
    command = shlex.join([os.path.relpath(args.python, ROOT) if os.path.isabs(args.python) else args.python,
                          os.path.relpath(Path(__file__).resolve(), ROOT), *raw])
    for case in cases:  # every case's config and overrides must parse before the first run
        if not (ROOT / case.config).is_file():
            raise BenchError(f"{case.config}: config file not found")
        bench_config(str(ROOT / case.config), case_sets(case, args))
    log_dir = Path(tempfile.mkdtemp(prefix="bench-compare-"))  # removed on success, kept for a failure's log
    runner = Runner(args.python, log_dir, args.timeout)
    for case in cases:
        started = time.perf_counter()
        result = run_case(case, args, runner, command)
        out = args.out_dir / f"compare-{case.name}{'-' + args.tag if args.tag else ''}.json"
        write_json(out, result)
        print(format_table(case, result))
        print(f"  wrote {os.path.relpath(out)} ({time.perf_counter() - started:.0f} s)\n", flush=True)
    shutil.rmtree(log_dir, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
