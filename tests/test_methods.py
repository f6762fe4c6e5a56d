"""Each method against its paper's formula, on a small random Llama (2 layers, width 64)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import PeftModel

import lorabench
from lorabench.errors import ConfigError
from lorabench.methods import ADAPTER, get_method
from lorabench.methods.layers import lora_layers

from .helpers import ALPHA, RANK, adapted, base_model, logits, original_weight, tokens, top_r


def test_registry_lists_the_five_study_methods():
    assert {"lora", "init_b", "lora_xs", "loraplus", "pissa"} <= set(lorabench.methods())


@pytest.mark.parametrize("method", ["lora", "init_b", "loraplus"])
def test_adapter_is_zero_at_step_0(method):
    ref, model = adapted(method)
    assert torch.equal(logits(model, tokens()), logits(ref, tokens()))


def test_lora_matches_formula_and_count():
    """h = W x + (α/r) B A x with B = 0 at init; trainable count = Σ r (d_in + d_out)."""
    ref, model = adapted("lora")
    expected = 0
    for name, layer in lora_layers(model):
        A, B = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
        assert torch.count_nonzero(B) == 0 and A.abs().sum() > 0
        expected += RANK * (A.shape[1] + B.shape[0])
        with torch.no_grad():
            B.normal_()
            x = torch.randn(5, A.shape[1])
            W = original_weight(ref, name)
            torch.testing.assert_close(layer(x), x @ W.T + (ALPHA / RANK) * x @ A.T @ B.T)
    assert expected == sum(p.numel() for p in model.parameters() if p.requires_grad) > 0


def test_init_b_swaps_the_zero_factor():
    _, model = adapted("init_b")
    for _, layer in lora_layers(model):
        A, B = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
        assert torch.count_nonzero(A) == 0
        assert B.abs().max() <= 0.01 and B.std() > 0.004  # U(-0.01, 0.01) has std 0.0058


def test_pissa_residual_plus_adapter_is_w_and_adapter_is_best_rank_r():
    ref, model = adapted("pissa")
    s = ALPHA / RANK
    for name, layer in lora_layers(model):
        W = original_weight(ref, name)
        delta = s * layer.lora_B[ADAPTER].weight @ layer.lora_A[ADAPTER].weight
        torch.testing.assert_close(layer.get_base_layer().weight + delta, W, atol=1e-5, rtol=0)
        torch.testing.assert_close(delta, top_r(W, RANK), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits(model, tokens()), logits(ref, tokens()), atol=1e-4, rtol=0)


def test_lora_xs_trains_only_r_by_r_and_starts_at_base():
    ref, model = adapted("lora_xs")
    torch.testing.assert_close(logits(model, tokens()), logits(ref, tokens()), atol=1e-4, rtol=0)
    layers = list(lora_layers(model))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == len(layers) * RANK**2
    for name, layer in layers:
        W = original_weight(ref, name)
        xs = layer.lora_A[ADAPTER]
        B, A, R = layer.lora_B[ADAPTER].weight, xs.weight, xs.mix
        assert not A.requires_grad and not B.requires_grad and R.requires_grad
        torch.testing.assert_close(B @ A, top_r(W, RANK), atol=1e-5, rtol=0)  # B = U_r, A = S_r V_rᵀ
        torch.testing.assert_close(B.T @ B, torch.eye(RANK), atol=1e-5, rtol=0)  # the authors' code: S on A
        s = torch.linalg.svdvals(W)[:RANK]
        torch.testing.assert_close(A @ A.T, torch.diag(s**2), atol=1e-4, rtol=1e-4)
        assert R.abs().max() < 1e-4  # N(0, 1e-5²)
        torch.testing.assert_close(layer.get_base_layer().weight, W)  # the base is not modified
        with torch.no_grad():
            R.normal_()
            x = torch.randn(5, A.shape[1])
            torch.testing.assert_close(layer(x), x @ W.T + (ALPHA / RANK) * x @ (B @ R @ A).T, atol=1e-4, rtol=1e-4)


def test_lora_xs_saves_a_plain_peft_adapter(tmp_path):
    _, model = adapted("lora_xs")
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_A[ADAPTER].mix.normal_(std=0.1)
    expected = logits(model, tokens())
    get_method("lora_xs").save_adapter(model, str(tmp_path))
    loaded = PeftModel.from_pretrained(base_model(), str(tmp_path))
    torch.testing.assert_close(logits(loaded, tokens()), expected, atol=1e-4, rtol=1e-4)


def test_loraplus_b_group_has_ratio_times_lr(tiny_bert_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
    model = lorabench.adapt(model, "loraplus", rank=RANK, alpha=ALPHA, loraplus_ratio=4)
    opt = lorabench.build_optimizer(model, "loraplus", lr=1e-4, loraplus_ratio=4)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    seen = 0
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        seen += 1
        b_side = "lora_B" in name or p.ndim == 1  # documented: 1-D parameters follow B, as in PEFT
        assert lr_of[id(p)] == pytest.approx(4e-4 if b_side else 1e-4), name
    assert seen == len(lr_of) and any("classifier" in n for n, p in model.named_parameters() if p.requires_grad)


def test_rank_larger_than_a_layer_is_a_config_error():
    with pytest.raises(ConfigError, match="rank: 33 exceeds the dimension 32 of targeted layer .*k_proj"):
        lorabench.adapt(base_model(), "lora", rank=33, alpha=8)


def test_option_of_another_method_is_rejected():
    with pytest.raises(ConfigError, match="loraplus_ratio: option not taken by method 'lora'"):
        lorabench.adapt(base_model(), "lora", rank=4, alpha=8, loraplus_ratio=2)


def test_unknown_method_lists_known_ones():
    with pytest.raises(ConfigError, match="unknown method 'nope'.*lora"):
        lorabench.adapt(base_model(), "nope", rank=4, alpha=8)


def test_every_option_names_the_source_of_its_default_and_docs_are_current():
    """docs/methods.md is generated from the method modules (make docs); a new option must say where its default
    comes from."""
    from lorabench.methods import catalogue, method_classes

    for cls in method_classes():
        rows = catalogue.rows(cls)
        assert rows, cls.name
        assert [r.setting for r in rows if r.kind == "option"] == list(cls.Options.model_fields)
        assert all(r.source for r in rows), cls.name
    loft = {r.setting: r for r in catalogue.rows(get_method("loft").__class__)}
    assert loft["loft_eps"].value == "0.0001" and "authors" in loft["loft_eps"].source
    docs = Path(__file__).resolve().parents[1] / "docs/methods.md"
    assert docs.read_text(encoding="utf-8") == catalogue.markdown(), "docs/methods.md is stale: run make docs"
