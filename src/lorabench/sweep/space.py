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

from ..config import merge, validate
from ..methods.registry import get_method, method_options, option_owner


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
    options: dict[str, list[Any]] = Field({}, description="method-option axes, e.g. {loraplus_ratio: [4, 16]}; "
                                          "each applies to the method that takes the option")
    rate_grid: dict[str, dict[str, list[float]]] = Field(
        {}, description="per method, a grid of two learning rates: {lr: [...], <its second rate axis>: [...]}, "
                        "e.g. {loraplus: {lr: [1e-5, 1e-4], lr_b: [1e-4, 4e-4]}}")
    seeds: list[int] = [0]
    seeds_at_best: list[int] = Field([], description="more seeds, run only at each group's best learning rate once "
                                     "`seeds` have run at every rate the strategy chose (e.g. seeds: [0], "
                                     "seeds_at_best: [1, 2]: three seeds where they matter, one elsewhere)")

    @model_validator(mode="after")
    def _disjoint_seeds(self) -> SweepSpace:
        both = sorted(set(self.seeds) & set(self.seeds_at_best))
        if both:
            raise ValueError(f"seeds_at_best: seed {both[0]} is already in seeds (which run at every rate)")
        return self

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


def _option_axes(space: SweepSpace, method: str) -> dict[str, list[Any]]:
    """The method-option axes that apply to ``method``, values validated (and coerced) by its option model."""
    out: dict[str, list[Any]] = {}
    for name, values in space.options.items():
        owner = option_owner(name)
        if owner is None:
            raise ValueError(f"options: {name!r} is no method's option")
        if owner == method and name not in _rate_options(space, method):
            out[name] = [method_options(method, {name: v}).model_dump()[name] for v in values]
    return out


def _rate_options(space: SweepSpace, method: str) -> set[str]:
    """The options that ``method``'s rate grid sets (they are not axes of their own then)."""
    axes = get_method(method).rate_axes
    return {axes[a] for a in space.rate_grid.get(method, {}) if a in axes}


def _rate_points(space: SweepSpace, method: str) -> list[tuple[float, dict[str, Any]]]:
    """(lr, extra axes) per point: the lr grid, or the method's two-rate grid (each second rate also sets the
    option it declares, as that rate divided by lr)."""
    grid = space.rate_grid.get(method)
    if not grid:
        return [(lr, {}) for lr in space.lrs(method)]
    declared = get_method(method).rate_axes
    others = [a for a in grid if a != "lr"]
    if "lr" not in grid or len(others) != 1 or others[0] not in declared:
        raise ValueError(f"rate_grid: {method}: expected lr and one of its rate axes "
                         f"({', '.join(declared) or 'it declares none'}), got {', '.join(grid)}")
    axis = others[0]
    return [(a, {declared[axis]: b / a, axis: b}) for a in grid["lr"] for b in grid[axis]]


def expand(base: dict[str, Any], space: SweepSpace, source: str) -> list[TrialSpec]:
    """Every trial of the full grid, in a stable order (method, other axes, lr, seed)."""
    base_cfg = validate(base, source)
    effective = base_cfg.batch_size * base_cfg.grad_accum
    stray = sorted(set(space.rate_grid) - set(space.methods))
    if stray:
        raise ValueError(f"rate_grid: {', '.join(stray)} not among the methods")
    out: list[TrialSpec] = []
    for method in space.methods:
        extra_axes: dict[str, list[Any]] = {k: v for k, v in (("rank", space.rank), ("batch_size", space.batch_size),
                                                             ("steps", space.steps)) if v}
        extra_axes.update(_option_axes(space, method))
        names = list(extra_axes)
        for combo in itertools.product(*(extra_axes[n] for n in names)):
            axes = dict(zip(names, combo, strict=True))
            group = json.dumps({"method": method, **axes}, sort_keys=True)
            for lr, more in _rate_points(space, method):
                for seed in [*space.seeds, *space.seeds_at_best]:
                    over: dict[str, Any] = {"method": method, "lr": lr, "seed": seed, **axes}
                    over.update({k: v for k, v in more.items() if not k.startswith("lr_")})
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
