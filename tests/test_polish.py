"""What a researcher notices: permissions, help, errors that name their source, status of dead workers."""

from __future__ import annotations

import os
import socket
import stat
import time

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from lorabench import load_config, run
from lorabench.cli import app
from lorabench.errors import ConfigError
from lorabench.records import Status
from lorabench.sweep import load_sweep
from lorabench.sweep.store import Store, default_url, trials
from lorabench.sweep.summary import format_status, status

runner = CliRunner()


def test_run_files_follow_the_umask(glue_dir, tmp_path, one_thread):
    old = os.umask(0o022)
    try:
        cfg = load_config("configs/tiny-llama.yaml", [f"data.dir={glue_dir}", "data.n_train=32", "data.n_eval=8",
                                                      "steps=2", "eval_every=2", "batch_size=4", "device=cpu"])
        run(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    finally:
        os.umask(old)
    for name in ("result.json", "config.yaml", "predictions.jsonl", "metrics.jsonl", "adapter/adapter_config.json",
                 "adapter/adapter_model.safetensors", "adapter/README.md"):
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == 0o644, name


def test_help_shows_names_and_choices():
    train = runner.invoke(app, ["train", "--help"], prog_name="lorabench").output
    assert "Usage: lorabench train [OPTIONS] CONFIG" in train and "<bool>" not in train and "{" not in train
    assert "--set KEY=VALUE" in train
    sweep = runner.invoke(app, ["sweep", "--help"]).output
    assert "--executor <local|ray>" in sweep and "--strategy <grid|adaptive|hessian>" in sweep
    assert "SWEEP_CONFIG" in sweep


@pytest.mark.parametrize("sets, message", [
    (["lrr=1"], "--set lrr: unknown config key (did you mean 'lr'?)"),
    (["model.nmae=x"], "--set model.nmae: unknown config key (did you mean 'name'?)"),
    (["method=pisa"], "--set method: unknown method 'pisa' (did you mean 'pissa'?)"),
    (["rank=0"], "--set rank: Input should be greater than 0"),
    (["n_eval=5"], "--set n_eval: unknown config key (did you mean 'data.n_eval'?)"),  # a section's field
])
def test_override_errors_name_set_and_suggest(sets, message):
    with pytest.raises(ConfigError) as e:
        load_config("configs/tiny-llama.yaml", sets)
    assert str(e.value).startswith(message), str(e.value)


def test_a_bad_key_under_a_sweeps_set_is_named_set_key(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(f"base: {os.path.abspath('configs/tiny-llama.yaml')}\nset: {{lrr: 3}}\n"
                 "space: {methods: [lora], lr: [1.0e-3]}\n")
    with pytest.raises(ConfigError, match=r"s.yaml: set.lrr: unknown config key \(did you mean 'lr'\?\)"):
        load_sweep(p)


def test_unmatched_target_modules_list_the_layers_there_are(glue_dir, tmp_path):
    r = runner.invoke(app, ["train", "configs/tiny-llama.yaml", "-o", str(tmp_path / "r"), "-q", "--set",
                            f"data.dir={glue_dir}", "--set", "data.n_train=100", "--set", "data.n_eval=8",
                            "--set", "target_modules=[qproj]"])
    assert r.exit_code == 2 and "its linear layers are named down_proj, gate_proj, k_proj, lm_head" in r.output
    assert not (tmp_path / "r").exists()


def test_config_prints_the_resolved_config_with_defaults():
    import yaml

    r = runner.invoke(app, ["config", "configs/tiny-llama.yaml", "--set", "method=loraplus"])
    cfg = yaml.safe_load(r.output)
    assert r.exit_code == 0 and cfg["loraplus_ratio"] == 16.0 and cfg["data"]["train"]["path"] == "train.tsv"
    assert cfg["warmup_ratio"] == 0.0 and cfg["model"]["head"] == "lm"


def test_data_dir_that_is_a_file_is_one_line(tmp_path):
    f = tmp_path / "train.tsv"
    f.write_text("sentence\tlabel\nx\t1\n")
    r = runner.invoke(app, ["train", "configs/tiny-llama.yaml", "-o", str(tmp_path / "r"), "--set", f"data.dir={f}"])
    assert r.exit_code == 2 and "a file where a folder is expected" in r.output and not (tmp_path / "r").exists()


def test_bad_executor_or_strategy_leave_no_sweep_folder(tmp_path):
    for flag in (["--executor", "slurm"], ["--strategy", "random"]):
        r = runner.invoke(app, ["sweep", "configs/sweep-demo.yaml", "-o", str(tmp_path / "S"), *flag])
        assert r.exit_code == 2 and "Invalid value" in r.output and not (tmp_path / "S").exists()


def test_status_shows_dead_workers_as_dead_and_its_eta_moves(tmp_path):
    from lorabench.sweep import load_sweep as ls

    sweep = ls("configs/sweep-demo.yaml")
    store = Store(default_url(tmp_path))
    store.add(sweep.trials[:4])
    keys = [t.key for t in sweep.trials[:4]]
    assert store.claim(keys[0], f"{socket.gethostname()}:{os.getpid()}")  # alive: this process
    assert store.claim(keys[1], f"{socket.gethostname()}:999999999")  # a pid that does not exist
    me = f"{socket.gethostname()}:{os.getpid()}"
    assert store.claim(keys[2], me) and store.finish(keys[2], me, Status.OK, None, None)  # a finished trial: a pace
    with store.engine.begin() as c:  # that took 100 s
        c.execute(sa.update(trials).where(trials.c.key == keys[2]).values(started=time.time() - 100))
    s = status(store)
    lines = format_status(s)
    assert "dead    " in lines and "999999999 is gone" in lines and f"running {sweep.trials[0].method}" in lines
    first = s["eta_seconds"]
    time.sleep(0.05)
    assert first is not None and status(store)["eta_seconds"] != first  # it counts down while trials run
