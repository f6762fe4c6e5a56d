"""lorabench's side of the benchmark: one run through the Python API, measured as the baseline is.

Calls ``lorabench.runner.run(cfg, run_dir, progress=False)`` with a temporary run folder and copies
the result's own measurements: ``train_seconds`` (first step to last, evaluation excluded),
``samples_per_second``, ``tokens_seen`` (non-pad tokens), ``eval_seconds``,
``eval_samples_per_second``, ``peak_memory_mb`` and ``final`` accuracy / macro-F1. The config is the
one the baseline trains (``benchlib.bench_config``: evaluation once after the last step, no adapter
saved), and the record has the same shape as the baseline's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

_STARTED = time.perf_counter()

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from benchlib import (add_config_arguments, bench_config, count_params, measurement, run_main,  # noqa: E402
                      write_json)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/lorabench_run.py",
        description="Train and evaluate one lorabench config through lorabench.runner.run and write one "
                    "measurement JSON with the same fields as bench/baseline_trainer.py: training time of the "
                    "loop alone, train samples/s and non-pad tokens/s, eval time and samples/s, peak memory "
                    "(CPU: process peak RSS; CUDA: max_memory_allocated), accuracy and macro-F1.",
        epilog="Example: LORABENCH_DATA_DIR=../shared/data/sst2 .venv/bin/python bench/lorabench_run.py "
               "configs/tiny-llama.yaml --set steps=5 --out /tmp/lorabench.json")
    add_config_arguments(parser)
    return parser.parse_args(argv)


def base_params(cfg: Any) -> int | None:
    """Parameter count of the base model, built on the meta device from its config (no weights, no memory).

    The classifier head of a ``cls`` model is counted, as the baseline counts it; None if the config
    cannot be read.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    from lorabench.models import model_source
    from lorabench.archs import ARCHS
    from lorabench.tiny_llama import build_llama, build_tokenizer

    try:
        with torch.device("meta"):
            if cfg.model.name in ARCHS:
                model = build_llama(cfg.model.name, build_tokenizer(), dtype=torch.float32)
            else:
                config = AutoConfig.from_pretrained(model_source(cfg.model.name), revision=cfg.model.revision,
                                                    trust_remote_code=False)
                if cfg.model.head == "cls":
                    config.num_labels = 2
                    model = AutoModelForSequenceClassification.from_config(config)
                else:
                    model = AutoModelForCausalLM.from_config(config)
    except (OSError, ValueError):
        return None
    return count_params(model)


def main(argv: list[str] | None = None) -> None:
    """Run the config through lorabench, write the measurement JSON."""
    args = parse_args(argv)
    cfg = bench_config(args.config, args.sets)

    from transformers.utils import logging as hf_logging

    from lorabench.runner import run

    hf_logging.set_verbosity_error()
    with tempfile.TemporaryDirectory(prefix="bench-lorabench-") as run_dir:
        result = run(cfg, run_dir, progress=False, log=lambda line: print(line, file=sys.stderr))
    if result["status"] != "ok":
        error = (result.get("error") or "").strip().splitlines()
        raise RuntimeError(f"lorabench run ended with status {result['status']!r}"
                           + (f": {error[-1]}" if error else ""))
    final = result.get("final") or {}
    device = torch.device(result["provenance"]["device"]["type"])
    record = measurement(
        system="lorabench", cfg=cfg, device=device, train_seconds=result["train_seconds"],
        tokens_seen=result.get("tokens_seen"), eval_seconds=result.get("eval_seconds"),
        eval_examples=sum(result["counts"]["label_counts"]["validation"].values()), peak_memory_mb=result.get("peak_memory_mb"),
        memory_kind=result.get("memory_kind", "unknown"), accuracy=final.get("accuracy"),
        macro_f1=final.get("macro_f1"), trainable_params=result.get("trainable_params"),
        base_params=base_params(cfg), train_loss=result.get("train_loss_last"),
        wall_seconds=time.perf_counter() - _STARTED,
        extra={"train_loss_kind": "mean of the last 10 steps (result.json train_loss_last)",
               "optimizer": "AdamW (torch.optim.AdamW defaults)",
               "reported_samples_per_second": result.get("samples_per_second"),
               "reported_eval_samples_per_second": result.get("eval_samples_per_second"),
               "data": result["provenance"].get("data")})
    write_json(args.out, record)


if __name__ == "__main__":
    run_main(main)
