"""Optional experiment trackers (``report_to``): TensorBoard, Weights & Biases (offline works), MLflow.

Each is imported only when asked for; a missing package is a clear error before training starts. Every run gets
its own tracker run, named ``METHOD lr=LR seed=SEED``, also when K runs train fused in one process:

- TensorBoard: event files under ``RUN_DIR/tensorboard/NAME``;
- wandb: one run per trial (``reinit="create_new"``, so fused runs never finish each other's), project
  ``tracker_project``, grouped by the sweep (its folder's name) or ``lorabench`` for a single run;
- MLflow: one run per trial through the client API (fused runs never share the fluent API's active run), in the
  experiment ``tracker_project``, nested under the sweep's run (``$LORABENCH_MLFLOW_PARENT``, which a sweep sets)
  when there is one; the nested config is flattened into parameters (``model.name``, ``data.train.path`` …);
  ``tracking_uri`` or ``$MLFLOW_TRACKING_URI`` chooses the store (default: ``./mlruns``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from .errors import ConfigError

MLFLOW_PARENT = "LORABENCH_MLFLOW_PARENT"


class Tracker(Protocol):
    def log(self, step: int, values: dict[str, float]) -> None: ...
    def close(self) -> None: ...


def run_name(config: dict[str, Any]) -> str:
    return f"{config.get('method')} lr={config.get('lr'):g} seed={config.get('seed')}"


def group_name(run_dir: Path) -> str:
    """The sweep a trial folder (``SWEEP/trials/KEY``) belongs to, else ``lorabench``."""
    return run_dir.parent.parent.name if run_dir.parent.name == "trials" else "lorabench"


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"name": "x"}}`` → ``{"model.name": "x"}``; lists become their text."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= flatten(v, key + ".")
        else:
            out[key] = str(v) if isinstance(v, list) else v
    return out


class _TensorBoard:
    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.w = SummaryWriter(str(run_dir / "tensorboard" / run_name(config).replace(" ", "_")))

    def log(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.w.add_scalar(k, v, step)

    def close(self) -> None:
        self.w.close()


class _Wandb:
    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        import wandb

        self.run = wandb.init(dir=str(run_dir), config=config, project=config.get("tracker_project") or "lorabench",
                              name=run_name(config), group=group_name(run_dir), job_type=str(config.get("method")),
                              reinit="create_new")

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


class _Mlflow:
    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=config.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI"))
        name = config.get("tracker_project") or "lorabench"
        exp = self.client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(name)
        tags = {"mlflow.runName": run_name(config), "lorabench.group": group_name(run_dir),
                "lorabench.run_dir": str(run_dir)}
        if os.environ.get(MLFLOW_PARENT):
            tags["mlflow.parentRunId"] = os.environ[MLFLOW_PARENT]
        self.run_id = self.client.create_run(exp_id, tags=tags, run_name=run_name(config)).info.run_id
        for key, value in flatten(config).items():
            self.client.log_param(self.run_id, key, value)

    def log(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.client.log_metric(self.run_id, k, v, step=step)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


_KINDS: dict[str, Callable[[Path, dict[str, Any]], Tracker]] = {
    "tensorboard": _TensorBoard, "wandb": _Wandb, "mlflow": _Mlflow}


def open_trackers(names: Sequence[str], run_dir: Path, config: dict[str, Any]) -> list[Tracker]:
    check_trackers(names)
    return [_KINDS[name](run_dir, config) for name in names]


def sweep_parent_run(names: Sequence[str], sweep_dir: Path, config: dict[str, Any]) -> str | None:
    """An MLflow run for the whole sweep (its trials' runs nest under it); its id, or None without mlflow."""
    if "mlflow" not in names:
        return None
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=config.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI"))
    name = config.get("tracker_project") or "lorabench"
    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp else client.create_experiment(name)
    return str(client.create_run(exp_id, run_name=f"sweep {sweep_dir.name}",
                                 tags={"lorabench.sweep_dir": str(sweep_dir)}).info.run_id)


def check_trackers(names: Sequence[str]) -> None:
    """Fail before anything is written when a requested tracker's package is missing."""
    import importlib.util

    modules = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
    for name in names:
        if importlib.util.find_spec(modules[name]) is None:
            raise ConfigError(f"report_to: {name} is not installed; pip install 'lorabench[{name}]'")
