"""Seeds where they matter (``seeds_at_best``) and the final pass (``final:``): each best setting trained again alone
and reported on every row of its validation and test splits."""

from __future__ import annotations

import json

import pytest
import yaml

from lorabench.errors import ConfigError
from lorabench.sweep import load_sweep, run_sweep
from lorabench.sweep.strategies import adaptive, at_best, grid
from lorabench.sweep.summary import best, format_best, open_store
from lorabench.sweep.space import TrialSpec

from .test_sweep import write_sweep


def _spec(lr: float, seed: int, group: str = "g", axes: dict | None = None) -> TrialSpec:
    return TrialSpec(key=f"{group}-{lr}-{seed}-{json.dumps(axes or {})}", group=group, method="m", lr=lr, seed=seed,
                     axes=axes or {}, config={})


def _ok(acc: float, loss: float = 1.0) -> dict:
    return {"status": "ok", "result": {"final": {"accuracy": acc}, "train_loss_last": loss}}


def _settle(propose, specs, score) -> dict:
    """Run the proposals to a fixed point, each trial scored by ``score(spec)``."""
    done: dict = {}
    while todo := [s for s in propose(specs, done) if s.key not in done]:
        for s in todo:
            done[s.key] = _ok(score(s))
    return done


def test_extra_seeds_run_only_at_the_best_rate_once_the_first_seed_has_run_everywhere():
    lrs = [1.0, 2.0, 3.0, 4.0]
    specs = [_spec(lr, seed) for lr in lrs for seed in (0, 1, 2)]
    propose = at_best(grid, {1, 2})
    first = propose(specs, {})
    assert sorted((s.lr, s.seed) for s in first) == [(lr, 0) for lr in lrs]  # nothing extra before the scores
    acc = {1.0: 0.6, 2.0: 0.7, 3.0: 0.9, 4.0: 0.8}
    done = {s.key: _ok(acc[s.lr]) for s in first[:-1]}
    assert propose(specs, done) == first  # one first-seed trial still missing: still no extra seeds
    done = _settle(propose, specs, lambda s: acc[s.lr])
    assert sorted((s.lr, s.seed) for s in specs if s.key in done) == [(1.0, 0), (2.0, 0), (3.0, 0), (3.0, 1), (3.0, 2),
                                                                       (4.0, 0)]
    assert propose(specs, done) == propose(specs, dict(reversed(list(done.items()))))  # a function of the results


def test_when_the_extra_seeds_move_the_best_that_rate_gets_them_too():
    """Seed 0 at lr 3 was lucky; with three seeds its mean falls below lr 4's single seed, so lr 4 gets seeds
    1 and 2 as well, and the proposal settles where the mean over seeds is best."""
    specs = [_spec(lr, seed) for lr in (1.0, 3.0, 4.0) for seed in (0, 1, 2)]
    table = {(1.0, 0): 0.5, (3.0, 0): 0.95, (3.0, 1): 0.70, (3.0, 2): 0.70, (4.0, 0): 0.85, (4.0, 1): 0.84,
             (4.0, 2): 0.86}
    done = _settle(at_best(grid, {1, 2}), specs, lambda s: table[(s.lr, s.seed)])
    assert sorted((s.lr, s.seed) for s in specs if s.key in done) == sorted(
        [(1.0, 0), (3.0, 0), (3.0, 1), (3.0, 2), (4.0, 0), (4.0, 1), (4.0, 2)])


def test_extra_seeds_follow_a_two_rate_point_and_each_group_on_its_own():
    specs = [_spec(1.0, seed, "a", {"lr_b": b}) for b in (1.0, 4.0) for seed in (0, 1)]
    specs += [_spec(lr, seed, "b") for lr in (1.0, 2.0) for seed in (0, 1)]
    acc = {("a", 1.0): 0.6, ("a", 4.0): 0.9, ("b", 1.0): 0.8, ("b", 2.0): 0.7}
    done = _settle(at_best(grid, {1}), specs, lambda s: acc[(s.group, s.axes.get("lr_b", s.lr))])
    extra = sorted((s.group, s.axes.get("lr_b"), s.lr) for s in specs if s.key in done and s.seed == 1)
    assert extra == [("a", 4.0, 1.0), ("b", None, 1.0)]


def test_adaptive_with_extra_seeds_still_visits_its_own_points_first():
    lrs = [float(i + 1) for i in range(6)]
    specs = [_spec(lr, seed) for lr in lrs for seed in (0, 1)]
    done = _settle(at_best(adaptive, {1}), specs, lambda s: 0.9 - 0.1 * abs(s.lr - 5.0))
    runs = sorted((s.lr, s.seed) for s in specs if s.key in done)
    assert runs == [(2.0, 0), (4.0, 0), (5.0, 0), (5.0, 1)]  # coarse 2, 5; refined 4; extra seed at 5


def test_a_seed_in_both_lists_is_refused(tmp_path, glue_dir):
    with pytest.raises(ConfigError, match="seeds_at_best: seed 0 is already in seeds"):
        load_sweep(write_sweep(tmp_path, glue_dir, {"methods": ["lora"], "lr": [1e-3], "seeds": [0],
                                                   "seeds_at_best": [0, 1]}))


@pytest.mark.slow
def test_final_pass_reports_each_best_setting_on_every_row(tmp_path, glue_dir, trials_in_process):
    """The sweep scores 16 of the 64 dev rows; the final pass retrains each best alone and scores all 64 dev rows
    and a test split the trials never saw; `best` shows both, and a resumed sweep does not retrain."""
    path = write_sweep(tmp_path, glue_dir, {"methods": ["lora", "init_b"], "lr": [1e-3, 1e-2], "seeds": [0],
                                            "seeds_at_best": [1]})
    raw = yaml.safe_load(path.read_text())
    raw["set"]["data"]["n_eval"] = 16
    raw["final"] = {"data": {"n_eval": None, "test": {"path": "dev.tsv", "split": "test"}}}
    path.write_text(yaml.safe_dump(raw))
    sweep = load_sweep(path)
    assert run_sweep(sweep, tmp_path / "S", progress=False) == {"ok": 6}  # 2 methods x 2 rates + 1 seed at each best
    store = open_store(tmp_path / "S")
    table = {t["method"]: t for t in best(store)["table"]}
    for method, t in table.items():
        assert t["seeds"] == 2
        fp = t["final_pass"]
        assert fp["n"] == {"validation": 64, "test": 64}
        result = _final_result(tmp_path / "S", method)
        assert result["config"]["lr"] == t["best_lr"] and result["config"]["data"]["n_eval"] is None
        assert fp["validation"]["accuracy"] == result["final"]["accuracy"]
        assert fp["held_out"]["test"]["accuracy"] == result["held_out"]["test"]["accuracy"]
        # the test split here is the dev file: the same rows, the same figure
        assert fp["held_out"]["test"]["accuracy"] == pytest.approx(fp["validation"]["accuracy"])
        assert t["cost_source"] == "cost pass" and t["train_seconds"] == result["train_seconds"]
        assert len((tmp_path / "S" / "final" / result["_key"] / "predictions.jsonl").read_text().splitlines()) == 64
    text = format_best(best(store))
    assert "final val (64)" in text and "final test (64)" in text and "the final pass" in text
    before = sorted(p.name for p in (tmp_path / "S" / "final").iterdir())
    run_sweep(sweep, tmp_path / "S", progress=False)
    assert sorted(p.name for p in (tmp_path / "S" / "final").iterdir()) == before


def _final_result(sweep_dir, method: str) -> dict:
    for folder in (sweep_dir / "final").iterdir():
        result = json.loads((folder / "result.json").read_text())
        if result["config"]["method"] == method:
            return {**result, "_key": folder.name}
    raise AssertionError(f"no final run of {method}")
