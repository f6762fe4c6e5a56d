"""The Hessian's extreme eigenvalues: against the dense Hessian, symmetry, token weighting, CLI and sweeps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch.func import functional_call
from typer.testing import CliRunner

from lorabench import data as D
from lorabench.cli import app
from lorabench.config import validate
from lorabench.hessian import (BlockOperator, HessianConfig, Objective, hessian_batches, measure_prepared,
                               select_blocks)
from lorabench.prepare import prepare
from lorabench.sweep import best, format_best, load_sweep, open_store, run_sweep
from lorabench.losses import loss_sum

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ragged_dir(tmp_path_factory) -> Path:
    """Sentences of 1 to 12 words, so batches hold different numbers of loss tokens."""
    words = "the film is a very good and moving story with great acting".split()
    rows = [(" ".join(words[: 1 + i % 12]), i % 2) for i in range(48)]
    folder = tmp_path_factory.mktemp("ragged")
    for name in ("train.tsv", "dev.tsv"):
        (folder / name).write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows), encoding="utf-8")
    return folder


def bert(glue_dir: Path, tiny_bert_dir: Path, **over):
    return validate({"model": {"name": str(tiny_bert_dir), "head": "cls", "max_length": 32},
                     "data": {"dir": str(glue_dir), "n_train": 64, "n_eval": 8}, "rank": 1,
                     "target_modules": ["query"], "batch_size": 4, "device": "cpu", **over})


def llama(data_dir: Path, **over):
    return validate({"model": {"name": "tiny-llama", "head": "lm", "max_length": 32},
                     "data": {"dir": str(data_dir), "n_train": 48, "n_eval": 8}, "rank": 1,
                     "target_modules": ["q_proj"], "batch_size": 4, "device": "cpu", **over})


def reference_loss(p, names: list[str], samples: int):
    """The training objective written out on one batch of all ``samples`` examples: Σ terms / number of terms."""
    idx = next(D.train_order(len(p.train), len(p.train), p.cfg.seed))[:samples]
    b = D.collate(p.train, idx, p.tokenizer.pad_token_id)
    shapes = [dict(p.model.named_parameters())[n].shape for n in names]

    def f(flat: torch.Tensor) -> torch.Tensor:
        chunks = flat.split([s.numel() for s in shapes])
        over = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes)}
        logits = functional_call(p.model, over, (), {"input_ids": b["input_ids"],
                                                     "attention_mask": b["attention_mask"]}).logits
        if p.cfg.model.head == "cls":
            return F.cross_entropy(logits, b["labels"])
        keep = b["attention_mask"][:, 1:].bool()
        return F.cross_entropy(logits[:, :-1][keep], b["input_ids"][:, 1:][keep])

    flat0 = torch.cat([dict(p.model.named_parameters())[n].detach().reshape(-1) for n in names])
    return f, flat0


def test_eigenvalues_match_the_dense_hessian(glue_dir, tiny_bert_dir):
    p = prepare(bert(glue_dir, tiny_bert_dir, method="pissa"), attn_implementation="eager")
    hcfg = HessianConfig(samples=8, batch_size=3, tol=1e-8, layers=[0], whole=True)
    r = measure_prepared(p, hcfg)
    assert [b["block"] for b in r["blocks"]] == ["layer 0 attention.self.query", "whole"]
    assert r["samples"] == 8 and r["loss_terms"] == 8
    for got, block in zip(r["blocks"], select_blocks(p.model, hcfg)):
        f, flat0 = reference_loss(p, [n for n, _ in block.params], 8)
        H = torch.autograd.functional.hessian(f, flat0, vectorize=True).double().numpy()
        ev = np.linalg.eigvalsh((H + H.T) / 2)
        assert got["params"] == flat0.numel() == {"whole": 128}.get(got["block"], 64)
        assert ev[0] < 0 < ev[-1]  # indefinite at init
        assert got["lambda_max"] == pytest.approx(ev[-1], rel=1e-3)
        assert got["lambda_min"] == pytest.approx(ev[0], rel=1e-3)
        assert got["max"]["converged"] and got["min"]["converged"] and got["max"]["solver"] == "lanczos"
        assert got["max"]["history"][-1][0] == got["max"]["hvps"]
        assert got["max"]["history"][-1][1] == pytest.approx(ev[-1], rel=1e-3)  # the Ritz estimates converged too
        assert got["max"]["residual"] < 1e-3 * abs(ev[-1]) and got["min"]["hvps"] == got["max"]["hvps"]
    assert r["lambda_max"] == r["blocks"][-1]["lambda_max"] and r["summary_block"] == "whole"


def test_dora_block_is_lora_a_and_b_unless_magnitude_is_asked(glue_dir, tiny_bert_dir):
    """The study's block is one module's lora_A and lora_B; DoRA's magnitude m joins it only on request."""
    p = prepare(bert(glue_dir, tiny_bert_dir, method="dora"), attn_implementation="eager")
    plain = select_blocks(p.model, HessianConfig(layers=[0]))[0]
    assert sorted(n.rsplit(".", 2)[0].rsplit(".", 1)[-1] for n, _ in plain.params) == ["lora_A", "lora_B"]
    assert plain.size == 64
    with_m = select_blocks(p.model, HessianConfig(layers=[0], magnitude=True))[0]
    assert with_m.size == 64 + 32 and any("lora_magnitude_vector" in n for n, _ in with_m.params)
    r = measure_prepared(p, HessianConfig(samples=8, batch_size=3, tol=1e-8, layers=[0]))
    f, flat0 = reference_loss(p, [n for n, _ in plain.params], 8)
    ev = np.linalg.eigvalsh(torch.autograd.functional.hessian(f, flat0, vectorize=True).double().numpy())
    assert r["blocks"][0]["params"] == 64 and r["lambda_max"] == pytest.approx(ev[-1], rel=1e-3)


def test_hvp_is_symmetric_token_weighted_and_independent_of_batching(ragged_dir):
    p = prepare(llama(ragged_dir), attn_implementation="eager")
    p.model.eval()
    block = select_blocks(p.model, HessianConfig(whole=False))[0]
    assert block.name == "layer 0 self_attn.q_proj"
    small = Objective(p.model, hessian_batches(p, 12, 2), "lm", cache=False)
    big = Objective(p.model, hessian_batches(p, 12, 12), "lm", cache=True)
    counts = [int(b["attention_mask"][:, 1:].sum()) for b in small.batches]
    assert len(set(counts)) > 1  # batches of different token counts: weighting matters
    f, flat0 = reference_loss(p, [n for n, _ in block.params], 12)
    ref = float(f(flat0).detach())
    assert small.loss() == pytest.approx(ref, rel=1e-5) and big.loss() == pytest.approx(ref, rel=1e-5)
    with torch.no_grad():
        means = [float(loss_sum(p.model, b, "lm")) / n for b, n in zip(small.batches, counts)]
    assert abs(np.mean(means) - ref) > 1e-4  # a mean of per-batch means would differ

    op_small, op_big = BlockOperator(small, block), BlockOperator(big, block)
    rng = np.random.default_rng(0)
    v, w = rng.standard_normal(op_small.n), rng.standard_normal(op_small.n)
    hv, hw = op_small(v), op_small(w)
    assert w @ hv == pytest.approx(v @ hw, rel=1e-5)  # vᵀHw = wᵀHv
    np.testing.assert_allclose(op_big(v), hv, rtol=1e-4, atol=1e-6 * np.abs(hv).max())
    np.testing.assert_allclose(op_big(w), hw, rtol=1e-4, atol=1e-6 * np.abs(hw).max())  # a second product, same graphs
    assert big.cached and not small.cached
    ref_hv = torch.autograd.functional.hvp(f, flat0, torch.as_tensor(v, dtype=torch.float32))[1].double().numpy()
    np.testing.assert_allclose(hv, ref_hv, rtol=1e-4, atol=1e-5 * np.abs(ref_hv).max())


def test_cli_writes_the_result_and_rejects_bad_input(tmp_path, glue_dir):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"name": "tiny-llama", "max_length": 48},
                                   "data": {"dir": str(glue_dir), "n_train": 40, "n_eval": 8},
                                   "rank": 1, "target_modules": ["q_proj"], "device": "cpu"}))
    out = tmp_path / "h.json"
    runner = CliRunner()
    res = runner.invoke(app, ["hessian", str(cfg), "--set", "method=pissa", "--samples", "4", "--layers", "1",
                              "--modules", "q_proj", "--tol", "1e-4", "--whole", "-q", "-o", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    for key in ("method", "lambda_max", "lambda_min", "summary_block", "samples", "loss_terms", "loss", "blocks",
                "hvps", "seconds", "device", "dtype", "hessian", "config", "data_files"):
        assert key in r, key
    assert r["method"] == "pissa" and r["samples"] == 4 and r["hessian"]["layers"] == [1]
    assert [b["block"] for b in r["blocks"]] == ["layer 1 self_attn.q_proj", "whole"]
    for b in r["blocks"]:
        assert b["lambda_min"] <= b["lambda_max"] and b["max"]["converged"] and b["min"]["converged"]
        assert set(b) >= {"params", "parameters", "hvps", "seconds", "max", "min"}
    assert "layer 1 self_attn.q_proj  λ_max" in res.output and "s in all" in res.output
    for bad, says in ((["--layers", "x"], "layers.0: Input should be a valid integer"), (["--modules", "nope"], "modules: 'nope'"),
                      (["--layers", "7"], "no adapted layer 7"), (["--samples", "0"], "samples"),
                      (["--set", "rank=0"], "rank")):
        out2 = tmp_path / "bad.json"
        res = runner.invoke(app, ["hessian", str(cfg), *bad, "-o", str(out2), "-q"])
        assert res.exit_code == 2 and says in res.output and not out2.exists(), (bad, res.output)
        assert len(res.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_sweep_with_hessian_shows_lambda_max_in_best_and_resumes(tmp_path, glue_dir, monkeypatch):
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump({
        "base": str(ROOT / "configs/tiny-llama.yaml"),
        "set": {"steps": 2, "eval_every": 2, "save_adapter": False, "rank": 1, "target_modules": ["q_proj"],
                "model": {"max_length": 48}, "data": {"dir": str(glue_dir), "n_train": 40, "n_eval": 8}},
        "space": {"methods": ["lora", "pissa"], "lr": [1e-3], "rank": [1, 2]},
        "hessian": True, "hessian_config": {"samples": 4, "layers": [], "whole": True, "tol": 1e-3}}))
    s = load_sweep(p)
    assert run_sweep(s, tmp_path / "S", workers=2, progress=False) == {"ok": 4}
    b = best(open_store(tmp_path / "S"))
    stored = open_store(tmp_path / "S").get_meta("hessian")
    assert set(stored) == {json.dumps({"method": m, "rank": r}, sort_keys=True) for m in ("lora", "pissa")
                           for r in (1, 2)}  # keyed by group: each rank has its own λ_max
    for t in b["table"]:
        h = stored[json.dumps(t["group"], sort_keys=True)]
        assert t["lambda_max"] is not None and t["lambda_max"] == h["lambda_max"]
        assert h["summary_block"] == "whole" and h["samples"] == 4 and h["config"]["rank"] == t["group"]["rank"]
        assert h["blocks"][0]["params"] == 2 * 2 * 64 * t["group"]["rank"]  # A, B of q_proj in 2 layers, that rank
    assert "λ_max" in format_best(b)

    def boom(*a, **k):
        raise AssertionError("measured again")

    monkeypatch.setattr("lorabench.hessian.measure", boom)
    assert run_sweep(s, tmp_path / "S", progress=False) == {"ok": 4}  # resumed: nothing re-measured
