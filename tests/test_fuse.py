"""Fused training: each of K runs trained through one forward/backward equals the same run alone."""

from __future__ import annotations

import json

import pytest
import torch

from lorabench import load_config, run
from lorabench.errors import ConfigError
from lorabench.fuse import Fused, fuse_key, share_frozen
from lorabench.methods import get_method
from lorabench.prepare import prepare
from lorabench.runner import run_group
from lorabench.train import logits_of


pytestmark = pytest.mark.usefixtures("one_thread")


def config(head, glue_dir, tiny_bert_dir, *sets: str):
    model = [f"model.name={tiny_bert_dir}", "model.head=cls"] if head == "cls" else \
        ["model.name=tiny-llama", "model.max_length=48"]
    return load_config(None, [*model, f"data.dir={glue_dir}", "data.n_train=200", "data.n_eval=32", "steps=16",
                              "batch_size=4", "grad_accum=2", "eval_every=8", "warmup_steps=2",
                              "max_grad_norm=null", "save_adapter=false", *sets])


def prepare_widths(cfg, step: int) -> list[int]:
    """The widths of a run's micro-batches at optimizer step ``step`` (0-based), as the loop collates them."""
    from lorabench import data as D
    from lorabench.prepare import train_order

    p = prepare(cfg)
    order = train_order(p.train, cfg)
    for _ in range(step):
        next(order)
    idx = next(order)
    return [D.collate(p.train, idx[j : j + cfg.batch_size], p.tokenizer.pad_token_id)["input_ids"].shape[1]
            for j in range(0, len(idx), cfg.batch_size)]


def losses(folder) -> list[float]:
    return [json.loads(x)["loss"] for x in (folder / "metrics.jsonl").read_text().splitlines()]


def assert_same(fused: dict, alone: dict, fused_dir, alone_dir) -> None:
    assert fused["status"] == alone["status"] and fused["steps_done"] == alone["steps_done"]
    a, b = losses(fused_dir), losses(alone_dir)
    assert len(a) == len(b)
    if alone["status"] == "diverged":  # the diverging step's loss has blown up: compare the steps before it
        a, b = a[:-1], b[:-1]
    assert a == pytest.approx(b, rel=1e-4)
    if alone["status"] == "ok":
        assert fused["final"] == alone["final"] and fused["tokens_seen"] == alone["tokens_seen"]


@pytest.mark.parametrize("head,method", [("cls", "lora"), ("lm", "lora"), ("cls", "dora"), ("lm", "loraplus")])
def test_fused_runs_equal_the_same_runs_alone(head, method, varied_glue_dir, tiny_bert_dir, tmp_path):
    """Different learning rates and seeds in one group, on sentences of varied lengths (so the seeds' micro-batches
    have different widths). On the classifier, lr = 30 diverges and is dropped while the others go on (the tiny
    random Llama's loss saturates instead of diverging)."""
    variants = [["lr=3e-3"], ["lr=1e-2"], ["lr=3e-3", "seed=1"]] + ([["lr=30"]] if head == "cls" else [])
    cfgs = [config(head, varied_glue_dir, tiny_bert_dir, f"method={method}", *v) for v in variants]
    assert len({fuse_key(c) for c in cfgs}) == 1
    widths = [[prepare_widths(c, step) for c in (cfgs[0], cfgs[2])] for step in range(3)]
    assert any(w0 != w1 for w0, w1 in widths)  # the two seeds' micro-batches differ in width
    dirs = [tmp_path / f"fused{i}" for i in range(len(cfgs))]
    fused = run_group(cfgs, dirs, progress=False, log=lambda m: None)
    assert [r["status"] for r in fused] == ["ok", "ok", "ok", "diverged"][: len(cfgs)]
    assert fused[0]["fused"] == len(cfgs)
    for i, cfg in enumerate(cfgs):
        alone = run(cfg, tmp_path / f"alone{i}", progress=False, log=lambda m: None)
        assert alone["fused"] == 1
        assert_same(fused[i], alone, dirs[i], tmp_path / f"alone{i}")
    assert fused[0]["final"] != fused[1]["final"] or losses(dirs[0]) != losses(dirs[1])


def test_plain_lora_layers_share_one_base_product(glue_dir, tiny_bert_dir):
    cfgs = [config("cls", glue_dir, tiny_bert_dir, f"lr={lr}") for lr in (1e-3, 2e-3)]
    ps = [prepare(c) for c in cfgs]
    share_frozen(ps[0].model, ps[1].model)
    fused = Fused([p.model for p in ps], get_method("lora").fusion)
    lin = [m for n, m in ps[1].model.named_modules() if n.endswith("attention.self.query")][0]
    lin0 = [m for n, m in ps[0].model.named_modules() if n.endswith("attention.self.query")][0]
    assert lin.base_layer.weight is lin0.base_layer.weight  # one frozen copy
    assert len(fused.fast) == sum(1 for n, m in ps[0].model.named_modules() if hasattr(m, "lora_A"))
    # routed output = each model's own output on its rows
    batch = {"input_ids": torch.randint(5, 50, (3, 7)), "attention_mask": torch.ones(3, 7, dtype=torch.long)}
    for p in ps:
        p.model.eval()
        with torch.no_grad():
            p.model.base_model.model.classifier.modules_to_save["default"].weight.normal_()
            for n, q in p.model.named_parameters():
                if "lora_B" in n:
                    q.normal_()
    with torch.no_grad():
        want = torch.cat([p.model(**batch).logits for p in ps])
        with fused.routing():
            got = logits_of(fused, {k: v.repeat(2, 1) for k, v in batch.items()}, [3, 3], [0, 1])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(want[:3], want[3:])


def test_what_cannot_fuse(glue_dir, tiny_bert_dir, tmp_path):
    base = config("cls", glue_dir, tiny_bert_dir)
    assert fuse_key(base) == fuse_key(config("cls", glue_dir, tiny_bert_dir, "lr=1", "seed=3"))
    assert fuse_key(base) != fuse_key(config("cls", glue_dir, tiny_bert_dir, "rank=4"))
    assert fuse_key(config("cls", glue_dir, tiny_bert_dir, "dropout=0.1")) is None
    assert fuse_key(config("cls", glue_dir, tiny_bert_dir, "base_dropout=true")) is None
    with pytest.raises(ConfigError, match="cannot be fused"):
        run_group([base, config("cls", glue_dir, tiny_bert_dir, "steps=3")], [tmp_path / "a", tmp_path / "b"])
    assert not (tmp_path / "a").exists()
