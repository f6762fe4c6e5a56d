"""The search space of a sweep and its expansion into trials.

A trial is a run config: the sweep's base config plus one value per axis. Its key is a hash of the
fully resolved run config, so the same trial always has the same key, in any order, on any machine.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from ..config import RunConfig, merge, validate


class LogGrid(BaseModel):
    """``per_decade`` points per decade from ``min`` to ``max`` inclusive, evenly spaced in log10."""

    model_config = ConfigDict(extra="forbid")
    min: float = Field(gt=0)
    max: float = Field(gt=0)
    per_decade: PositiveInt = 4

    @model_validator(mode="after")
    def _order(self) -> LogGrid:
        if self.max < self.min:
            raise ValueError(f"max {self.max} is below min {self.min}")
        return self

    def values(self) -> list[float]:
        lo, hi = math.log10(self.min), math.log10(self.max)
        n = round((hi - lo) * self.per_decade)
        return [float(f"{10 ** (lo + i / self.per_decade):.3g}") for i in range(n + 1)]


LrSpec = LogGrid | list[float]


class LoraPlusGrid(BaseModel):
    """The SST-2 study's η_A × η_B grid; each pair is a LoRA+ trial with lr = η_A, ratio = η_B / η_A."""

    model_config = ConfigDict(extra="forbid")
    lr_a: list[float] = Field(min_length=1)
    lr_b: list[float] = Field(min_length=1)


class SweepSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")
    methods: list[str] = Field(min_length=1)
    lr: LrSpec = LogGrid(min=1.12e-5, max=6.32e-3, per_decade=4)
    lr_per_method: dict[str, LrSpec] = {}
    rank: list[PositiveInt] | None = None
    batch_size: list[PositiveInt] | None = None
    batch_policy: Literal["keep_effective", "vary_effective"] = Field(
        "keep_effective", description="keep_effective: grad_accum = base effective batch / batch_size")
    steps: list[PositiveInt] | None = None
    loraplus_ratio: list[float] | None = None
    loraplus_grid: LoraPlusGrid | None = None
    seeds: list[int] = [0]

    def lrs(self, method: str) -> list[float]:
        spec = self.lr_per_method.get(method, self.lr)
        return sorted(spec.values() if isinstance(spec, LogGrid) else [float(x) for x in spec])


class TrialSpec(BaseModel):
    """One trial: its key, the resolved run config, and the axes that define its place in the sweep."""

    key: str
    group: str  # method + every axis except lr and seed: the unit in which the best lr is sought
    method: str
    lr: float
    seed: int
    axes: dict[str, Any]
    config: dict[str, Any]


def trial_key(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def expand(base: dict[str, Any], space: SweepSpace, source: str) -> list[TrialSpec]:
    """Every trial of the full grid, in a stable order (method, other axes, lr, seed)."""
    base_cfg = validate(base, source)
    effective = base_cfg.batch_size * base_cfg.grad_accum
    out: list[TrialSpec] = []
    for method in space.methods:
        extra_axes: dict[str, list[Any]] = {}
        if space.rank:
            extra_axes["rank"] = space.rank
        if space.batch_size:
            extra_axes["batch_size"] = space.batch_size
        if space.steps:
            extra_axes["steps"] = space.steps
        if method == "loraplus" and space.loraplus_ratio and not space.loraplus_grid:
            extra_axes["loraplus_ratio"] = space.loraplus_ratio
        names = list(extra_axes)
        for combo in itertools.product(*(extra_axes[n] for n in names)):
            axes = dict(zip(names, combo))
            pairs: list[tuple[float, dict[str, Any]]]
            if method == "loraplus" and space.loraplus_grid:
                g = space.loraplus_grid
                pairs = [(a, {"loraplus_ratio": b / a, "lr_b": b}) for a in g.lr_a for b in g.lr_b]
            else:
                pairs = [(lr, {}) for lr in space.lrs(method)]
            group = json.dumps({"method": method, **axes}, sort_keys=True)
            for lr, more in pairs:
                for seed in space.seeds:
                    over: dict[str, Any] = {"method": method, "lr": lr, "seed": seed,
                                            **{k: v for k, v in axes.items()}}
                    over.update({k: v for k, v in more.items() if k != "lr_b"})
                    if "batch_size" in axes and space.batch_policy == "keep_effective":
                        if effective % axes["batch_size"]:
                            raise ValueError(f"batch_size {axes['batch_size']} does not divide the effective "
                                             f"batch {effective}")
                        over["grad_accum"] = effective // axes["batch_size"]
                    cfg = validate(merge(base, over), source).dump()
                    out.append(TrialSpec(key=trial_key(cfg), group=group, method=method, lr=lr, seed=seed,
                                         axes={**axes, **more}, config=cfg))
    keys = [t.key for t in out]
    if len(set(keys)) != len(keys):
        raise ValueError("two trials resolve to the same config; remove the duplicate axis values")
    return out
