"""Sweep config: a base run config plus a search space, a strategy and execution settings (YAML)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from ..config import blame, dotted_keys, merge, read_yaml
from ..errors import ConfigError, config_error
from .space import SweepSpace, TrialSpec, expand


class ExecutionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_gpus: float = Field(0, ge=0, description="GPUs per trial (Ray)")
    num_cpus: PositiveInt = Field(1, description="CPUs per trial (Ray) and its torch threads; the local executor "
                                  "splits the cores between its workers unless this is set")


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: str | dict[str, Any] = Field(description="run config: a YAML path (relative to this file) or a mapping")
    set: dict[str, Any] = Field({}, description="overrides applied to the base config")
    space: SweepSpace
    strategy: Literal["grid", "adaptive"] = "grid"
    hessian: bool = False
    hessian_config: dict[str, Any] = Field({}, description="lorabench.hessian.HessianConfig for `hessian: true`")
    final: dict[str, Any] = Field({}, description="overrides for the final pass: each group's best setting trained "
                                  "again alone after the sweep, e.g. {data: {n_eval: null, test: {path: ...}}} for its "
                                  "full validation and test figures (see lorabench.sweep.costs)")
    execution: ExecutionConfig = ExecutionConfig()


class Sweep:
    """A validated sweep: its config, resolved base run config and every trial of the full grid."""

    def __init__(self, cfg: SweepConfig, base: dict[str, Any], source: str) -> None:
        self.cfg, self.base, self.source = cfg, base, source
        try:
            self.trials: list[TrialSpec] = expand(base, cfg.space, source)
        except ValueError as e:
            raise ConfigError(f"{source}: space: {e}") from None

    def dump(self) -> dict[str, Any]:
        return {"sweep": self.cfg.model_dump(mode="json"), "base": self.base}


def load_sweep(path: str | Path, overrides: dict[str, Any] | None = None) -> Sweep:
    path = Path(path)
    raw = read_yaml(path)
    try:
        cfg = SweepConfig.model_validate(raw)
    except ValidationError as e:
        raise config_error(e, str(path)) from None
    base = read_yaml(path.parent / cfg.base) if isinstance(cfg.base, str) else dict(cfg.base)
    base = merge(merge(base, cfg.set), overrides or {})
    try:
        return Sweep(cfg, base, str(path))
    except ConfigError as e:
        raise blame(e, str(path), dotted_keys(cfg.set), "set.") from None
