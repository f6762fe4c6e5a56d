"""Prompt templates for the ``lm`` head: a label is read from the next-token logits of its word.

Training text:  template with its text fields (e.g. {sentence}) and {label} filled, e.g.
    "Classify the sentiment of this sentence: <s>\\n\\n.Sentiment: positive\\n"
Query text:     the template cut just before {label}, trailing whitespace removed; the model's
final-position logits of the label words' tokens give the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError, ModelError


@dataclass(frozen=True)
class Prompt:
    """``template`` holds each text field as ``{field}`` (SST-2: ``{sentence}``; a pair task e.g. ``{premise}`` and
    ``{hypothesis}``) and ``{label}`` after them; ``label_words[k]`` is class k's word."""

    template: str
    label_words: tuple[str, ...]
    fields: tuple[str, ...] = ("sentence",)

    def __post_init__(self) -> None:
        for field in (*self.fields, "label"):
            if self.template.count("{" + field + "}") != 1:
                raise ConfigError(f"data.template: must contain {{{field}}} exactly once")
        if any(self.template.index("{" + f + "}") > self.template.index("{label}") for f in self.fields):
            raise ConfigError("data.template: the text fields must come before {label}")

    def _filled(self, texts: tuple[str, ...], template: str) -> str:
        for field, text in zip(self.fields, texts, strict=True):
            template = template.replace("{" + field + "}", text)
        return template

    def full(self, texts: tuple[str, ...], label: int) -> str:
        return self._filled(texts, self.template).replace("{label}", self.label_words[label])

    def query(self, texts: tuple[str, ...]) -> str:
        return self._filled(texts, self.template.split("{label}")[0]).rstrip()


def label_token_ids(tokenizer, prompt: Prompt) -> list[int]:
    """The single token that each label word becomes right after the query; fails clearly otherwise."""
    probe = ("a sentence",) * len(prompt.fields)
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
