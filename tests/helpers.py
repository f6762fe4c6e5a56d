"""Helpers shared by the test modules: small random models built locally, and ways to look at them."""

from __future__ import annotations

import copy

import torch
from torch import nn

import lorabench
from lorabench.tiny_llama import build_llama, build_tokenizer

RANK, ALPHA = 4, 8.0


def base_model() -> nn.Module:
    """The tiny random Llama (2 layers, width 64), the same weights every call."""
    return build_llama("tiny-llama", build_tokenizer(), dtype=torch.float32, seed=0)


def bert_classifier(folder) -> nn.Module:
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(folder)


def adapted(method: str, model: nn.Module | None = None, **options):
    """(an untouched copy of the base, the base with ``method``'s adapter at RANK, ALPHA), init seeded."""
    base = model if model is not None else base_model()
    ref = copy.deepcopy(base)
    torch.manual_seed(1)
    return ref, lorabench.adapt(base, method, rank=RANK, alpha=ALPHA, **options)


def tokens(seed: int = 0) -> torch.Tensor:
    return torch.randint(4, 300, (3, 12), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(input_ids=x).logits


def original(ref: nn.Module, name: str) -> nn.Module:
    """The module of the untouched model at the adapted model's path ``name``."""
    return ref.get_submodule(name.removeprefix("base_model.model."))


def original_weight(ref: nn.Module, name: str) -> torch.Tensor:
    return original(ref, name).weight


def top_r(W: torch.Tensor, r: int) -> torch.Tensor:
    """The best rank-r approximation of W (its r largest singular components)."""
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]
