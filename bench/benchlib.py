"""Pieces shared by the benchmark scripts in ``bench/``: config loading, the measurement record,
clocks, memory, machine information and the one-line error convention.

Both systems (lorabench and the PEFT + ``transformers.Trainer`` baseline) write the same JSON record,
built by :func:`measurement`, so that ``compare.py`` and ``report.py`` read one schema.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import platform
import resource
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import torch

from lorabench.config import RunConfig, load_config
from lorabench.errors import LorabenchError
from lorabench.files import atomic_write_json
from lorabench.provenance import device_info, git_commit, versions

SCHEMA = 1
EXTRA_PACKAGES = ("accelerate", "tokenizers")


class BenchError(Exception):
    """Bad benchmark input (an option, a file, a case name): printed as one line, exit status 2."""


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def run_main(main: Callable[[], None]) -> None:
    """Run a script's ``main`` and turn user errors into one line on stderr (exit status 2)."""
    try:
        main()
    except (BenchError, LorabenchError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        sys.exit(130)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The config options common to both single-run scripts."""
    parser.add_argument("config", help="lorabench run config (YAML), e.g. configs/sst2-minilm.yaml")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key by its dotted name (repeatable), as `lorabench train --set`")
    parser.add_argument("--out", required=True, type=Path, help="where to write the measurement JSON")


def bench_config(path: str, sets: list[str]) -> RunConfig:
    """The run config both systems train: the YAML plus ``--set`` overrides, evaluated once at the end.

    ``eval_every`` is forced to ``steps`` (lorabench evaluates only after the last step, like the
    baseline) and ``save_adapter`` to false (the baseline saves nothing). Raises ``LorabenchError``.
    """
    if not Path(path).is_file():
        raise BenchError(f"{path}: config file not found")
    cfg = load_config(path, sets)
    return load_config(path, [*sets, f"eval_every={cfg.steps}", "save_adapter=false"])


def sync(device: torch.device) -> None:
    """Wait for queued device work, so that a clock read after it is honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now(device: torch.device) -> float:
    """``time.perf_counter()`` after synchronising ``device``."""
    sync(device)
    return time.perf_counter()


def process_peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def all_versions() -> dict[str, str | None]:
    """lorabench's provenance versions plus the few packages the baseline also depends on."""
    out = dict(versions())
    for name in EXTRA_PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else whatever ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def memory_total_gib() -> float | None:
    """Physical memory of the machine in GiB, if the OS says."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def machine(device: torch.device) -> dict[str, Any]:
    """Device, CPU, memory, package versions, source commit and host (lorabench's provenance plus the CPU name)."""
    return {"device": device_info(device), "cpu_model": cpu_model(), "memory_gib": memory_total_gib(),
            "versions": all_versions(), "git": git_commit(), "host": platform.node(),
            "platform": platform.platform()}


def lorabench_cli() -> str:
    """The ``lorabench`` command of the running Python environment."""
    return str(Path(sys.executable).with_name("lorabench"))


def stamp(device: torch.device) -> dict[str, Any]:
    """The provenance every result file carries: the exact command, the machine and the date."""
    return {"command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]), "machine": machine(device),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def count_params(model: torch.nn.Module) -> int:
    """Number of parameters of ``model``, trainable or not."""
    return sum(p.numel() for p in model.parameters())


def rate(count: float | None, seconds: float | None) -> float | None:
    """``count / seconds``, or None when either is missing or the time is zero."""
    if count is None or not seconds:
        return None
    return count / seconds


def measurement(*, system: str, cfg: RunConfig, device: torch.device, train_seconds: float,
                tokens_seen: int | None, eval_seconds: float | None, eval_examples: int,
                peak_memory_mb: float | None, memory_kind: str, accuracy: float | None,
                macro_f1: float | None, trainable_params: int | None, base_params: int | None,
                train_loss: float | None, wall_seconds: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The measurement record of one run, identical in shape for both systems."""
    samples = cfg.steps * cfg.batch_size * cfg.grad_accum
    return {
        "schema": SCHEMA,
        "system": system,
        "device": device.type,
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "grad_accum": cfg.grad_accum,
        "train_samples": samples,
        "train_seconds": train_seconds,
        "train_samples_per_s": rate(samples, train_seconds),
        "train_tokens": tokens_seen,
        "train_tokens_per_s": rate(tokens_seen, train_seconds),
        "eval_examples": eval_examples,
        "eval_seconds": eval_seconds,
        "eval_samples_per_s": rate(eval_examples, eval_seconds),
        "peak_memory_mb": peak_memory_mb,
        "memory_kind": memory_kind,
        "process_peak_rss_mb": process_peak_rss_mb(),
        "accuracy": accuracy,
        "macro_f1": macro_f1,
        "trainable_params": trainable_params,
        "base_params": base_params,
        "train_loss": train_loss,
        "wall_seconds": wall_seconds,
        "config": cfg.dump(),
        "machine": machine(device),
        **(extra or {}),
    }


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically (the file is complete or absent)."""
    atomic_write_json(path, obj)
