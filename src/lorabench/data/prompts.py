"""Prompt templates for the ``lm`` head: a label is read from the next-token logits of its word.

Training text:  template with {sentence} and {label} filled, e.g.
    "Classify the sentiment of this sentence: <s>\\n\\n.Sentiment: positive\\n"
Query text:     the template cut just before {label}, trailing whitespace removed; the model's
final-position logits of the label words' tokens give the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError, ModelError


@dataclass(frozen=True)
class Prompt:
    template: str
    label_words: tuple[str, ...]

    def __post_init__(self) -> None:
        for field in ("{sentence}", "{label}"):
            if self.template.count(field) != 1:
                raise ConfigError(f"data.template: must contain {field} exactly once")
        if self.template.index("{sentence}") > self.template.index("{label}"):
            raise ConfigError("data.template: {sentence} must come before {label}")

    def full(self, sentence: str, label: int) -> str:
        return self.template.replace("{sentence}", sentence).replace("{label}", self.label_words[label])

    def query(self, sentence: str) -> str:
        return self.template.split("{label}")[0].replace("{sentence}", sentence).rstrip()


def label_token_ids(tokenizer, prompt: Prompt) -> list[int]:
    """The single token that each label word becomes right after the query; fails clearly otherwise."""
    probe = "a sentence"
    query = tokenizer(prompt.query(probe))["input_ids"]
    ids = []
    for y, word in enumerate(prompt.label_words):
        full = tokenizer(prompt.full(probe, y))["input_ids"]
        after = full[len(query):]
        ok = full[: len(query)] == query and after and tokenizer.decode(after[:1]).strip() == word.strip()
        if not ok:
            pieces = tokenizer.convert_ids_to_tokens(after[:4]) if after else []
            raise ModelError(f"data.label_words: {word!r} is not a single token after the prompt for this tokenizer "
                             f"(it encodes as {pieces}); choose words that are")
        ids.append(after[0])
    if len(set(ids)) != len(ids):
        raise ModelError(f"data.label_words: {list(prompt.label_words)} map to the same token")
    return ids
