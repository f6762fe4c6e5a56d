"""Prompt formats of generative tasks: the study's Alpaca template, the tokenizer's chat template, or a string.

``alpaca`` is the no-input Alpaca prompt that "Learning Rate Matters" trains and evaluates with
(``run-lora/train.py``, ``PROMPT``); a row with a non-empty input gets Alpaca's with-input variant. A custom
template holds ``{instruction}`` once and may hold ``{input}``. The response follows the prompt directly.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError

ALPACA = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
          "request.\n\n### Instruction:\n{instruction}\n\n### Response:")
ALPACA_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                "context. Write a response that appropriately completes the request.\n\n### Instruction:\n"
                "{instruction}\n\n### Input:\n{input}\n\n### Response:")


class PromptFormat:
    """Renders an instruction (and input) as the prompt text; ``special_tokens``: whether tokenizing the text
    should add the tokenizer's special tokens (a chat template writes its own)."""

    def __init__(self, template: str, tokenizer: Any) -> None:
        self.template, self.tokenizer = template, tokenizer
        self.special_tokens = template != "chat"
        if template == "chat":
            if not getattr(tokenizer, "chat_template", None):
                raise ConfigError("data.template: 'chat' but this tokenizer has no chat template; use 'alpaca' "
                                  "or a template string")
        elif template != "alpaca":
            if template.count("{instruction}") != 1:
                raise ConfigError("data.template: must be 'alpaca', 'chat' or a string holding {instruction} once")
            if template.count("{input}") > 1:
                raise ConfigError("data.template: {input} may appear once at most")

    def render(self, instruction: str, input: str = "") -> str:
        if self.template == "chat":
            content = f"{instruction}\n\n{input}" if input else instruction
            return str(self.tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                          add_generation_prompt=True))
        if self.template == "alpaca":
            return (ALPACA_INPUT if input else ALPACA).replace("{instruction}", instruction).replace("{input}", input)
        text = self.template.replace("{instruction}", instruction)
        if "{input}" in text:
            return text.replace("{input}", input)
        return f"{text}\n\n{input}" if input else text
