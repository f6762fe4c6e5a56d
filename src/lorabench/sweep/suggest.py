"""``lorabench suggest-lr``: every method's learning rate predicted from one tuned method's, through λ_max at init.

The reference (LoRA by default) and each requested method are measured on the same run config, so on the same
blocks and the same first training examples (:func:`lorabench.hessian.measure`, with LoRA+'s rates scaled in);
each prediction is lr_m = lr_ref · (λ_ref / λ_m)^γ (:mod:`lorabench.sweep.prediction`), and each method says how
the argument applies to it (``Method.lr_rule``, ``Method.lr_note``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import ConfigError
from ..methods.base import DIRECT_NOTE
from ..methods.registry import get_method
from ..text import num
from .prediction import check_lambda, predict_lr


def reference_lr_from(sweep_dir: Path, reference: str, cfg: RunConfig) -> float:
    """The best rate of ``reference`` in a finished sweep folder (the group at the config's rank when several)."""
    from .summary import best, open_store

    rows = [t for t in best(open_store(sweep_dir))["table"] if t["method"] == reference]
    if len(rows) > 1:
        rows = [t for t in rows if t["group"].get("rank", cfg.rank) == cfg.rank]
    if not rows:
        raise ConfigError(f"{sweep_dir}: the sweep has no best rate for {reference!r} (no trial of it finished ok)")
    if len(rows) > 1:
        groups = "; ".join(", ".join(f"{k}={v}" for k, v in t["group"].items()) for t in rows)
        raise ConfigError(f"{sweep_dir}: {reference!r} has several best rates ({groups}); give --reference-lr")
    return float(rows[0]["best_lr"])


def suggest_lr(cfg: RunConfig, methods: list[str], *, reference: str, reference_lr: float, exponent: float = 1.0,
               hessian: dict[str, Any] | None = None, log: Callable[[str], None] = lambda _: None,
               progress: bool = False) -> dict[str, Any]:
    """Measure λ_max for ``reference`` and each of ``methods`` on ``cfg`` and predict each one's rate."""
    from ..hessian import hessian_config, measure

    if reference_lr <= 0:
        raise ConfigError(f"--reference-lr: {reference_lr} is not a positive learning rate")
    if exponent <= 0:
        raise ConfigError(f"--exponent: {exponent} is not positive")
    hcfg = hessian_config({"lambda_min": False, **(hessian or {})}, "hessian")  # a prediction needs λ_max only
    order = [reference, *[m for m in dict.fromkeys(methods) if m != reference]]
    for m in order:
        try:
            get_method(m)
        except KeyError as e:
            raise ConfigError(f"--methods: {e.args[0]}") from None
    t0 = time.perf_counter()
    measured = {}
    for m in order:
        r = measure(cfg.model_copy(update={"method": m}), hcfg, log=log, progress=progress)
        measured[m] = (check_lambda(m, r["summary_block"], r["lambda_max"]), r)
    lam_ref = measured[reference][0]
    out = []
    for m, (lam, r) in measured.items():
        method = get_method(m)
        out.append({"method": m, "lambda_max": lam, "block": r["summary_block"], "samples": r["samples"],
                    "seconds": r["seconds"], "predicted_lr": predict_lr(reference_lr, lam_ref, lam, exponent),
                    "rule": method.lr_rule.value, "note": method.lr_note,
                    "relative_rates": next((b.get("relative_rates") for b in r["blocks"]
                                            if b["block"] == r["summary_block"]), None)})
    return {"reference": reference, "reference_lr": reference_lr, "exponent": exponent, "methods": out,
            "hessian": hcfg.model_dump(mode="json"), "config": cfg.dump(), "seconds": time.perf_counter() - t0}


def format_suggestion(s: dict[str, Any]) -> str:
    """The command line's table: per method λ_max, the block, the predicted rate and how the rule applies."""
    head = ["method", "λ_max", "λ_ref/λ", "predicted lr", "rule", "seconds"]
    ref = s["methods"][0]["lambda_max"]
    rows = [[m["method"], f"{m['lambda_max']:.4g}", f"{ref / m['lambda_max']:.3g}", num(m["predicted_lr"]),
             m["rule"], f"{m['seconds']:.1f}"] for m in s["methods"]]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    blocks = sorted({m["block"] for m in s["methods"]})
    lines = [fmt(head), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows),
             f"predicted lr = {num(s['reference_lr'])} ({s['reference']}'s) · (λ_ref / λ_max)^{num(s['exponent'])}; "
             f"λ_max at init on {', '.join(blocks)}, {s['methods'][0]['samples']} examples; {s['seconds']:.1f} s in all"]
    special = [m for m in s["methods"] if m["note"] != DIRECT_NOTE]
    lines += [f"  {m['method']}: {m['note']}" for m in special]
    if len(special) < len(s["methods"]):
        lines.append(f"  {'the others' if special else 'each'}: {DIRECT_NOTE}")
    lines.append("the prediction assumes every method's best rate sits at the same fraction of its 2/λ_max bound; "
                 "check it on your task with `strategy: hessian`, whose `best` says where it did not hold")
    return "\n".join(x for x in lines if x)
