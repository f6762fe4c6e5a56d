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


class PredictionConfig(BaseModel):
    """The learning-rate prediction from λ_max (``strategy: hessian``, and the prediction columns of ``best``)."""

    model_config = ConfigDict(extra="forbid")
    reference: str = Field("lora", description="the method whose best rate is searched and the others' predicted "
                           "from: lr_m = lr_ref · (λ_ref / λ_m)^exponent")
    reference_search: Literal["grid", "adaptive"] = Field("grid", description="how the reference's rate is searched")
    exponent: float = Field(1.0, gt=0, description="γ: 1 is the 2/λ stability argument")


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: str | dict[str, Any] = Field(description="run config: a YAML path (relative to this file) or a mapping")
    set: dict[str, Any] = Field({}, description="overrides applied to the base config")
    space: SweepSpace
    strategy: Literal["grid", "adaptive", "hessian"] = Field(
        "grid", description="grid: every trial; adaptive: coarse-to-fine per group; hessian: the reference on its "
        "grid, every other method near its rate predicted from λ_max (see prediction)")
    prediction: PredictionConfig = PredictionConfig()
    hessian: bool = Field(False, description="measure each group's λ_max at init (always, first, with strategy: "
                          "hessian)")
    hessian_config: dict[str, Any] = Field({}, description="lorabench.hessian.HessianConfig for the λ_max measurements")
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
