"""MiLoRA, Init[AB], OLoRA, rsLoRA and DoRA against their formulas, on small random models (tiny Llama, tiny BERT)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import lorabench
from lorabench.methods import ADAPTER
from lorabench.methods.layers import lora_layers
from lorabench.tiny_llama import build_llama, build_tokenizer

from .helpers import ALPHA, RANK, adapted, base_model, bert_classifier, logits, original_weight, tokens, top_r

S = ALPHA / RANK
METHODS = ["milora", "init_ab", "olora", "rslora", "dora"]
RESIDUAL = ["milora", "init_ab", "olora"]  # the init moves s·B A ≠ 0 out of the frozen weight


def adapted_bert(folder, method: str, **options):
    base = bert_classifier(folder)
    ref = copy.deepcopy(base)
    torch.manual_seed(1)
    return ref, lorabench.adapt(base, method, rank=RANK, alpha=ALPHA, **options)


def factors(layer) -> tuple[torch.Tensor, torch.Tensor]:
    return layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight


def delta(layer) -> torch.Tensor:
    """s·B A as the layer applies it."""
    A, B = factors(layer)
    return layer.scaling[ADAPTER] * B @ A


def bottom_r(W: torch.Tensor, r: int) -> torch.Tensor:
    """The sum of the r smallest singular components of W (thin SVD)."""
    U, Sv, Vh = torch.linalg.svd(W, full_matrices=False)
    return U[:, -r:] @ torch.diag(Sv[-r:]) @ Vh[-r:]


def layers_of(model) -> list:
    out = list(lora_layers(model))
    assert len(out) == 14  # 7 linears × 2 blocks of the tiny Llama
    return out


# ------------------------------------------------------------------------------- every method: step 0, training

@pytest.mark.parametrize("method", METHODS)
def test_llama_output_equals_base_at_step_0(method):
    ref, model = adapted(method)
    torch.testing.assert_close(logits(model, tokens()), logits(ref, tokens()), atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", METHODS)
def test_bert_classifier_output_equals_base_at_step_0(method, tiny_bert_dir):
    ref, model = adapted_bert(tiny_bert_dir, method)
    assert len(list(lora_layers(model))) == 13  # q, k, v, attention out, intermediate, output × 2; the pooler
    torch.testing.assert_close(logits(model, tokens()), logits(ref, tokens()), atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", METHODS)
def test_one_optimizer_step_moves_the_adapter_and_the_output(method):
    _, model = adapted(method)
    x = tokens()
    before = logits(model, x)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable), sorted(trainable)
    if method == "dora":
        assert sum("lora_magnitude_vector" in n for n in trainable) == 14
    opt = lorabench.build_optimizer(model, method, lr=1e-3)
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in trainable.values()}
    start = {n: p.detach().clone() for n, p in trainable.items()}
    model.train()
    model(input_ids=x, labels=x).loss.backward()
    opt.step()
    moved = [n for n, p in trainable.items() if not torch.equal(p, start[n])]
    assert any("lora_B" in n for n in moved) and (logits(model, x) - before).abs().max() > 1e-4


# ----------------------------------------------------------------------------------- residual inits: W_res + s·B A = W

@pytest.mark.parametrize("method", RESIDUAL)
def test_residual_plus_adapter_is_w(method):
    ref, model = adapted(method)
    for name, layer in layers_of(model):
        W = original_weight(ref, name)
        W_res = layer.get_base_layer().weight
        assert W_res.dtype == W.dtype and not W_res.requires_grad
        assert torch.linalg.norm(W_res - W) > 1e-3 * torch.linalg.norm(W)  # the frozen weight really changed
        torch.testing.assert_close(W_res + delta(layer), W, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------------- MiLoRA

@pytest.mark.parametrize("alpha", [ALPHA, 2.0])
def test_milora_adapter_is_the_r_minor_components(alpha):
    base = base_model()
    ref = copy.deepcopy(base)
    model = lorabench.adapt(base, "milora", rank=RANK, alpha=alpha)
    for name, layer in layers_of(model):
        W = original_weight(ref, name)
        sv = torch.linalg.svdvals(W)
        k = sv.numel()
        assert layer.scaling[ADAPTER] == pytest.approx(alpha / RANK)
        torch.testing.assert_close(delta(layer), bottom_r(W, RANK), atol=1e-5, rtol=0)  # independent of α
        assert torch.linalg.norm(delta(layer)) < 0.5 * torch.linalg.norm(top_r(W, RANK))  # not PiSSA's part
        # each factor carries (S_min/s)^{1/2}: B's column norms and A's row norms
        A, B = factors(layer)
        root = (sv[-RANK:] / (alpha / RANK)).sqrt()
        torch.testing.assert_close(B.norm(dim=0), root, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(A.norm(dim=1), root, atol=1e-5, rtol=1e-4)
        # the frozen residual keeps W's k − r principal singular values and loses the r minor ones
        res_sv = torch.linalg.svdvals(layer.get_base_layer().weight)
        torch.testing.assert_close(res_sv[: k - RANK], sv[: k - RANK], atol=1e-5, rtol=0)
        assert res_sv[k - RANK:].max() < 1e-5


@pytest.mark.parametrize("method", ["milora", "init_ab"])
def test_residual_keeps_the_base_dtype(method):
    base = build_llama("tiny-llama", build_tokenizer(), dtype=torch.bfloat16, seed=0)
    ref = copy.deepcopy(base)
    model = lorabench.adapt(base, method, rank=RANK, alpha=ALPHA)
    for name, layer in layers_of(model):
        W_res = layer.get_base_layer().weight
        assert W_res.dtype == torch.bfloat16
        W = original_weight(ref, name).float()
        torch.testing.assert_close(W_res.float() + delta(layer).float(), W, atol=1e-2, rtol=0)  # bf16 rounding


# ----------------------------------------------------------------------------------------------------- Init[AB]

def test_init_ab_factors_are_uniform_within_the_layers_fan_in_bound():
    """The study's draw: A and B ~ U(±1/√d_in) with d_in the adapted layer's input width, W_res + s·B A = W."""
    ref, model = adapted("init_ab")
    for name, layer in layers_of(model):
        A, B = factors(layer)
        r, d_in = A.shape
        assert r == RANK and B.shape[1] == RANK
        bound = 1 / math.sqrt(d_in)
        for M in (A, B):
            assert M.abs().max() <= bound and M.abs().max() > 0.9 * bound
            assert M.std() > 0.8 * bound / math.sqrt(3)  # U(-b, b) has std b/√3; not zero, not squeezed
            assert abs(M.mean()) < 0.2 * bound
        torch.testing.assert_close(layer.get_base_layer().weight + delta(layer), original_weight(ref, name),
                                   atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------------- OLoRA

def test_olora_factors_are_the_qr_of_w():
    ref, model = adapted("olora")
    for name, layer in layers_of(model):
        W = original_weight(ref, name)
        A, B = factors(layer)
        Q, R = torch.linalg.qr(W)
        torch.testing.assert_close(B.T @ B, torch.eye(RANK), atol=1e-5, rtol=0)  # B = Q_r, orthonormal columns
        assert torch.count_nonzero(torch.tril(A, diagonal=-1)) == 0  # A = R_r, upper trapezoidal
        torch.testing.assert_close(B @ A, Q[:, :RANK] @ R[:RANK], atol=1e-5, rtol=0)
        torch.testing.assert_close(B @ A, B @ B.T @ W, atol=1e-5, rtol=0)  # Q_r R_r = Q_r Q_rᵀ W
        torch.testing.assert_close(delta(layer), S * Q[:, :RANK] @ R[:RANK], atol=1e-5, rtol=0)  # not divided by s


# ------------------------------------------------------------------------------------------------------ rsLoRA

def test_rslora_scale_is_alpha_over_sqrt_r_and_forward_matches():
    ref, model = adapted("rslora")
    for name, layer in layers_of(model):
        assert layer.scaling[ADAPTER] == pytest.approx(ALPHA / math.sqrt(RANK))  # 4.0, where LoRA has α/r = 2.0
        A, B = factors(layer)
        assert torch.count_nonzero(B) == 0 and A.abs().sum() > 0
        W = original_weight(ref, name)
        with torch.no_grad():
            B.normal_()
            x = torch.randn(5, A.shape[1])
            expected = x @ W.T + (ALPHA / math.sqrt(RANK)) * x @ A.T @ B.T
            torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


# -------------------------------------------------------------------------------------------------------- DoRA

def test_dora_magnitude_starts_at_the_row_norms_of_w():
    ref, model = adapted("dora")
    for name, layer in layers_of(model):
        W = original_weight(ref, name)
        m = layer.lora_magnitude_vector[ADAPTER].weight
        assert m.requires_grad and m.shape == (W.shape[0],)  # one magnitude per output unit
        expected = torch.sqrt((W * W).sum(dim=1))  # ‖W_{i,:}‖ over the input dimension
        torch.testing.assert_close(m, expected, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(layer.get_base_layer().weight, W, atol=0, rtol=0)  # the base is untouched
        assert torch.count_nonzero(factors(layer)[1]) == 0
    torch.testing.assert_close(logits(model, tokens()), logits(ref, tokens()), atol=1e-5, rtol=0)


def dora_reference(layer, W: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """m ⊙ (W + s·B A)/‖W + s·B A‖ (row norms) applied to x, plus the bias."""
    A, B = factors(layer)
    V = W + layer.scaling[ADAPTER] * B @ A
    W_dora = layer.lora_magnitude_vector[ADAPTER].weight[:, None] * V / V.norm(dim=1, keepdim=True)
    return x @ W_dora.T + (bias if bias is not None else 0)


@pytest.mark.parametrize("kind", ["llama", "bert"])
def test_dora_forward_matches_the_formula_after_training_like_changes(kind, tiny_bert_dir):
    ref, model = adapted("dora") if kind == "llama" else adapted_bert(tiny_bert_dir, "dora")
    name, layer = next(iter(lora_layers(model)))
    base = ref.get_submodule(name.removeprefix("base_model.model."))
    A, B = factors(layer)
    m = layer.lora_magnitude_vector[ADAPTER].weight
    layer.eval()
    with torch.no_grad():
        B.normal_(std=0.5)
        m.mul_(1 + 0.2 * torch.randn_like(m))
        x = torch.randn(5, A.shape[1])
        got = layer(x)
        torch.testing.assert_close(got, dora_reference(layer, base.weight, base.bias, x), atol=1e-5, rtol=1e-5)
        lora = x @ (base.weight + S * B @ A).T + (base.bias if base.bias is not None else 0)
        assert (got - lora).abs().max() > 1e-2  # the normalisation and magnitude do act
