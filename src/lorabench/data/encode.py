"""Tokenisation, done once per (data, tokenizer, head, template, length) and cached on disk.

The cache key hashes everything the token ids depend on, so runs of a sweep share one encoding
and a change of any input can never reuse a stale one.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..files import atomic_write_bytes, cache_root
from .labelled import Example
from .prompts import Prompt


@dataclass
class Encoded:
    """Token ids per example and its class label. For ``lm`` training the ids hold the full prompt.

    ``loss_start`` (generative tasks): where each example's response begins; only the tokens from there on are
    loss targets (the prompt's labels are −100). None: every token after the first is a target.
    """

    input_ids: list[list[int]]
    labels: list[int]
    loss_start: list[int] | None = None

    def __len__(self) -> int:
        return len(self.labels)


def cache_dir() -> Path:
    return cache_root() / "tokens"


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else f"{tokenizer.name_or_path}:{len(tokenizer)}"
    return hashlib.sha256(text.encode()).hexdigest()


def _fitted(e: Example, tokenizer: Any, prompt: Prompt, max_length: int, train: bool) -> list[int]:
    """The prompt's token ids within ``max_length``: words dropped from the end of the longest text, then (a single
    word too long alone) characters, never the template or the label."""
    words = [t.split() for t in e.texts]
    while True:
        texts = tuple(" ".join(w) for w in words)
        x = tokenizer(prompt.full(texts, e.label) if train else prompt.query(texts))["input_ids"]
        if len(x) <= max_length:
            return list(x)
        j = max(range(len(words)), key=lambda k: len(texts[k]))
        w = words[j]
        if len(w) > 1:
            words[j] = w[: max(1, len(w) - max(1, (len(x) - max_length) // 2))]
        elif w and w[0]:
            words[j] = [w[0][: min(len(w[0]) - 1, len(w[0]) * max_length // len(x))]]
        else:
            raise ConfigError(f"model.max_length: {max_length} tokens cannot hold the prompt template "
                              f"({len(x)} tokens with empty texts)")


def cached(key: dict[str, Any], build: Callable[[], Encoded]) -> Encoded:
    """The encoding cached under ``key`` (everything its token ids depend on), else ``build()``'s, stored."""
    path = cache_dir() / f"{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]}.pt"
    if path.is_file():
        try:
            blob = torch.load(path, weights_only=True)
            return Encoded(blob["input_ids"], blob["labels"], blob.get("loss_start"))
        except Exception:  # a corrupt cache entry is re-created, never trusted
            path.unlink(missing_ok=True)
    enc = build()
    buf = io.BytesIO()
    torch.save({"input_ids": enc.input_ids, "labels": enc.labels, "loss_start": enc.loss_start}, buf)
    atomic_write_bytes(path, buf.getvalue())
    return enc


def encode(examples: list[Example], tokenizer, *, head: str, prompt: Prompt | None, max_length: int,
           train: bool) -> Encoded:
    """Token ids of ``examples``: sentences for ``cls``; full prompts (train) or queries (eval) for ``lm``.

    ``lm`` prompts longer than ``max_length`` lose words from the end of the sentence, never the label.
    """
    key = {
        "tok": tokenizer_fingerprint(tokenizer), "head": head, "train": train, "max_length": max_length,
        "template": prompt.template if prompt else None, "labels": list(prompt.label_words) if prompt else None,
        "data": hashlib.sha256("\n".join(f"{e.label}\t" + "\x1f".join(e.texts) for e in examples).encode()).hexdigest(),
        "fields": list(prompt.fields) if prompt else None,
    }

    def build() -> Encoded:
        labels = [e.label for e in examples]
        if head == "cls":
            pairs = [e.texts[1] for e in examples] if examples and len(examples[0].texts) > 1 else None
            ids = tokenizer([e.texts[0] for e in examples], pairs, truncation=True, max_length=max_length)["input_ids"]
        else:
            assert prompt is not None
            ids = [_fitted(e, tokenizer, prompt, max_length, train) for e in examples]
        return Encoded([list(map(int, x)) for x in ids], labels)

    return cached(key, build)


def encode_sft(pairs: list[tuple[str, str]], tokenizer, *, max_length: int, special_tokens: bool = True) -> Encoded:
    """Token ids of (prompt text, response) pairs for supervised fine-tuning:

        ids = prompt_ids + response_ids + [eos],   cut to the first ``max_length`` tokens,

    with ``loss_start`` = len(prompt_ids) (capped at the cut length): the loss covers the response tokens and
    the EOS, never the prompt. The two parts are tokenised apart so that the boundary is exact. An example
    whose prompt fills the window has no loss token (see :func:`without_loss`).
    """
    key = {"tok": tokenizer_fingerprint(tokenizer), "sft": True, "max_length": max_length, "special": special_tokens,
           "data": hashlib.sha256(json.dumps(pairs).encode()).hexdigest()}

    def build() -> Encoded:
        prompts = tokenizer([p for p, _ in pairs], add_special_tokens=special_tokens)["input_ids"]
        responses = tokenizer([r for _, r in pairs], add_special_tokens=False)["input_ids"]
        ids, starts = [], []
        for p, r in zip(prompts, responses):
            full = (list(p) + list(r) + [tokenizer.eos_token_id])[:max_length]
            ids.append([int(t) for t in full])
            starts.append(min(len(p), len(full)))
        return Encoded(ids, [0] * len(ids), starts)

    return cached(key, build)


def without_loss(enc: Encoded) -> int:
    """How many examples have no loss token (their prompt fills ``max_length``)."""
    if enc.loss_start is None:
        return 0
    return sum(start >= len(ids) for start, ids in zip(enc.loss_start, enc.input_ids))
