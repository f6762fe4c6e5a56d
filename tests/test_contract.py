"""The contract every registered method keeps (a new method is tested here without asking), on the tiny Llama:

1. at step 0 the adapted model computes what the base computes;
2. one optimizer step changes its output;
3. its saved adapter, loaded by plain PEFT onto an untouched base, reproduces the trained model's outputs;
4. trained fused with another run it equals the same run alone.
"""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel

import lorabench
from lorabench.train import save_adapter
from lorabench.losses import loss_sum, loss_tokens
from lorabench.prepare import prepare
from lorabench.runner import run_group

from .helpers import base_model, logits, tokens

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = lorabench.methods()


def test_every_method_is_covered():
    assert len(METHODS) == 14


def config(glue_dir, method: str, *sets: str):
    return lorabench.load_config(None, ["model.name=tiny-llama", "model.max_length=48", f"data.dir={glue_dir}",
                                        "data.n_train=64", "data.n_eval=16", "rank=4", "alpha=8", "steps=4",
                                        "batch_size=4", "eval_every=4", "max_grad_norm=null", "save_adapter=false",
                                        f"method={method}", "device=cpu", *sets])


def one_step(p) -> None:
    """One optimizer step of the run's own optimizer on its first batch."""
    batch = next(p_batches(p))
    p.model.train()
    (loss_sum(p.model, batch, "lm") / loss_tokens(batch, "lm")).backward()
    p.optimizer.step()
    p.optimizer.zero_grad(set_to_none=True)


def p_batches(p):
    from lorabench import data as D
    from lorabench.prepare import train_order

    for idx in train_order(p.train, p.cfg):
        yield D.collate(p.train, idx, p.tokenizer.pad_token_id)


@pytest.mark.parametrize("method", METHODS)
def test_step_0_equals_the_base_and_one_step_moves_it(method, glue_dir):
    p = prepare(config(glue_dir, method, "lr=1e-2"))
    x = tokens()
    before = logits(p.model, x)
    torch.testing.assert_close(before, logits(base_model(), x), atol=1e-4, rtol=1e-4)
    one_step(p)
    assert (logits(p.model, x) - before).abs().max() > 1e-5


@pytest.mark.parametrize("method", METHODS)
def test_saved_adapter_reloads_in_plain_peft_onto_the_base(method, glue_dir, tmp_path):
    p = prepare(config(glue_dir, method, "lr=1e-2"))
    for _ in range(2):  # both factors move (LoFT alternates)
        one_step(p)
    x = tokens(1)
    want = logits(p.model, x)
    save_adapter(p.model, str(tmp_path / "adapter"), p.cfg)  # as a run saves it
    conf = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert conf["peft_type"] and conf["base_model_name_or_path"] == "lorabench:tiny-llama"
    assert len(conf.get("modules_to_save") or []) == len(set(conf.get("modules_to_save") or []))
    assert f"# {method} adapter (lorabench)" in (tmp_path / "adapter" / "README.md").read_text()
    loaded = PeftModel.from_pretrained(base_model(), str(tmp_path / "adapter"))
    torch.testing.assert_close(logits(loaded, x), want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_fused_equals_alone(method, varied_glue_dir, tmp_path):
    cfgs = [config(varied_glue_dir, method, f"lr={lr}") for lr in (1e-3, 3e-3)]
    fused = run_group(cfgs, [tmp_path / "f0", tmp_path / "f1"], progress=False, log=lambda m: None)
    assert [r["fused"] for r in fused] == [2, 2]
    for i, cfg in enumerate(cfgs):
        (alone,) = run_group([cfg], [tmp_path / f"a{i}"], progress=False, log=lambda m: None)
        assert fused[i]["status"] == alone["status"] == "ok"
        assert fused[i]["final"] == alone["final"]
        rows = [[json.loads(x)["loss"] for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
                for d in (f"f{i}", f"a{i}")]
        assert rows[0] == pytest.approx(rows[1], rel=1e-4)
