"""Learning rates predicted from λ_max: the window strategy, the exponent fit, bad λ, LoRA+'s scaled Hessian,
``best``'s prediction columns, ``suggest-lr`` and a resumed hessian sweep."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from lorabench.errors import ConfigError
from lorabench.sweep import best, format_best, load_sweep, open_store, run_sweep
from lorabench.sweep.prediction import check_lambda, fit_exponent, grid_steps, nearest_index, predict_lr
from lorabench.sweep.space import TrialSpec
from lorabench.sweep.strategies import hessian

from .test_sweep import write_sweep

LRS = [10 ** (-5 + i / 2) for i in range(12)]  # 1e-5 … 3.2e-0, two per decade


def _group(method: str) -> str:
    return json.dumps({"method": method})


def _specs(methods: list[str], seeds: tuple[int, ...] = (0,)) -> list[TrialSpec]:
    return [TrialSpec(key=f"{m}-{i}-{s}", group=_group(m), method=m, lr=lr, seed=s, axes={}, config={})
            for m in methods for i, lr in enumerate(LRS) for s in seeds]


def _drive(propose, specs: list[TrialSpec], peak: dict[str, int]) -> dict:
    """Run the strategy to the end on unimodal curves peaking at index ``peak[method]``."""
    done: dict = {}
    while todo := [s for s in propose(specs, done) if s.key not in done]:
        for s in todo:
            acc = 0.9 - 0.05 * abs(LRS.index(s.lr) - peak[s.method])
            done[s.key] = {"status": "ok", "result": {"final": {"accuracy": acc}, "train_loss_last": 1.0}}
    return done


def _ran(done: dict, method: str) -> list[int]:
    return sorted({int(k.split("-")[1]) for k in done if k.startswith(f"{method}-")})


@pytest.mark.parametrize(("predicted_at", "peak", "expected"), [
    (5, 5, [4, 5, 6]),  # prediction right: the window and nothing more
    (5, 6, [4, 5, 6, 7]),  # one step off: the best is on the edge, one more point makes it interior
    (5, 9, [4, 5, 6, 7, 8, 9, 10]),  # far off: extended until the best is interior
    (0, 0, [0, 1]),  # at the grid's lower end: nothing below to add
    (10, 11, [9, 10, 11]),  # best on the grid's upper end: the grid ends, so does the window
    (1, 11, list(range(12))),  # all the way
])
def test_the_window_and_its_extension(predicted_at, peak, expected):
    lam_ref = 1.0
    lam = lam_ref * LRS[3] / LRS[predicted_at]  # λ_ref / λ = lr_m / lr_ref, with the reference's best at index 3
    propose = hessian({_group("lora"): lam_ref, _group("pissa"): lam}, reference="lora")
    done = _drive(propose, _specs(["lora", "pissa"]), {"lora": 3, "pissa": peak})
    assert _ran(done, "lora") == list(range(12))  # the reference runs its whole grid
    assert _ran(done, "pissa") == expected
    found = max((k for k in done if k.startswith("pissa")), key=lambda k: done[k]["result"]["final"]["accuracy"])
    assert int(found.split("-")[1]) == peak


def test_m_methods_cost_n_plus_three_per_other_method_and_every_seed_runs():
    methods = ["lora", "pissa", "olora", "dora"]
    lams = {"lora": 1.0, "pissa": 10.0, "olora": 100.0, "dora": 1.0}  # predicted 2 and 4 steps lower, and equal
    peak = {"lora": 8, "pissa": 6, "olora": 4, "dora": 8}
    propose = hessian({_group(m): v for m, v in lams.items()}, reference="lora")
    done = _drive(propose, _specs(methods, seeds=(0, 1)), peak)
    assert len(done) == 2 * (12 + 3 * 3)  # n + 3(M − 1) rates, each with both seeds
    assert {k.rsplit("-", 1)[1] for k in done} == {"0", "1"}
    assert _ran(done, "olora") == [3, 4, 5]


def test_other_groups_wait_for_the_reference_and_the_proposal_is_a_function_of_the_results():
    specs = _specs(["lora", "pissa"])
    propose = hessian({_group("lora"): 1.0, _group("pissa"): 2.0}, reference="lora", reference_search="adaptive")
    first = propose(specs, {})
    assert {s.method for s in first} == {"lora"} and len(first) == 4  # adaptive: 4 coarse points of 12
    done = {s.key: {"status": "ok", "result": {"final": {"accuracy": 0.5 + 0.01 * LRS.index(s.lr)},
                                               "train_loss_last": 1.0}} for s in first}
    assert [s.key for s in propose(specs, done)] == [s.key for s in propose(specs, dict(done))]  # a resume: the same


@pytest.mark.parametrize("peak", range(12))
def test_an_adaptive_reference_climbs_to_its_peak(peak):
    """Adaptive's coarse points and refinement, then the best's unexplored neighbours until it has none: on a
    unimodal curve the reference's rate, which scales every prediction, is its true peak."""
    propose = hessian({_group("lora"): 1.0}, reference="lora", reference_search="adaptive")
    done = _drive(propose, _specs(["lora"]), {"lora": peak})
    found = max(done, key=lambda k: done[k]["result"]["final"]["accuracy"])
    assert int(found.split("-")[1]) == peak and len(done) <= 8


def test_a_reference_outside_the_methods_is_one_line_and_no_folder(tmp_path, glue_dir):
    p = write_sweep(tmp_path, glue_dir, {"methods": ["pissa", "olora"], "lr": [1e-3, 1e-2]})
    p.write_text(p.read_text() + "strategy: hessian\n")
    with pytest.raises(ConfigError, match=r"prediction.reference: 'lora' is not among space.methods") as e:
        run_sweep(load_sweep(p), tmp_path / "S", progress=False)
    assert "\n" not in str(e.value) and not (tmp_path / "S").exists()


@pytest.mark.parametrize("bad", [0.0, -3.5e-4, math.nan, math.inf, None, "x"])
def test_a_lambda_that_is_not_positive_and_finite_is_one_line_naming_method_and_block(bad):
    with pytest.raises(ConfigError) as e:
        check_lambda("lora_xs", "layer 0 attention.self.query", bad)
    msg = str(e.value)
    assert "\n" not in msg and "lora_xs" in msg and "layer 0 attention.self.query" in msg and str(bad) in msg


def test_a_sweep_with_a_bad_stored_lambda_stops_with_one_line(tmp_path, glue_dir, monkeypatch):
    import lorabench.sweep.runner as runner

    s = load_sweep(write_sweep(tmp_path, glue_dir, {"methods": ["lora", "pissa"], "lr": [1e-3, 1e-2]}),
                   {})
    s.cfg.strategy = "hessian"

    def fake(sweep, store, hcfg, **_):
        return {t.group: {"lambda_max": 0.0 if t.method == "pissa" else 1.0, "summary_block": "layer 0 q_proj"}
                for t in sweep.trials}

    monkeypatch.setattr(runner, "measure_hessians", fake)
    with pytest.raises(ConfigError, match=r"pissa: λ_max 0.0 of block 'layer 0 q_proj'"):
        run_sweep(s, tmp_path / "S", progress=False, costs=False)
    assert not open_store(tmp_path / "S").rows()  # nothing ran


def test_the_exponent_fit_is_linregress_on_logs():
    lams = [0.08, 1.1, 48.9, 3.0, 0.5]
    lrs = [1e-3, 1e-4, 1e-5, 5e-5, 2e-4]
    fit = fit_exponent(lams, lrs)
    ref = stats.linregress(np.log(lams), np.log(lrs))
    half = stats.t.ppf(0.975, 3) * ref.stderr
    assert fit is not None and fit.n == 5
    assert fit.exponent == pytest.approx(-ref.slope) and fit.intercept == pytest.approx(ref.intercept)
    assert fit.ci == pytest.approx((-ref.slope - half, -ref.slope + half))
    assert fit.r2 == pytest.approx(ref.rvalue ** 2)
    exact = fit_exponent([1.0, 10.0, 100.0], [1e-2, 1e-3, 1e-4])  # lr ∝ 1/λ exactly
    assert exact is not None and exact.exponent == pytest.approx(1.0) and exact.r2 == pytest.approx(1.0)
    assert fit_exponent([1.0], [1e-3]) is None and fit_exponent([2.0, 2.0], [1e-3, 1e-4]) is None
    two = fit_exponent([1.0, 10.0], [1e-2, 1e-3])
    assert two is not None and two.ci is None and two.r2 is None  # no interval from two points


def test_prediction_helpers():
    assert predict_lr(1e-3, 2.0, 20.0) == pytest.approx(1e-4)
    assert predict_lr(1e-3, 2.0, 20.0, exponent=0.5) == pytest.approx(1e-3 / math.sqrt(10))
    assert nearest_index(LRS, 2.9e-4) == 3 and nearest_index(LRS, 1e-9) == 0 and nearest_index(LRS, 1e3) == 11
    assert grid_steps(LRS, 1e-4, LRS[8]) == 6


def _store(tmp_path, rows: list[tuple[str, float, float]], lambdas: dict[str, float], strategy: str = "hessian"):
    """A store with one finished trial per (method, lr, accuracy), λ_max per method, and the sweep's space."""
    from lorabench.sweep.store import Store, default_url

    (tmp_path / "S").mkdir()
    store = Store(default_url(tmp_path / "S"))
    specs = [TrialSpec(key=f"k{i}", group=_group(m), method=m, lr=lr, seed=0, axes={}, config={"steps": 1})
             for i, (m, lr, _) in enumerate(rows)]
    store.add(specs)
    for spec, (_, _, acc) in zip(specs, rows):
        assert store.claim(spec.key, "me")
        store.finish(spec.key, "me", "ok", {"final": {"accuracy": acc, "macro_f1": acc}, "train_seconds": 1.0,
                                            "peak_memory_mb": 1.0, "memory_kind": "rss", "trainable_params": 1,
                                            "fused": 1}, None)
    methods = sorted({m for m, _, _ in rows})
    store.set_meta("hessian", {_group(m): {"lambda_max": v, "summary_block": "b"} for m, v in lambdas.items()})
    store.set_meta("strategy", strategy)
    store.set_meta("prediction", {"reference": "lora", "exponent": 1.0, "reference_search": "grid"})
    store.set_meta("grid_trials", {_group(m): 6 for m in methods})
    store.set_meta("sweep", {"sweep": {"space": {"methods": methods, "lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]}}})
    return store


def test_best_gives_the_prediction_how_far_it_was_and_the_fit(tmp_path):
    store = _store(tmp_path, [("lora", 1e-3, 0.80), ("lora", 3e-3, 0.85), ("lora", 1e-2, 0.70),
                              ("pissa", 1e-4, 0.70), ("pissa", 3e-4, 0.84), ("pissa", 1e-3, 0.80),
                              ("olora", 1e-2, 0.60), ("olora", 3e-2, 0.83)],
                   {"lora": 1.0, "pissa": 10.0, "olora": 100.0})
    b = best(store)
    t = {r["method"]: r for r in b["table"]}
    assert "prediction" not in t["lora"] and t["lora"]["grid_trials"] == 6
    p = t["pissa"]["prediction"]
    assert p["predicted_lr"] == pytest.approx(3e-4) and p["ratio"] == pytest.approx(1.0) and p["grid_steps"] == 0
    assert not p["far"]
    q = t["olora"]["prediction"]  # predicted 3e-5 (below the grid: nearest 1e-4), found 3e-2: 5 points above
    assert q["predicted_lr"] == pytest.approx(3e-5) and q["grid_steps"] == 5 and q["far"]
    fit = fit_exponent([1.0, 10.0, 100.0], [3e-3, 3e-4, 3e-2])
    got, want = b["exponent_fit"], fit.as_dict()  # type: ignore[union-attr]
    assert got["n"] == want["n"] and got["exponent"] == pytest.approx(want["exponent"])
    assert got["ci"] == pytest.approx(want["ci"]) and got["r2"] == pytest.approx(want["r2"])
    text = format_best(b)
    assert "olora: its best rate 0.03 is 5 grid steps above the prediction 3e-05" in text
    assert "trials: 8 of the full grid's 18 (44%)" in text and "3/6" in text
    assert "fitted exponent γ̂ = " in text and "R² " in text


def test_loraplus_is_measured_on_the_hessian_scaled_by_its_rates(glue_dir, tiny_bert_dir):
    """S^½ H S^½ with S = 1 on A and the ratio on B: the dense eigenvalues of that matrix, built from plain HVPs."""
    from lorabench.hessian import BlockOperator, HessianConfig, Objective, block_rates, hessian_batches, select_blocks
    from lorabench.prepare import prepare

    from .test_hessian import bert

    p = prepare(bert(glue_dir, tiny_bert_dir, method="loraplus", loraplus_ratio=9.0), attn_implementation="eager")
    p.model.float().eval()
    hcfg = HessianConfig(samples=8, batch_size=4, layers=[0])
    (block,) = select_blocks(p.model, hcfg)
    rates = block_rates(block, {"lora_B": 9.0})
    assert [r for (n, _), r in zip(block.params, rates) if "lora_B" in n] == [9.0]
    obj = Objective(p.model, hessian_batches(p, 8, 4), "cls", cache=False)
    H = BlockOperator(obj, block).dense()
    s = np.concatenate([np.full(prm.numel(), math.sqrt(r)) for (_, prm), r in zip(block.params, rates)])
    expected = np.linalg.eigvalsh(((H + H.T) / 2) * np.outer(s, s))
    scaled = BlockOperator(obj, block, rates).dense()
    assert np.linalg.eigvalsh((scaled + scaled.T) / 2) == pytest.approx(expected, rel=1e-4, abs=1e-7)
    # at init (B = 0) the top of the spectrum is the A–B cross block, which the scaling multiplies by √ratio
    assert expected[-1] == pytest.approx(3.0 * np.linalg.eigvalsh((H + H.T) / 2)[-1], rel=1e-3)


class _Diagonal:
    """A symmetric operator with known eigenvalues, in lanczos()'s interface."""

    def __init__(self, eigenvalues: np.ndarray) -> None:
        self.d, self.n, self.calls = eigenvalues, len(eigenvalues), 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.d * x


def test_lambda_max_alone_stops_sooner_and_agrees_within_tol():
    """A separated top eigenvalue converges in a few products, a clustered bottom one needs many more: asking for
    λ_max alone stops at the first, with λ_max as accurate."""
    from lorabench.hessian import lanczos

    d = np.concatenate([[10.0], np.linspace(0.0, 1.0, 200), np.linspace(-1.0, -0.98, 60)])
    hi_both, lo_both = lanczos(_Diagonal(d), tol=1e-6, maxiter=200)
    hi, lo = lanczos(_Diagonal(d), tol=1e-6, maxiter=200, lambda_min=False)
    assert hi_both["converged"] and lo_both["converged"] and hi["converged"]
    assert hi["hvps"] < lo_both["hvps"] and not lo["converged"]  # stopped before λ_min had converged
    assert hi["lambda"] == pytest.approx(10.0, rel=1e-6) and hi_both["lambda"] == pytest.approx(10.0, rel=1e-6)


@pytest.mark.slow
def test_a_hessian_sweep_measures_first_resumes_without_remeasuring_and_reports(tmp_path, glue_dir, monkeypatch,
                                                                                 trials_in_process):
    p = write_sweep(tmp_path, glue_dir, {"methods": ["lora", "pissa", "loraplus"], "lr": [1e-4, 1e-3, 1e-2, 1e-1, 1.0],
                                         "options": {"loraplus_ratio": [4]}})
    raw = p.read_text() + "strategy: hessian\nhessian_config: {samples: 16}\n"
    p.write_text(raw)
    s = load_sweep(p)
    run_sweep(s, tmp_path / "S", progress=False, costs=False)
    store = open_store(tmp_path / "S")
    rows = store.rows()
    measured = store.get_meta("hessian")
    assert set(measured) == {t.group for t in s.trials}  # λ_max of every group, kept with the trials
    loraplus = next(v for g, v in measured.items() if "loraplus" in g)
    assert loraplus["blocks"][0]["relative_rates"]  # measured on the rate-scaled Hessian
    assert len(rows) < len(s.trials)  # the other methods ran a window, not the grid
    # a resume proposes the same trials from the same results and measures nothing again
    import lorabench.hessian as H

    monkeypatch.setattr(H, "measure", lambda *a, **k: pytest.fail("measured again"))
    run_sweep(load_sweep(p), tmp_path / "S", progress=False, costs=False)
    again = open_store(tmp_path / "S").rows()
    assert sorted(r["key"] for r in again) == sorted(r["key"] for r in rows)
    assert all(r["attempts"] == 1 for r in again)
    b = best(open_store(tmp_path / "S"))
    assert b["strategy"] == "hessian" and b["grid_trials"] == len(s.trials)
    assert all("prediction" in t for t in b["table"] if t["method"] != "lora")
    from lorabench.report import write_report

    write_report(tmp_path / "S", tmp_path / "R")
    table = (tmp_path / "R" / "tables" / "lr_prediction.csv").read_text()
    assert "pissa" in table and "loraplus" in table and "predicted_lr" in table
    assert "Learning rates predicted from λ_max" in (tmp_path / "R" / "report.md").read_text()
    assert (tmp_path / "R" / "figures" / "best_lr_vs_lambda_max.png").is_file()


def test_suggest_lr_predicts_from_a_given_reference_rate(tmp_path, glue_dir, tiny_bert_dir):
    from typer.testing import CliRunner

    from lorabench.cli import app

    cfg = tmp_path / "run.yaml"
    cfg.write_text(json.dumps({"model": {"name": str(tiny_bert_dir), "head": "cls", "max_length": 32},
                               "data": {"dir": str(glue_dir), "n_train": 64, "n_eval": 8}, "rank": 1,
                               "target_modules": ["query"], "batch_size": 4, "device": "cpu"}))
    out = tmp_path / "s.json"
    r = CliRunner().invoke(app, ["suggest-lr", str(cfg), "--methods", "pissa,loraplus,loft", "--reference-lr", "1e-3",
                                 "--samples", "8", "-o", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    lam = {m["method"]: m["lambda_max"] for m in res["methods"]}
    assert set(lam) == {"lora", "pissa", "loraplus", "loft"}
    for m in res["methods"]:
        assert m["predicted_lr"] == pytest.approx(1e-3 * lam["lora"] / m["lambda_max"])
        assert m["block"] == "layer 0 attention.self.query"
    rules = {m["method"]: m["rule"] for m in res["methods"]}
    assert rules["loraplus"] == "scaled" and rules["loft"] == "approximate" and rules["pissa"] == "direct"
    assert "η_B" in r.output and "heuristic" in r.output and "s in all" in r.output
    bad = CliRunner().invoke(app, ["suggest-lr", str(cfg), "--methods", "pissa"])
    assert bad.exit_code == 2 and "--reference-lr or --from" in bad.output
