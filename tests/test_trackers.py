"""Experiment trackers with their real packages, offline or local: TensorBoard event files, wandb offline runs,
a local MLflow file store; each run of a fused group gets its own tracker run."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import yaml

from lorabench import load_config
from lorabench.runner import run_group
from lorabench.sweep import load_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["lora lr=0.001 seed=0", "lora lr=0.002 seed=0"]


def wandb_records(path: Path) -> list:
    """The records of an offline run's ``.wandb`` file: after a 7-byte header, LevelDB-log blocks of 32 KiB whose
    chunks carry a 7-byte header (crc32c, length, type: 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, out, buf = path.read_bytes(), 7, 32768, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            out.append(chunk)
        elif kind in (2, 3):
            buf = (b"" if kind == 2 else buf) + chunk
        elif kind == 4:
            out.append(buf + chunk)
    recs = []
    for raw in out:
        rec = pb.Record()
        rec.ParseFromString(raw)
        recs.append(rec)
    return recs


def wandb_run(folder: Path) -> dict:
    (path,) = folder.glob("wandb/offline-run-*/run-*.wandb")
    recs = wandb_records(path)
    run = next(r.run for r in recs if r.WhichOneof("record_type") == "run")
    history = [{(i.key or "/".join(i.nested_key)): float(i.value_json) for i in r.history.item
                if (i.key or "/".join(i.nested_key)) in ("loss", "eval_accuracy")}
               for r in recs if r.WhichOneof("record_type") == "history"]
    return {"name": run.display_name, "group": run.run_group, "project": run.project,
            "losses": [h["loss"] for h in history if "loss" in h],
            "finished": recs[-1].WhichOneof("record_type") == "exit"}


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{tmp_path / 'mlruns'}")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the local file store, kept by MLflow in maintenance
    monkeypatch.delenv("LORABENCH_MLFLOW_PARENT", raising=False)
    return tmp_path


def test_each_fused_run_gets_its_own_run_in_every_tracker(glue_dir, offline, one_thread):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfgs = [load_config("configs/tiny-llama.yaml", [f"data.dir={glue_dir}", "data.n_train=64", "data.n_eval=16",
                                                    "steps=4", "eval_every=2", "batch_size=4", f"lr={lr}",
                                                    "save_adapter=false", "report_to=[tensorboard, wandb, mlflow]",
                                                    "tracker_project=trk", "device=cpu"]) for lr in (1e-3, 2e-3)]
    dirs = [offline / "r1", offline / "r2"]
    results = run_group(cfgs, dirs, progress=False, log=lambda s: None)
    assert [r["status"] for r in results] == ["ok", "ok"] and results[0]["fused"] == 2
    client = MlflowClient()
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("trk").experiment_id])}
    assert sorted(runs) == NAMES
    for name, folder in zip(NAMES, dirs):
        (tb,) = (folder / "tensorboard").iterdir()
        assert tb.name == name.replace(" ", "_")
        acc = EventAccumulator(str(tb))
        acc.Reload()
        assert [e.step for e in acc.Scalars("loss")] == [1, 2, 3, 4]
        assert [e.step for e in acc.Scalars("eval_accuracy")] == [2, 4]
        wb = wandb_run(folder)
        assert (wb["name"], wb["group"], wb["project"], wb["finished"]) == (name, "lorabench", "trk", True)
        assert len(wb["losses"]) == 4  # the other fused run's finish did not end this one
        run = runs[name]
        assert run.info.status == "FINISHED"
        assert run.data.params["model.name"] == "tiny-llama" and run.data.params["data.n_eval"] == "16"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3, 4]
    assert wandb_run(dirs[0])["losses"] != wandb_run(dirs[1])["losses"]  # each run logs its own values


def test_report_to_takes_a_single_name():
    assert load_config(None, ["report_to=tensorboard"]).report_to == ["tensorboard"]


@pytest.mark.slow
def test_sweep_trials_nest_under_one_mlflow_sweep_run(glue_dir, offline):
    from mlflow.tracking import MlflowClient

    p = offline / "sweep.yaml"
    p.write_text(yaml.safe_dump({
        "base": str(ROOT / "configs/tiny-llama.yaml"),
        "set": {"steps": 2, "eval_every": 2, "save_adapter": False, "report_to": "mlflow", "device": "cpu",
                "data": {"dir": str(glue_dir), "n_train": 40, "n_eval": 8}},
        "space": {"methods": ["lora"], "lr": [1e-3, 2e-3]}}))
    assert run_sweep(load_sweep(p), offline / "S", progress=False, costs=False) == {"ok": 2}
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("lorabench").experiment_id])
    (parent,) = [r for r in runs if r.info.run_name == "sweep S"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == NAMES
    assert {r.data.tags["lorabench.group"] for r in children} == {"S"}
