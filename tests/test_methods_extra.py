"""LoRA-GA, GraLoRA, RandLoRA and LoFT against their formulas, on small random models (tiny Llama, tiny BERT)."""

from __future__ import annotations

import copy
import importlib

import pytest
import torch
from torch import nn

import lorabench
from lorabench import data as D
from lorabench.adapters import count_trainable
from lorabench.models import targeted_linears
from lorabench.errors import ConfigError
from lorabench.methods import ADAPTER
from lorabench.methods.layers import lora_layers
from lorabench.methods.lora_ga_gradient import STABLE_GAMMA, estimate_gradients
from lorabench.methods.loft_optimizer import LoftAdamW
from lorabench.methods.randlora import layer_dims, lora_count, randlora_count
from lorabench.losses import loss_sum, loss_tokens

from .helpers import ALPHA, RANK, adapted, base_model, bert_classifier, logits, original, tokens

S = ALPHA / RANK


class FakeCalibration:
    """``n`` examples (cycling, like the run's order) in right-padded micro-batches of 3 from
    ``lorabench.data.collate``, of varied lengths; records each request."""

    def __init__(self, n_examples: int = 12, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        ids = [torch.randint(4, 300, (int(torch.randint(5, 11, (1,), generator=gen)),), generator=gen).tolist()
               for _ in range(n_examples)]
        self.enc = D.Encoded(input_ids=ids, labels=[i % 2 for i in range(n_examples)])
        self.requests: list[int] = []

    def batches(self, n: int):
        self.requests.append(n)
        for i in range(0, n, 3):
            yield D.collate(self.enc, [j % len(self.enc) for j in range(i, min(i + 3, n))], pad_id=3)


# ----------------------------------------------------------------------------------------------- LoRA-GA

def reference_gradients(ref: nn.Module, calibration: FakeCalibration, n: int, head: str) -> dict[str, torch.Tensor]:
    """∂/∂W of Σ loss_sum / Σ loss_tokens by plain autograd on the untouched base model."""
    ref = copy.deepcopy(ref).train()
    for p in ref.parameters():
        p.requires_grad_(False)
    linears = dict(targeted_linears(ref, "all-linear"))
    for lin in linears.values():
        lin.weight.requires_grad_(True)
    batches = list(calibration.batches(n))
    total = sum(loss_tokens(b, head) for b in batches)
    for b in batches:
        (loss_sum(ref, b, head) / total).backward()
    return {name: lin.weight.grad for name, lin in linears.items()}


def projector(rows: torch.Tensor) -> torch.Tensor:
    """Orthogonal projector onto the row space of ``rows`` (full row rank)."""
    q, _ = torch.linalg.qr(rows.T.double())
    return q @ q.T


def test_lora_ga_residual_output_and_gradient_alignment():
    calib = FakeCalibration()
    ref, model = adapted("lora_ga", calibration=calib, lora_ga_samples=7)
    assert calib.requests == [7]
    torch.testing.assert_close(logits(model, tokens()), logits(ref, tokens()), atol=1e-4, rtol=0)
    grads = reference_gradients(ref, FakeCalibration(), 7, "lm")
    layers = list(lora_layers(model))
    assert len(layers) == len(grads) == 14
    for name, layer in layers:
        A, B = layer.lora_A[ADAPTER].weight.detach(), layer.lora_B[ADAPTER].weight.detach()
        W = original(ref, name).weight
        # W_res + s·B A reproduces W
        torch.testing.assert_close(layer.get_base_layer().weight + S * B @ A, W, atol=1e-5, rtol=0)
        # stable scale: A Aᵀ = Bᵀ B = c² I with c = d_out^{1/4} / √γ
        c2 = W.shape[0] ** 0.5 / STABLE_GAMMA
        torch.testing.assert_close(A @ A.T, c2 * torch.eye(RANK), atol=1e-5, rtol=0)
        torch.testing.assert_close(B.T @ B, c2 * torch.eye(RANK), atol=1e-5, rtol=0)
        # A spans the top-r right singular vectors of G, B the next r left ones (ArB2r)
        U, _, Vh = torch.linalg.svd(grads[name.removeprefix("base_model.model.")].double(), full_matrices=False)
        torch.testing.assert_close(projector(A), projector(Vh[:RANK]), atol=1e-4, rtol=0)
        torch.testing.assert_close(projector(B.T), projector(U[:, RANK : 2 * RANK].T), atol=1e-4, rtol=0)


def test_lora_ga_gradient_estimate_is_the_normalised_training_gradient():
    ref = base_model()
    model = lorabench.adapt(copy.deepcopy(ref), "lora", rank=RANK, alpha=ALPHA)  # B = 0: same function as ref
    got = estimate_gradients(model, FakeCalibration(), 9)
    want = reference_gradients(ref, FakeCalibration(), 9, "lm")
    assert len(got) == len(want) == 14
    for name, g in got.items():
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, want[name.removeprefix("base_model.model.")], atol=1e-6, rtol=1e-4)
    assert all(p.grad is None for p in model.parameters())  # the estimate leaves no .grad behind


def test_lora_ga_on_a_classifier(tiny_bert_dir):
    ref, model = adapted("lora_ga", bert_classifier(tiny_bert_dir), calibration=FakeCalibration())
    torch.testing.assert_close(logits(model, tokens()), logits(ref, tokens()), atol=1e-4, rtol=0)
    for name, layer in lora_layers(model):
        delta = S * layer.lora_B[ADAPTER].weight @ layer.lora_A[ADAPTER].weight
        assert delta.abs().max() > 0
        torch.testing.assert_close(layer.get_base_layer().weight + delta, original(ref, name).weight,
                                   atol=1e-5, rtol=0)


def overlap(p: torch.Tensor, q: torch.Tensor) -> float:
    """‖P Q‖²_F / rank for orthogonal projectors of one rank: the mean squared cosine of their principal angles."""
    return float((p @ q).pow(2).sum() / torch.trace(q))


def lora_ga_run(glue_dir, tiny_bert_dir):
    return lorabench.load_config(None, [f"model.name={tiny_bert_dir}", "model.head=cls", f"data.dir={glue_dir}",
                                        "data.n_train=64", "data.n_eval=8", "method=lora_ga", "rank=4",
                                        "lora_ga_samples=16", "batch_size=4", "grad_accum=2", "device=cpu"])


def adapter_factors(model) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {n: (layer.lora_A[ADAPTER].weight.detach().clone(), layer.lora_B[ADAPTER].weight.detach().clone())
            for n, layer in lora_layers(model)}


def test_lora_ga_calibration_sees_the_dropout_free_training_objective(glue_dir, tiny_bert_dir, monkeypatch):
    """The tiny BERT has dropout 0.1, which training silences (base_dropout: false). (1) Whatever the RNG state
    when the gradient is estimated, the init is the same: no dropout mask enters it. (2) A and B span the top
    singular directions of the dropout-free gradient of the run's first 16 examples, computed here by autograd."""
    lora_ga = importlib.import_module("lorabench.methods.lora_ga_gradient")
    from lorabench.models import load_model
    from lorabench.prepare import prepare, train_order

    cfg = lora_ga_run(glue_dir, tiny_bert_dir)
    real = lora_ga.estimate_gradients
    inits = []
    for rng_seed in (11, 12):
        def reseeded(*args, seed=rng_seed, **kwargs):
            torch.manual_seed(seed)
            return real(*args, **kwargs)

        monkeypatch.setattr(lora_ga, "estimate_gradients", reseeded)
        inits.append(adapter_factors(prepare(cfg).model))
    monkeypatch.setattr(lora_ga, "estimate_gradients", real)
    for name in inits[0]:
        for x, y in zip(inits[0][name], inits[1][name]):
            assert torch.equal(x, y), name

    p = prepare(cfg)
    torch.manual_seed(cfg.seed)
    ref, tok = load_model(cfg.model)  # the same base and head init, in eval mode: no dropout
    ref.eval()
    assert any(isinstance(m, nn.Dropout) and m.p > 0 for m in ref.modules())
    for q in ref.parameters():
        q.requires_grad_(False)
    linears = dict(targeted_linears(ref, "all-linear"))
    for lin in linears.values():
        lin.weight.requires_grad_(True)
    order = train_order(p.train, cfg)
    idx = next(order) + next(order)  # the run's first two effective batches of 8
    assert len(set(idx)) == 16
    batch = D.collate(p.train, idx, tok.pad_token_id)
    (loss_sum(ref, batch, "cls") / len(idx)).backward()
    checked = 0
    for name, (A, B) in adapter_factors(p.model).items():
        U, sv, Vh = torch.linalg.svd(linears[name.removeprefix("base_model.model.")].weight.grad.double(),
                                     full_matrices=False)
        if min(sv[3] - sv[4], sv[7] - sv[8]) < 1e-7 * sv[0]:
            continue  # singular subspaces ill-conditioned in float32 (the pooler's gradient: rank ≈ 2, from 2 classes)
        checked += 1
        # subspace overlap ‖P P_ref‖²_F / r: 1 when equal (float32 gradients: ≥ 0.99); with dropout it is far lower
        assert overlap(projector(A), projector(Vh[:4])) > 0.99, name
        assert overlap(projector(B.T), projector(U[:, 4:8].T)) > 0.99, name
    assert checked >= 12  # of 13 adapted layers


def test_lora_ga_needs_calibration():
    with pytest.raises(ConfigError) as err:
        lorabench.adapt(base_model(), "lora_ga", rank=RANK, alpha=ALPHA)
    assert str(err.value) == "lora_ga: needs training batches (calibration) to estimate the gradient"


def test_lora_ga_rank_over_half_a_dimension_is_a_config_error():
    with pytest.raises(ConfigError, match=r"rank: lora_ga needs 2·rank <= 32, .*k_proj.*got rank 17"):
        lorabench.adapt(base_model(), "lora_ga", rank=17, alpha=8, calibration=FakeCalibration())


# ----------------------------------------------------------------------------------------------- GraLoRA

def gralora_layers(model):
    from peft.tuners.gralora import GraloraLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, GraloraLayer)]


def gralora_delta(layer) -> torch.Tensor:
    """ΔW/s from the paper's k×k blocks: block (i, j) = B_ij A_ij of rank r/k, i over outputs, j over inputs."""
    A, B = layer.gralora_A[ADAPTER], layer.gralora_B[ADAPTER]  # [k, d_in/k, r], [k, r, d_out/k]
    k, n_in, r = A.shape
    n_out, sub = B.shape[2], r // k
    delta = torch.zeros(k * n_out, k * n_in)
    for i in range(k):
        for j in range(k):
            a_ij = A[j][:, i * sub : (i + 1) * sub].T  # r/k × d_in/k
            b_ij = B[i][j * sub : (j + 1) * sub].T  # d_out/k × r/k
            delta[i * n_out : (i + 1) * n_out, j * n_in : (j + 1) * n_in] = b_ij @ a_ij
    return delta


def test_gralora_starts_at_base_and_matches_the_block_formula():
    ref, model = adapted("gralora")
    torch.testing.assert_close(logits(model, tokens()), logits(ref, tokens()), atol=0, rtol=0)
    layers = gralora_layers(model)
    expected = 0
    for name, layer in layers:
        d_out, d_in = original(ref, name).weight.shape
        k = layer.gralora_k[ADAPTER]
        assert k == 2
        assert layer.gralora_A[ADAPTER].shape == (k, d_in // k, RANK)
        assert layer.gralora_B[ADAPTER].shape == (k, RANK, d_out // k)
        expected += RANK * (d_in + d_out)  # Σ_ij (r/k)(d_in/k + d_out/k) = r (d_in + d_out)
        with torch.no_grad():
            layer.gralora_B[ADAPTER].normal_()
            delta = gralora_delta(layer)
            x = torch.randn(5, d_in)
            torch.testing.assert_close(layer(x), x @ original(ref, name).weight.T + S * x @ delta.T,
                                       atol=1e-4, rtol=1e-4)
            assert torch.linalg.matrix_rank(delta) == min(k * RANK, d_in, d_out)  # beyond LoRA's rank r
    assert len(layers) == 14
    assert count_trainable(model) == expected == 2 * RANK * (128 + 96 + 96 + 128 + 3 * 192)


def test_gralora_classifier_count(tiny_bert_dir):
    ref, model = adapted("gralora", bert_classifier(tiny_bert_dir))
    torch.testing.assert_close(logits(model, tokens()), logits(ref, tokens()), atol=0, rtol=0)
    lora_part = sum(RANK * (lin.in_features + lin.out_features) for _, lin in targeted_linears(ref, "all-linear"))
    head = sum(p.numel() for p in ref.classifier.parameters())
    assert count_trainable(model) == lora_part + head


def test_gralora_k_is_2_at_every_rank_as_the_study_ran_it():
    """The study keeps k = 2 at high rank; the option overrides it (here rank 64 on 64-wide layers)."""
    for options, want in (({}, 2), ({"gralora_k": 4}, 4)):
        model = lorabench.adapt(base_model(), "gralora", rank=64, alpha=64, target_modules=["q_proj"], **options)
        ks = [m.gralora_k[ADAPTER] for m in model.modules() if hasattr(m, "gralora_k") and isinstance(m.gralora_k, dict)]
        assert ks and set(ks) == {want}
        assert model.peft_config[ADAPTER].gralora_k == want


def test_gralora_bad_k_is_a_config_error():
    with pytest.raises(ConfigError, match=r"gralora_k: 3 does not divide in_features = 64 of targeted layer "
                                          r"'model.layers.0.self_attn.q_proj'"):
        lorabench.adapt(base_model(), "gralora", rank=6, alpha=8, gralora_k=3)
    with pytest.raises(ConfigError, match=r"gralora_k: 8 does not divide the rank 4"):
        lorabench.adapt(base_model(), "gralora", rank=4, alpha=8, gralora_k=8)


# ----------------------------------------------------------------------------------------------- RandLoRA

@pytest.mark.parametrize("rank", [4, 8])
def test_randlora_matches_lora_count_and_starts_at_base(rank):
    base = base_model()
    ref = copy.deepcopy(base)
    lora_params = count_trainable(lorabench.adapt(copy.deepcopy(base), "lora", rank=rank, alpha=8))
    model = lorabench.adapt(base, "randlora", rank=rank, alpha=8)
    got = count_trainable(model)
    assert abs(got - lora_params) <= 0.05 * lora_params
    r = model.peft_config[ADAPTER].r
    assert got == randlora_count(layer_dims(ref, "all-linear"), r)  # the formula is PEFT's count
    assert lora_params == lora_count(layer_dims(ref, "all-linear"), rank)
    torch.testing.assert_close(logits(model, tokens()), logits(ref, tokens()), atol=0, rtol=0)


def test_randlora_scale_is_randlora_alpha_over_r_with_the_studys_default():
    """s = randlora_alpha / r on every layer (default 640, as the study ran it); with the same λ, γ and bases the
    update scales with randlora_alpha alone."""
    deltas = {}
    for alpha in (None, 1.0):
        _, model = adapted("randlora", **({} if alpha is None else {"randlora_alpha": alpha}))
        r = model.peft_config[ADAPTER].r
        layers = [m for m in model.modules() if hasattr(m, "randlora_lambda") and ADAPTER in m.randlora_lambda]
        assert layers and all(m.scaling[ADAPTER] == (alpha or 640.0) / r for m in layers)
        layer, gen = layers[0], torch.Generator().manual_seed(5)
        with torch.no_grad():
            for t in (layer.randlora_lambda[ADAPTER], layer.randlora_gamma[ADAPTER]):
                t.copy_(torch.randn(t.shape, generator=gen))
            x = torch.randn(5, layer.get_base_layer().in_features, generator=gen)
            deltas[alpha] = layer(x) - layer.get_base_layer()(x)
    assert deltas[1.0].abs().max() > 0
    torch.testing.assert_close(deltas[None], 640 * deltas[1.0], rtol=1e-4, atol=1e-5)


def test_randlora_on_a_classifier_and_explicit_r(tiny_bert_dir):
    ref, model = adapted("randlora", bert_classifier(tiny_bert_dir))
    head = sum(p.numel() for p in ref.classifier.parameters())
    lora_params = lora_count(layer_dims(ref, "all-linear"), RANK)
    assert abs(count_trainable(model) - head - lora_params) <= 0.05 * lora_params
    torch.testing.assert_close(logits(model, tokens()), logits(ref, tokens()), atol=0, rtol=0)
    _, fixed = adapted("randlora", bert_classifier(tiny_bert_dir), randlora_r=16)
    assert fixed.peft_config[ADAPTER].r == 16
    assert count_trainable(fixed) - head == randlora_count(layer_dims(ref, "all-linear"), 16) == 13 * 2 * (16 + 32)


def test_randlora_without_a_match_within_5_percent_is_a_config_error(tiny_bert_dir):
    """Width-32 BERT at rank 8: LoRA has 7680; r = 2 gives 7072 (−7.9 %), r = 1 gives 13728."""
    with pytest.raises(ConfigError, match=r"randlora_r: no basis rank matches LoRA's 7680 .* r = 2, 7072"):
        lorabench.adapt(bert_classifier(tiny_bert_dir), "randlora", rank=8, alpha=16)


# ----------------------------------------------------------------------------------------------- LoFT

def factor_state_finite(opt: torch.optim.Optimizer) -> bool:
    return all(torch.isfinite(v).all() for st in opt.state.values() for v in st.values() if torch.is_tensor(v))


def test_loft_alternates_b_then_a_and_keeps_moments_finite():
    _, model = adapted("loft")
    opt = lorabench.build_optimizer(model, "loft", lr=1e-2)
    assert isinstance(opt, LoftAdamW) and len(opt.pairs) == 14
    x = tokens()
    batch = {"input_ids": x, "attention_mask": torch.ones_like(x)}
    model.train()
    losses = []
    for step in range(1, 7):
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        loss = loss_sum(model, batch, "lm") / loss_tokens(batch, "lm")
        loss.backward()
        losses.append(loss.item())
        expect = "lora_A" if step % 2 == 0 else "lora_B"  # B on odd steps, A on even steps
        assert opt.updates_a() == (expect == "lora_A")
        opt.step()
        opt.zero_grad(set_to_none=True)
        for name, p in model.named_parameters():
            if p.requires_grad:
                assert torch.equal(p, before[name]) != (expect in name), (step, name)
        assert factor_state_finite(opt)
        assert all(torch.isfinite(p).all() for p in model.parameters())
    assert min(losses[1:]) < losses[0]


def authors_loft(a, b, grad_fn, steps, *, lr, eps=1e-4, wd=1e-2, betas=(0.9, 0.999), max_norm=1.0):
    """An independent float64 transcription of the authors' LoFTAdamW loop and clipping for one (A, B) pair at s = 1
    (tnurbek/loft, as vendored by the study): per step, clip by the projected full gradient of the moving factor,
    then A, then B, each rescaled with the other's current value, its moments re-projected onto the other's change
    since it was last processed, and the moving one decayed (p − wd·p) and stepped."""
    b1, b2 = betas
    p = {"A": a.double().clone(), "B": b.double().clone()}
    st = {"A": {"step": 0, "m": torch.zeros_like(p["A"]), "P": torch.zeros(a.shape[1], a.shape[0], a.shape[0],
                                                                            dtype=torch.float64)},
          "B": {"step": 0, "m": torch.zeros_like(p["B"]), "P": torch.zeros(b.shape[0], b.shape[1], b.shape[1],
                                                                            dtype=torch.float64)}}
    old, update_a, trace = {}, False, []

    def rescale(name, g):
        o = p["B"] if name == "A" else p["A"]
        if name == "A":
            sc = torch.linalg.inv(o.T @ o + 1e-6 * torch.eye(o.shape[1], dtype=o.dtype))
            return sc @ g, sc
        sc = torch.linalg.inv(o @ o.T + 1e-8 * torch.eye(o.shape[0], dtype=o.dtype))
        return g @ sc, sc

    for _ in range(steps):
        g = dict(zip("AB", (x.double() for x in grad_fn(p["A"].float(), p["B"].float()))))
        mover = "A" if update_a else "B"
        gm, _ = rescale(mover, g[mover])
        full = p["B"] @ gm if mover == "A" else gm @ p["A"]
        coef = min(1.0, max_norm / (full.norm().item() + 1e-6))
        g = {k: v * coef for k, v in g.items()}
        for name in ("A", "B"):
            other = "B" if name == "A" else "A"
            s, o = st[name], p[other]
            grad, sc = rescale(name, g[name])
            if other in old:
                if name == "A":
                    R = sc @ (o.T @ old[other])
                    s["m"], s["P"] = R @ s["m"], R.T[None] @ s["P"] @ R[None]
                else:
                    R = (old[other] @ o.T) @ sc
                    s["m"], s["P"] = s["m"] @ R, R[None] @ s["P"] @ R.T[None]
            old[other] = o.clone()
            s["step"] += 1
            s["m"] = b1 * s["m"] + (1 - b1) * grad
            vec = grad.T if name == "A" else grad
            s["P"] = b2 * s["P"] + (1 - b2) * vec[:, :, None] @ vec[:, None, :]
            if name != mover:
                continue
            bc1, bc2 = 1 - b1 ** s["step"], 1 - b2 ** s["step"]
            p[name] = p[name] - wd * p[name]
            T = o.T if name == "A" else o  # r × (m or n)
            v = (T[None] * (s["P"] @ T)).sum(1).clamp(min=0)
            if name == "A":
                upd = (o @ s["m"]) / ((v.T / bc2).sqrt() + eps)
                p[name] = p[name] - lr / bc1 * (sc @ (o.T @ upd))
            else:
                upd = (s["m"] @ o) / ((v / bc2).sqrt() + eps)
                p[name] = p[name] - lr / bc1 * ((upd @ o.T) @ sc)
        update_a = not update_a
        trace.append((p["A"].clone(), p["B"].clone()))
    return trace


def test_loft_follows_the_authors_update_rule_with_their_eps_and_decay():
    """Eight steps of LoftAdamW (defaults: ε = 1e-4, decay 1e-2 the authors' way, clipping by the projected
    gradient) against the transcription above, from LoRA's init (B = 0), on a least-squares loss in W."""
    torch.manual_seed(3)
    m, n, r = 7, 5, 2
    W0, X, Y = torch.randn(m, n), torch.randn(16, n), torch.randn(16, m)
    A, B = nn.Parameter(torch.randn(r, n) / n**0.5), nn.Parameter(torch.zeros(m, r))

    def loss(a, b):
        return 0.5 * (X @ (W0 + b @ a).T - Y).pow(2).mean()

    def grad_fn(a, b):
        a, b = a.detach().requires_grad_(), b.detach().requires_grad_()
        return torch.autograd.grad(loss(a, b), (a, b))

    want = authors_loft(A.detach(), B.detach(), grad_fn, 8, lr=0.05)
    opt = LoftAdamW([A, B], [(A, B, 1.0)], lr=0.05)
    assert opt.defaults["eps"] == 1e-4 and opt.defaults["weight_decay"] == 1e-2
    for step in range(8):
        loss(A, B).backward()
        opt.clip_grad_norm_(1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.testing.assert_close(A.detach().double(), want[step][0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(B.detach().double(), want[step][1], atol=1e-5, rtol=1e-4)
    assert B.abs().max() > 0.05 and loss(A, B) < 0.9 * loss(want[0][0].float(), torch.zeros(m, r))


def test_loft_options_default_to_what_the_study_ran(tiny_bert_dir):
    _, model = adapted("loft")
    opt = lorabench.build_optimizer(model, "loft", lr=1e-3)
    assert all(g["eps"] == 1e-4 and g["weight_decay"] == 1e-2 for g in opt.param_groups)
    opt = lorabench.build_optimizer(model, "loft", lr=1e-3, loft_eps=1e-8, loft_weight_decay=0.0)
    assert all(g["eps"] == 1e-8 and g["weight_decay"] == 0.0 for g in opt.param_groups)
    with pytest.raises(ConfigError, match="weight_decay: loft"):
        lorabench.build_optimizer(model, "loft", lr=1e-3, weight_decay=0.1)


def test_loft_classifier_head_gets_the_authors_plain_adam(tiny_bert_dir):
    """The head's branch: Adam with ε = 1e-4 and p ← p − wd·p, i.e. torch's AdamW with weight decay wd / lr."""
    _, model = adapted("loft", bert_classifier(tiny_bert_dir))
    opt = lorabench.build_optimizer(model, "loft", lr=1e-3)
    head = {n: p for n, p in model.named_parameters() if p.requires_grad and "classifier" in n}
    assert head and not any("lora" in n for n in head)
    twins = {n: nn.Parameter(p.detach().clone()) for n, p in head.items()}
    ref_opt = torch.optim.AdamW(list(twins.values()), lr=1e-3, eps=1e-4, weight_decay=1e-2 / 1e-3)
    x = tokens()
    batch = {"input_ids": x, "attention_mask": torch.ones_like(x), "labels": torch.tensor([0, 1, 1])}
    model.train()
    for _ in range(3):
        loss_sum(model, batch, "cls").backward()
        for n, p in head.items():
            twins[n].grad = p.grad.clone()
        opt.step()
        ref_opt.step()
        opt.zero_grad(set_to_none=True)
        for n, p in head.items():
            torch.testing.assert_close(p.detach(), twins[n].detach(), atol=1e-6, rtol=1e-5)
    assert factor_state_finite(opt)
