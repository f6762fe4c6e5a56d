"""Sweeps: expansion, strategies, the store's resume semantics (with a real SIGKILL), divergence, Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from lorabench.sweep import best, format_best, load_sweep, open_store, run_sweep
from lorabench.sweep.space import LogGrid, TrialSpec
from lorabench.sweep.strategies import adaptive

ROOT = Path(__file__).resolve().parents[1]


def write_sweep(tmp_path: Path, glue_dir: Path | None, space: dict, **base_set) -> Path:
    """A sweep over the tiny Llama; ``glue_dir`` None: the data folder comes from $LORABENCH_DATA_DIR."""
    cfg = {"base": str(ROOT / "configs/tiny-llama.yaml"),
           "set": {"steps": 4, "eval_every": 4, "save_adapter": False,
                   "data": {"dir": str(glue_dir) if glue_dir else None, "n_train": 200, "n_eval": 32}, **base_set},
           "space": space}
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_log_grid_matches_the_study():
    g = LogGrid(min=1.12e-5, max=6.32e-3, per_decade=4).values()
    assert len(g) == 12 and g[0] == 1.12e-5 and g[-1] == 6.3e-3  # 3 significant digits
    assert all(1.77 < b / a < 1.79 for a, b in zip(g, g[1:]))  # 10^(1/4)


def test_every_method_gets_the_same_data_and_keys_are_stable(tmp_path, glue_dir):
    s = load_sweep(write_sweep(tmp_path, glue_dir, {"methods": ["lora", "pissa"], "lr": [1e-3, 1e-2],
                                                    "seeds": [0, 1]}))
    assert len(s.trials) == 8 and len({t.key for t in s.trials}) == 8
    again = load_sweep(write_sweep(tmp_path, glue_dir, {"methods": ["lora", "pissa"], "lr": [1e-3, 1e-2],
                                                        "seeds": [0, 1]}))
    assert [t.key for t in s.trials] == [t.key for t in again.trials]
    def shared(c: dict) -> dict:  # all but the axes and the method's own options
        return {k: v for k, v in c.items() if k not in ("method", "lr", "seed", "pissa_niter")}

    for t in s.trials:  # only method, lr and seed vary; data subset and everything else are shared
        assert (t.config["method"], t.config["lr"], t.config["seed"]) == (t.method, t.lr, t.seed)
        assert shared(t.config) == shared(s.trials[0].config)


def test_loraplus_grid_and_batch_policy(tmp_path, glue_dir):
    s = load_sweep(write_sweep(tmp_path, glue_dir, {
        "methods": ["loraplus"], "rate_grid": {"loraplus": {"lr": [1e-5, 1e-4], "lr_b": [1e-4, 4e-4]}},
        "batch_size": [2, 4]}, batch_size=4, grad_accum=2))
    cfgs = [t.config for t in s.trials]
    assert len(cfgs) == 8
    assert {(c["lr"], round(c["lr"] * c["loraplus_ratio"], 12)) for c in cfgs} == \
        {(1e-5, 1e-4), (1e-5, 4e-4), (1e-4, 1e-4), (1e-4, 4e-4)}
    assert {(c["batch_size"], c["grad_accum"]) for c in cfgs} == {(2, 4), (4, 2)}  # effective batch kept at 8


def _spec(lr: float, group: str = "g") -> TrialSpec:
    return TrialSpec(key=f"{group}{lr}", group=group, method="m", lr=lr, seed=0, axes={}, config={})


@pytest.mark.parametrize("peak", range(12))
def test_adaptive_finds_the_peak_within_one_step_with_half_the_trials(peak):
    lrs = [float(i + 1) for i in range(12)]
    specs = [_spec(lr) for lr in lrs]
    acc = {lr: 0.9 - 0.05 * abs(i - peak) for i, lr in enumerate(lrs)}  # unimodal
    done: dict = {}
    while True:
        todo = [s for s in adaptive(specs, done) if s.key not in done]
        if not todo:
            break
        for s in todo:
            done[s.key] = {"status": "ok", "result": {"final": {"accuracy": acc[s.lr]}, "train_loss_last": 1.0}}
    assert len(done) <= 6
    found = max(done, key=lambda k: done[k]["result"]["final"]["accuracy"])
    assert abs(lrs.index(float(found[1:])) - peak) <= 1


def test_adaptive_breaks_accuracy_ties_on_a_plateau_with_the_training_loss():
    """At chance accuracy everywhere but the peak, the loss points the refinement the right way."""
    lrs = [float(i + 1) for i in range(6)]
    specs = [_spec(lr) for lr in lrs]
    acc = [0.5, 0.5, 0.5, 0.8, 0.5, 0.0]
    loss = [0.70, 0.69, 0.66, 0.40, 0.60, 9.0]
    done: dict = {}
    while todo := [s for s in adaptive(specs, done) if s.key not in done]:
        for s in todo:
            i = lrs.index(s.lr)
            done[s.key] = {"status": "ok", "result": {"final": {"accuracy": acc[i]}, "train_loss_last": loss[i]}}
    # coarse points 1 and 4 tie on accuracy; 4 has the lower loss and its only coarse neighbour is 1: step to 3
    assert sorted(lrs.index(float(k[1:])) for k in done) == [1, 3, 4]


@pytest.mark.slow
def test_sweep_runs_records_each_trial_once_and_reports_best(tmp_path, glue_dir):
    s = load_sweep(write_sweep(tmp_path, glue_dir, {"methods": ["lora", "init_b"], "lr": [1e-3, 1e-2]}))
    counts = run_sweep(s, tmp_path / "S", progress=False)
    assert counts == {"ok": 4}
    assert run_sweep(s, tmp_path / "S", progress=False) == {"ok": 4}  # nothing redone
    rows = open_store(tmp_path / "S").rows()
    assert all(r["attempts"] == 1 for r in rows)
    b = best(open_store(tmp_path / "S"))
    assert {t["method"] for t in b["table"]} == {"lora", "init_b"}
    for t in b["table"]:
        accs = {c["lr"]: c["accuracy"]["mean"] for c in t["curve"]}
        assert t["accuracy"]["mean"] == max(accs.values()) and accs[t["best_lr"]] == max(accs.values())
        run = json.loads((tmp_path / "S" / "trials" / rows[0]["key"] / "result.json").read_text())
        assert run["status"] == "ok"


@pytest.mark.slow
def test_diverging_trial_is_recorded_and_the_sweep_goes_on(tmp_path, glue_dir, tiny_bert_dir, trials_in_process):
    p = write_sweep(tmp_path, glue_dir, {"methods": ["lora"], "lr": [1e-3, 10.0]}, max_grad_norm=None,
                    steps=30, eval_every=30, model={"name": str(tiny_bert_dir), "head": "cls"})
    assert run_sweep(load_sweep(p), tmp_path / "S", progress=False) == {"diverged": 1, "ok": 1}
    rows = {r["lr"]: r for r in open_store(tmp_path / "S").rows()}
    assert rows[10.0]["status"] == "diverged" and rows[10.0]["result"]["steps_done"] < 30


@pytest.mark.slow
def test_sigkill_then_resume_ends_with_each_trial_once(tmp_path, glue_dir):
    p = write_sweep(tmp_path, glue_dir, {"methods": ["lora", "init_b"], "lr": [1e-3, 3e-3, 1e-2]},
                    steps=150, eval_every=150)
    out = tmp_path / "S"
    cmd = [sys.executable, "-m", "lorabench.cli", "sweep", str(p), "-o", str(out), "-q", "--no-costs"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    killed_key = None
    while time.time() < deadline:
        time.sleep(0.5)
        if not (out / "sweep.db").is_file():
            continue
        rows = open_store(out).rows()
        running = [r for r in rows if r["status"] == "running" and r["step"] > 0]
        if any(r["status"] == "ok" for r in rows) and running:
            killed_key = running[0]["key"]
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=30)
    assert killed_key is not None, "the sweep never reached a running trial after a finished one"
    before = {r["key"]: r["status"] for r in open_store(out).rows()}
    assert before[killed_key] == "running"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = open_store(out).rows()
    assert len(rows) == 6 and len({r["key"] for r in rows}) == 6
    assert all(r["status"] == "ok" for r in rows), [(r["status"], (r["error"] or "")[-600:]) for r in rows]
    attempts = {r["key"]: r["attempts"] for r in rows}
    assert attempts[killed_key] == 2  # rerun once
    assert all(attempts[k] == 1 for k, s in before.items() if s == "ok")  # finished ones kept


@pytest.mark.slow
def test_ray_executor_gives_the_same_trials_and_metrics_as_local(tmp_path, glue_dir):
    pytest.importorskip("ray")
    p = write_sweep(tmp_path, glue_dir, {"methods": ["lora", "loraplus"], "lr": [1e-3, 1e-2]},
                    )
    s = load_sweep(p)
    run_sweep(s, tmp_path / "local", workers=2, progress=False, costs=False)
    import ray

    try:
        run_sweep(s, tmp_path / "ray", executor="ray", progress=False, costs=False)
    finally:
        ray.shutdown()

    def metrics(folder):
        return {r["key"]: (r["status"], r["result"]["final"], r["result"]["tokens_seen"],
                           (folder / "trials" / r["key"] / "metrics.jsonl").read_text())
                for r in open_store(folder).rows()}

    local, remote = metrics(tmp_path / "local"), metrics(tmp_path / "ray")
    assert local.keys() == remote.keys() and len(local) == 4
    assert local == remote


@pytest.mark.slow
def test_best_treats_each_loraplus_pair_as_its_own_point(tmp_path, glue_dir, trials_in_process):
    s = load_sweep(write_sweep(tmp_path, glue_dir, {"methods": ["loraplus"],
                                                    "rate_grid": {"loraplus": {"lr": [1e-3], "lr_b": [1e-3, 1e-2]}}}))
    run_sweep(s, tmp_path / "S", progress=False)
    (row,) = best(open_store(tmp_path / "S"))["table"]
    assert row["seeds"] == 1 and len(row["curve"]) == 2
    assert sorted(c["paired"]["lr_b"] for c in row["curve"]) == [1e-3, 1e-2]


@pytest.mark.slow
def test_fused_sweep_equals_the_unfused_one(tmp_path, varied_glue_dir, trials_in_process):
    """Two seeds and two learning rates of the tiny Llama on sentences of varied lengths (the seeds' micro-batches
    differ in width): ``--fuse auto`` and ``--fuse 3`` give every trial the metrics of ``--fuse 1``."""
    from lorabench.sweep.schedule import fused_tasks

    s = load_sweep(write_sweep(tmp_path, varied_glue_dir, {"methods": ["lora"], "lr": [1e-3, 1e-2], "seeds": [0, 1]}))
    assert run_sweep(s, tmp_path / "one", fuse=1, progress=False) == {"ok": 4}
    assert run_sweep(s, tmp_path / "auto", fuse=None, progress=False) == {"ok": 4}
    assert run_sweep(s, tmp_path / "three", fuse=3, progress=False) == {"ok": 4}
    auto = {r["key"]: r["result"] for r in open_store(tmp_path / "auto").rows()}
    assert sorted(r["fused"] for r in auto.values()) == [4, 4, 4, 4]

    def trials(folder):
        return {r["key"]: r["result"] for r in open_store(folder).rows()}

    one, three = trials(tmp_path / "one"), trials(tmp_path / "three")
    assert one.keys() == three.keys() == auto.keys()
    for k in one:
        assert one[k]["final"] == auto[k]["final"] and one[k]["tokens_seen"] == auto[k]["tokens_seen"]
    assert sorted(r["fused"] for r in one.values()) == [1, 1, 1, 1]
    assert sorted(r["fused"] for r in three.values()) == [1, 3, 3, 3]
    for k in one:
        assert one[k]["final"] == three[k]["final"] and one[k]["tokens_seen"] == three[k]["tokens_seen"]
        losses = [[json.loads(x)["loss"] for x in (tmp_path / f / "trials" / k / "metrics.jsonl").read_text().splitlines()]
                  for f in ("one", "three")]
        assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    # costs: the fused sweep's best was timed again alone (the cost pass); the unfused sweep's trials are their own
    fused_best, alone_best = best(open_store(tmp_path / "three")), best(open_store(tmp_path / "one"))
    assert "costs of lora: their best setting timed alone" in format_best(fused_best)
    (t,) = fused_best["table"]
    assert t["cost_source"] == "cost pass" and t["train_seconds"] > 0 and t["fused"] == 3
    assert alone_best["table"][0]["cost_source"] == "trials" and "costs of" not in format_best(alone_best)
    (cost_run,) = (tmp_path / "three" / "costs").iterdir()
    assert json.loads((cost_run / "result.json").read_text())["fused"] == 1
    # grouping: compatible trials in chunks of K, an incompatible one (dropout) alone
    rows = open_store(tmp_path / "one").rows()
    odd = {**rows[0], "key": "x", "config": {**rows[0]["config"], "dropout": 0.1}}
    tasks = fused_tasks(rows + [odd], 3)
    assert sorted(len(t) for t in tasks) == [1, 1, 3] and ["x"] in tasks


@pytest.mark.slow
def test_resuming_a_sweep_of_another_record_schema_is_refused(tmp_path, glue_dir, trials_in_process):
    """A store records the schema version of its trials; a resume of another version stops with one line."""
    from lorabench.errors import ConfigError
    from lorabench.records import SCHEMA_VERSION

    s = load_sweep(write_sweep(tmp_path, glue_dir, {"methods": ["lora"], "lr": [1e-3]}, steps=1, eval_every=1))
    assert run_sweep(s, tmp_path / "S", progress=False) == {"ok": 1}
    from lorabench.sweep.store import Store, default_url

    store = Store(default_url(tmp_path / "S"))  # writable, as a sweep opens it
    assert store.get_meta("schema_version") == SCHEMA_VERSION
    assert store.rows()[0]["result"]["schema_version"] == SCHEMA_VERSION
    assert run_sweep(s, tmp_path / "S", progress=False) == {"ok": 1}  # same version: resumes
    with store.engine.begin() as c:  # as an older lorabench left it: no version recorded
        c.exec_driver_sql("DELETE FROM meta WHERE name = 'schema_version'")
    with pytest.raises(ConfigError, match="record schema 1"):
        run_sweep(s, tmp_path / "S", progress=False)


@pytest.mark.slow
def test_collapsed_and_diverged_rates_are_never_the_best(tmp_path, glue_dir, trials_in_process):
    """lr = 1e3 freezes the tiny Llama (zero gradients from step 3): recorded collapsed, never selected, although
    its last evaluation (0.625) beats the rates that trained (0.375); before, it was `ok` and the best."""
    s = load_sweep(write_sweep(tmp_path, glue_dir, {"methods": ["lora"], "lr": [1e-3, 1e-2, 10.0, 1e3]},
                               steps=8, eval_every=4))
    counts = run_sweep(s, tmp_path / "S", progress=False)
    rows = {r["lr"]: r for r in open_store(tmp_path / "S").rows()}
    assert rows[1e3]["status"] == "collapsed" and rows[1e3]["result"]["steps_done"] < 8
    assert rows[1e3]["result"]["final"]["accuracy"] > rows[1e-3]["result"]["final"]["accuracy"]
    assert counts.get("collapsed") == 1
    (t,) = best(open_store(tmp_path / "S"))["table"]
    assert rows[t["best_lr"]]["status"] == "ok" and t["best_lr"] not in (1e3,)
    assert all(rows[lr]["status"] in ("ok", "collapsed", "diverged") for lr in rows)


def _store_with(tmp_path, results: list[tuple[str, float, int, str, float | None]]):
    """A store holding finished trials (method, lr, seed, status, accuracy) without running anything."""
    from lorabench.sweep.store import Store, default_url

    (tmp_path / "S").mkdir()
    store = Store(default_url(tmp_path / "S"))
    specs = [TrialSpec(key=f"k{i}", group=json.dumps({"method": m}), method=m, lr=lr, seed=seed, axes={},
                       config={"steps": 1}) for i, (m, lr, seed, _, _) in enumerate(results)]
    store.add(specs)
    for spec, (_, _, _, status, acc) in zip(specs, results):
        assert store.claim(spec.key, "me")
        final = {"accuracy": acc, "macro_f1": acc} if acc is not None else None
        store.finish(spec.key, "me", status, {"final": final, "train_seconds": 1.0, "peak_memory_mb": 1.0,
                                             "memory_kind": "rss", "trainable_params": 1, "fused": 1}, None)
    return store


def test_failed_seeds_are_left_out_of_means_and_the_spread(tmp_path):
    store = _store_with(tmp_path, [("lora", 1e-3, 0, "ok", 0.8), ("lora", 1e-3, 1, "diverged", None),
                                   ("lora", 1e-2, 0, "ok", 0.7), ("lora", 1e-2, 1, "ok", 0.7),
                                   ("pissa", 1e-3, 0, "failed", None), ("pissa", 1e-2, 0, "oom", None)])
    b = best(store)
    (t,) = b["table"]
    assert t["method"] == "lora" and t["best_lr"] == 1e-3  # 0.8 over the seed that finished, not (0.8 + 0) / 2
    assert t["accuracy"] == {"mean": 0.8, "std": None}  # one ok seed: its spread is unknown
    point = next(c for c in t["curve"] if c["lr"] == 1e-3)
    assert point["n_ok"] == 1 and point["counts"] == {"ok": 1, "diverged": 1}
    assert b["spread"] == 0.0  # pissa, which has no trial that finished ok, is not part of it
    assert b["no_ok"] == [{"group": {"method": "pissa"}, "method": "pissa", "trials": 2,
                           "counts": {"failed": 1, "oom": 1}}]
    assert "pissa: no trial finished ok (1 failed, 1 oom); no best learning rate" in format_best(b)


def _digests(folder: Path) -> dict[str, str]:
    import hashlib

    return {p.parent.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (folder / "trials").glob("*/result.json")}


@pytest.mark.slow
def test_a_lost_or_new_store_adopts_finished_folders_and_never_overwrites_them(tmp_path, glue_dir,
                                                                             trials_in_process):
    from lorabench.errors import ConfigError

    s = load_sweep(write_sweep(tmp_path, glue_dir, {"methods": ["lora"], "lr": [1e-3, 1e-2]}))
    out = tmp_path / "S"
    assert run_sweep(s, out, progress=False) == {"ok": 2}
    before = _digests(out)
    assert len(before) == 2
    for f in out.glob("sweep.db*"):  # the store is lost
        f.unlink()
    assert run_sweep(s, out, progress=False) == {"ok": 2}
    assert _digests(out) == before and all(r["attempts"] == 0 for r in open_store(out).rows())  # adopted, not rerun
    other = f"sqlite:///{tmp_path / 'elsewhere.db'}"  # moved to another store
    assert run_sweep(s, out, store_url=other, progress=False) == {"ok": 2}
    assert _digests(out) == before
    for f in out.glob("sweep.db*"):
        f.unlink()
    assert run_sweep(s, out, rebuild=True, progress=False) == {"ok": 2}  # --rebuild-store: recovered, nothing run
    assert _digests(out) == before and best(open_store(out))["table"][0]["best_lr"] in (1e-3, 1e-2)
    key = next(iter(before))
    res = json.loads((out / "trials" / key / "result.json").read_text())
    res["config"]["lr"] = 0.5  # a folder that holds another trial's run
    (out / "trials" / key / "result.json").write_text(json.dumps(res))
    for f in out.glob("sweep.db*"):
        f.unlink()
    with pytest.raises(ConfigError, match=f"{key}/result.json: holds another trial's run"):
        run_sweep(s, out, progress=False)


@pytest.mark.slow
def test_retry_reruns_failed_trials_and_keeps_the_attempt_count(tmp_path, glue_dir, trials_in_process):
    from .conftest import write_glue

    missing = tmp_path / "later"
    s = load_sweep(write_sweep(tmp_path, missing, {"methods": ["lora"], "lr": [1e-3]}))
    assert run_sweep(s, tmp_path / "S", progress=False) == {"failed": 1}  # the data is not there yet
    assert run_sweep(s, tmp_path / "S", progress=False) == {"failed": 1}  # a plain resume keeps it
    write_glue(missing)
    assert run_sweep(s, tmp_path / "S", retry=["failed"], progress=False) == {"ok": 1}
    (row,) = open_store(tmp_path / "S").rows()
    assert row["attempts"] == 2 and row["result"]["final"] is not None
    from lorabench.errors import ConfigError

    with pytest.raises(ConfigError, match="--retry: ok is not a status to retry"):
        run_sweep(s, tmp_path / "S", retry=["ok"], progress=False)


def test_a_stalled_worker_cannot_overwrite_the_attempt_that_replaced_it(tmp_path):
    """The fence: an attempt's folder becomes trials/KEY only if the store still says its worker owns the trial."""
    from lorabench.records import Status
    from lorabench.sweep.store import Store, default_url
    from lorabench.sweep.worker import attempt_dir, publish

    (tmp_path / "trials").mkdir(parents=True)
    store = Store(default_url(tmp_path))
    store.add([TrialSpec(key="k", group="{}", method="lora", lr=1e-3, seed=0, axes={}, config={})])
    assert store.claim("k", "hostA:1")
    with store.engine.begin() as c:  # A stalls: its lease runs out and the trial goes back to pending
        c.exec_driver_sql("UPDATE trials SET heartbeat = 0 WHERE key = 'k'")
    assert store.reclaim(lease_s=60) == 1
    assert store.claim("k", "hostB:2")
    final = tmp_path / "trials" / "k"
    for who, attempt in (("B", 2), ("A", 1)):
        d = attempt_dir(tmp_path, "k", attempt)
        d.mkdir()
        (d / "result.json").write_text(json.dumps({"by": who}))
    assert publish(store, "k", "hostB:2", attempt_dir(tmp_path, "k", 2), final, Status.OK, {"by": "B"}, None)
    assert not publish(store, "k", "hostA:1", attempt_dir(tmp_path, "k", 1), final, Status.OK, {"by": "A"}, None)
    assert json.loads((final / "result.json").read_text())["by"] == "B"
    assert store.rows()[0]["result"]["by"] == "B" and not attempt_dir(tmp_path, "k", 1).exists()


@pytest.mark.slow
def test_resuming_with_other_data_is_refused(tmp_path, monkeypatch, trials_in_process):
    """The data's identity (the files' sha256) is part of what a resume checks, wherever the folder is named."""
    from lorabench.errors import ConfigError

    from .conftest import write_glue

    first, second = write_glue(tmp_path / "A"), write_glue(tmp_path / "B", n_train=300)
    s = load_sweep(write_sweep(tmp_path, None, {"methods": ["lora"], "lr": [1e-3]}))  # data from the environment
    monkeypatch.setenv("LORABENCH_DATA_DIR", str(first))
    assert run_sweep(s, tmp_path / "S", progress=False) == {"ok": 1}
    monkeypatch.setenv("LORABENCH_DATA_DIR", str(second))
    with pytest.raises(ConfigError, match="trained on other data"):
        run_sweep(s, tmp_path / "S", progress=False)
    monkeypatch.setenv("LORABENCH_DATA_DIR", str(first))
    assert run_sweep(s, tmp_path / "S", progress=False) == {"ok": 1}


@pytest.mark.slow
def test_two_sweeps_started_at_once_on_a_fresh_store_both_succeed_and_run_each_trial_once(tmp_path, glue_dir):
    p = write_sweep(tmp_path, glue_dir, {"methods": ["lora", "init_b"], "lr": [1e-3, 1e-2]})
    out = tmp_path / "S"
    cmd = [sys.executable, "-m", "lorabench.cli", "sweep", str(p), "-o", str(out), "-q", "--fuse", "1"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [pr.communicate(timeout=600) for pr in procs]
    assert [pr.returncode for pr in procs] == [0, 0], [e for _, e in outs]
    rows = open_store(out).rows()
    assert len(rows) == 4 and all(r["status"] == "ok" and r["attempts"] == 1 for r in rows)


@pytest.mark.slow
def test_a_killed_worker_is_recorded_with_its_signal_and_the_sweep_goes_on(tmp_path, glue_dir):
    """SIGKILL of one worker (what the OOM killer does): that trial is recorded oom with the signal, the others run."""
    p = write_sweep(tmp_path, glue_dir, {"methods": ["lora"], "lr": [1e-3, 3e-3, 1e-2]}, steps=150, eval_every=150)
    out = tmp_path / "S"
    cmd = [sys.executable, "-m", "lorabench.cli", "sweep", str(p), "-o", str(out), "-q", "--fuse", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed, deadline = None, time.time() + 240
    while killed is None and time.time() < deadline:
        time.sleep(0.3)
        if (out / "sweep.db").is_file():
            running = [r for r in open_store(out).rows() if r["status"] == "running" and r["step"] > 0]
            if running:
                killed = running[0]
                os.kill(int(killed["owner"].rpartition(":")[2]), signal.SIGKILL)
    assert killed is not None, "no trial was seen running"
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    rows = {r["key"]: r for r in open_store(out).rows()}
    assert rows[killed["key"]]["status"] == "oom" and "SIGKILL" in rows[killed["key"]]["error"]
    assert sorted(r["status"] for k, r in rows.items() if k != killed["key"]) == ["ok", "ok"]


@pytest.mark.slow
def test_ctrl_c_stops_at_once_and_the_interrupted_trial_reruns(tmp_path, glue_dir):
    p = write_sweep(tmp_path, glue_dir, {"methods": ["lora"], "lr": [1e-3, 3e-3, 1e-2]}, steps=300, eval_every=300)
    out = tmp_path / "S"
    cmd = [sys.executable, "-m", "lorabench.cli", "sweep", str(p), "-o", str(out), "-q", "--fuse", "1"]
    # a shell's background job starts with SIGINT ignored, and Python then never raises KeyboardInterrupt: give the
    # sweep a terminal's default, as when a user presses Ctrl-C
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while time.time() < deadline:
        time.sleep(0.3)
        try:
            # any claimed trial, loading or training: a 300-step trial can train between two polls on a fast machine
            started = (out / "sweep.db").is_file() and any(r["status"] == "running" for r in open_store(out).rows())
        except sa.exc.OperationalError:  # the sweep is still creating its store's tables
            started = False
        if started:
            break
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "run the same command again to resume" in err and "Traceback" not in err, err
    rows = open_store(out).rows()
    assert not any(r["status"] == "running" for r in rows)  # the interrupted trial is pending again
    assert sum(r["status"] == "pending" for r in rows) >= 2 and sum(r["attempts"] for r in rows) == 1  # nothing else started
    assert run_sweep(load_sweep(p), out, progress=False) == {"ok": 3}


def test_a_store_whose_tables_are_not_created_yet_reads_as_empty(tmp_path):
    """status/best in the first instant of a sweep: the sqlite file exists, its tables do not yet."""
    import sqlite3

    from lorabench.sweep.store import Store

    sqlite3.connect(tmp_path / "sweep.db").close()  # an empty database file
    store = Store(f"sqlite:///{tmp_path / 'sweep.db'}", read_only=True)
    assert store.rows() == [] and store.get_meta("schema_version") is None


def test_best_gives_each_sets_further_figures_over_the_best_seeds(tmp_path):
    """A code sweep's best row keeps HumanEval's plus beside its base (mean ± std over the best rate's seeds)."""
    from lorabench.sweep.store import Store, default_url

    (tmp_path / "S").mkdir()
    store = Store(default_url(tmp_path / "S"))
    runs = [(1e-3, 0, 0.30, 0.25), (1e-3, 1, 0.40, 0.35), (1e-2, 0, 0.10, 0.05)]
    specs = [TrialSpec(key=f"k{i}", group=json.dumps({"method": "lora"}), method="lora", lr=lr, seed=seed, axes={},
                       config={"steps": 1}) for i, (lr, seed, _, _) in enumerate(runs)]
    store.add(specs)
    for spec, (_, _, base, plus) in zip(specs, runs):
        assert store.claim(spec.key, "me")
        final = {"accuracy": base, "macro_f1": None, "sets": {"humaneval": base},
                 "details": {"humaneval": {"base": base, "plus": plus}}}
        store.finish(spec.key, "me", "ok", {"final": final, "train_seconds": 1.0, "peak_memory_mb": 1.0,
                                                 "memory_kind": "rss", "trainable_params": 1, "fused": 1}, None)
    (t,) = best(store)["table"]
    assert t["best_lr"] == 1e-3 and t["details"]["humaneval"]["plus"]["mean"] == pytest.approx(0.30)
    assert t["details"]["humaneval"]["plus"]["std"] == pytest.approx(0.0707, abs=1e-4)
    text = format_best(best(store))
    assert "humaneval plus" in text and "0.3000 ± 0.0707" in text
