"""A sweep's held-out split only where it is reported: trials defer it, the held-out pass evaluates each group's
best seeds from their kept parameters, to the same figures as an in-run evaluation."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from lorabench.config import validate
from lorabench.runner import run
from lorabench.sweep import best, load_sweep, open_store, run_sweep

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def with_test(glue_dir, tmp_path):
    folder = tmp_path / "glue"
    shutil.copytree(glue_dir, folder)
    (folder / "test.tsv").write_text((folder / "dev.tsv").read_text().replace("\t0\n", "\t1\n", 5))
    return folder


def _sweep(tmp_path, data_dir, tiny_bert_dir):
    cfg = {"base": {"model": {"name": str(tiny_bert_dir), "head": "cls", "max_length": 32},
                    "data": {"dir": str(data_dir), "n_train": 64, "n_eval": 16, "test": {"path": "test.tsv"}},
                    "rank": 2, "target_modules": ["query", "value"], "batch_size": 4, "steps": 6, "eval_every": 6,
                    "device": "cpu", "save_adapter": False},
           "space": {"methods": ["lora", "pissa"], "lr": [1e-3, 3e-2], "seeds": [0, 1]}}
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_test_split_is_evaluated_only_at_each_best_and_equals_the_in_run_figure(tmp_path, with_test, tiny_bert_dir,
                                                                               trials_in_process, monkeypatch):
    p = _sweep(tmp_path, with_test, tiny_bert_dir)
    run_sweep(load_sweep(p), tmp_path / "S", progress=False, fuse=1, costs=False)
    store = open_store(tmp_path / "S")
    b = best(store)
    rows = store.rows()
    at_best = {(t["method"], t["best_lr"]) for t in b["table"]}
    for r in rows:
        res = r["result"]
        folder = tmp_path / "S" / "trials" / r["key"]
        if (r["method"], r["lr"]) in at_best:
            assert set(res["held_out"]) == {"test"} and res["held_out_deferred"] == [] and res["held_out_pass"]
            assert len((folder / "predictions.test.jsonl").read_text().splitlines()) == 64
            assert json.loads((folder / "result.json").read_text())["held_out"] == res["held_out"]
        else:  # not computed, and said so
            assert res["held_out"] == {} and res["held_out_deferred"] == ["test"]
            assert not (folder / "predictions.test.jsonl").exists()
        assert (folder / "trainable.safetensors").is_file()
    for t in b["table"]:  # best's test column: the seeds at the best point, as before
        tests = [r["result"]["held_out"]["test"]["accuracy"] for r in rows
                 if r["method"] == t["method"] and r["lr"] == t["best_lr"]]
        assert len(tests) == 2 and t["test"]["mean"] == pytest.approx(sum(tests) / 2)
    # the same trial trained alone, evaluating its test split in-run: the same figures
    r = next(r for r in rows if (r["method"], r["lr"]) in at_best and r["method"] == "pissa")
    alone = run(validate(r["config"]), tmp_path / "alone", progress=False, log=lambda m: None)
    assert alone["held_out"]["test"] == r["result"]["held_out"]["test"]
    # a resume evaluates nothing again
    import lorabench.runner as runner

    monkeypatch.setattr(runner, "evaluate_kept", lambda *a, **k: pytest.fail("evaluated again"))
    run_sweep(load_sweep(p), tmp_path / "S", progress=False, fuse=1, costs=False)
