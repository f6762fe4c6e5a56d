"""Causal LMs built locally from an architecture of :mod:`lorabench.archs`, with random weights, and a locally
trained tokenizer (no hub needed)."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (AutoModelForCausalLM, LlamaConfig, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast,
                          Qwen3Config)

from .archs import ARCHS

SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]

# A small deterministic corpus: the prompt's words, the label words and common English, so that
# frequent words are single tokens and anything else falls back to bytes.
_WORDS = """
Classify Sentiment classify the sentiment of this sentence positive negative a an and or but not no is are was were be
it its this that these those with without for from to in on at by as of film movie story plot acting
actor actors director performance performances character characters script scene scenes good bad great
best worst funny boring dull fun love hate like enjoy enjoyable beautiful ugly brilliant awful terrible
wonderful charming clever stupid smart moving touching slow fast long short too very more most less
little much many some all every one two first last new old well better worse never ever always nothing
something anything everything who what which when where why how i you he she we they his her their our
my your me him them us do does did done make makes made have has had can could would should will may
might must just only even still yet so such than then there here about into over under after before
while because if although though through out up down off again time year years way life world people
heart mind soul eyes work works comedy drama thriller horror action romance music visual visuals
entertaining compelling predictable original familiar fresh tired mess masterpiece disappointing
""".split()

CORPUS = [" ".join(_WORDS)] * 4 + [f"Sentiment: {w}" for w in ("positive", "negative") for _ in range(50)]


def build_tokenizer(vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``CORPUS``; every text is encodable, BOS is prepended."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")


def build_llama(arch: str, tokenizer: PreTrainedTokenizerFast, *, dtype: torch.dtype, seed: int = 0,
                attn_implementation: str | None = None) -> PreTrainedModel:
    """A randomly initialised causal LM of architecture ``arch`` (Llama, or Qwen3 for ``qwen3-*``); weights depend
    only on ``seed``."""
    spec = dict(ARCHS[arch])
    family = spec.pop("family", "llama")
    spec.setdefault("vocab_size", len(tokenizer))
    spec.setdefault("tie_word_embeddings", False)
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    config: PretrainedConfig = Qwen3Config(**spec, **ids) if family == "qwen3" else LlamaConfig(**spec, **ids)
    if attn_implementation:
        config._attn_implementation = attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    return model.to(dtype)
