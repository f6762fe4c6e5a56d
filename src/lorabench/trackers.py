"""Optional experiment trackers (``report_to``): TensorBoard, Weights & Biases (offline works), MLflow.

Each is imported only when asked for; a missing package is a clear error before training starts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from .errors import ConfigError


class Tracker(Protocol):
    def log(self, step: int, values: dict[str, float]) -> None: ...
    def close(self) -> None: ...


class _TensorBoard:
    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.w = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.w.add_scalar(k, v, step)

    def close(self) -> None:
        self.w.close()


class _Wandb:
    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        import wandb

        self.run = wandb.init(dir=str(run_dir), config=config, project="lorabench", reinit=True)

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


class _Mlflow:
    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        import mlflow

        self.m = mlflow
        mlflow.start_run()
        mlflow.log_params({k: v for k, v in config.items() if not isinstance(v, dict | list)})

    def log(self, step: int, values: dict[str, float]) -> None:
        self.m.log_metrics(values, step=step)

    def close(self) -> None:
        self.m.end_run()


_KINDS: dict[str, Callable[[Path, dict[str, Any]], Tracker]] = {
    "tensorboard": _TensorBoard, "wandb": _Wandb, "mlflow": _Mlflow}


def open_trackers(names: Sequence[str], run_dir: Path, config: dict[str, Any]) -> list[Tracker]:
    check_trackers(names)
    return [_KINDS[name](run_dir, config) for name in names]


def check_trackers(names: Sequence[str]) -> None:
    """Fail before anything is written when a requested tracker's package is missing."""
    import importlib.util

    modules = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
    for name in names:
        if importlib.util.find_spec(modules[name]) is None:
            raise ConfigError(f"report_to: {name} is not installed; pip install 'lorabench[{name}]'")
