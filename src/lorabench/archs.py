"""The causal-LM architectures lorabench builds locally with random weights (no torch here: configs check names).

``tiny-llama`` (2 layers, width 64) makes the ``lm`` path testable in seconds on a CPU; the others copy a hub
model's ``config.json`` for speed and memory measurements where the hub is out of reach.
"""

from __future__ import annotations

from typing import Any

ARCHS: dict[str, dict[str, Any]] = {  # config arguments; family: llama (default) or qwen3
    "tiny-llama": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=512),
    # TinyLlama/TinyLlama-1.1B-Chat-v1.0's config.json
    "tinyllama-1.1b-arch": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                                num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
                                rms_norm_eps=1e-5, rope_theta=10000.0, vocab_size=32000),
    # Qwen/Qwen3-0.6B-Base's config.json (the study's smallest model)
    "qwen3-0.6b-arch": dict(family="qwen3", hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                            num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=32768,
                            rms_norm_eps=1e-6, rope_theta=1000000.0, vocab_size=151936, tie_word_embeddings=True),
}
