"""Tokenisation, done once per (data, tokenizer, head, template, length) and cached on disk.

The cache key hashes everything the token ids depend on, so runs of a sweep share one encoding
and a change of any input can never reuse a stale one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..files import atomic_write_bytes
from .glue import Example
from .prompts import Prompt


@dataclass
class Encoded:
    """Token ids per example and its class label. For ``lm`` training the ids hold the full prompt."""

    input_ids: list[list[int]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)


def cache_dir() -> Path:
    root = os.environ.get("LORABENCH_CACHE") or Path.home() / ".cache" / "lorabench"
    return Path(root) / "tokens"


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else f"{tokenizer.name_or_path}:{len(tokenizer)}"
    return hashlib.sha256(text.encode()).hexdigest()


def _fitted(e: Example, tokenizer: Any, prompt: Prompt, max_length: int, train: bool) -> list[int]:
    """The prompt's token ids within ``max_length``: words dropped from the end of the sentence, then (a single
    word too long alone) characters, never the template or the label."""
    words = e.sentence.split()
    while True:
        sentence = " ".join(words)
        x = tokenizer(prompt.full(sentence, e.label) if train else prompt.query(sentence))["input_ids"]
        if len(x) <= max_length:
            return list(x)
        if len(words) > 1:
            words = words[: max(1, len(words) - max(1, (len(x) - max_length) // 2))]
        elif words and words[0]:
            words = [words[0][: min(len(words[0]) - 1, len(words[0]) * max_length // len(x))]]
        else:
            raise ConfigError(f"model.max_length: {max_length} tokens cannot hold the prompt template "
                              f"({len(x)} tokens with an empty sentence)")


def encode(examples: list[Example], tokenizer, *, head: str, prompt: Prompt | None, max_length: int,
           train: bool) -> Encoded:
    """Token ids of ``examples``: sentences for ``cls``; full prompts (train) or queries (eval) for ``lm``.

    ``lm`` prompts longer than ``max_length`` lose words from the end of the sentence, never the label.
    """
    key_src = json.dumps({
        "tok": tokenizer_fingerprint(tokenizer), "head": head, "train": train, "max_length": max_length,
        "template": prompt.template if prompt else None, "labels": list(prompt.label_words) if prompt else None,
        "data": hashlib.sha256("\n".join(f"{e.label}\t{e.sentence}" for e in examples).encode()).hexdigest(),
    }, sort_keys=True)
    path = cache_dir() / f"{hashlib.sha256(key_src.encode()).hexdigest()[:32]}.pt"
    if path.is_file():
        try:
            blob = torch.load(path, weights_only=True)
            return Encoded(blob["input_ids"], blob["labels"])
        except Exception:  # a corrupt cache entry is re-created, never trusted
            path.unlink(missing_ok=True)
    labels = [e.label for e in examples]
    if head == "cls":
        ids = tokenizer([e.sentence for e in examples], truncation=True, max_length=max_length)["input_ids"]
    else:
        assert prompt is not None
        ids = [_fitted(e, tokenizer, prompt, max_length, train) for e in examples]
    enc = Encoded([list(map(int, x)) for x in ids], labels)
    buf = io.BytesIO()
    torch.save({"input_ids": enc.input_ids, "labels": enc.labels}, buf)
    atomic_write_bytes(path, buf.getvalue())
    return enc
