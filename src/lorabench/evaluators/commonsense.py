"""Commonsense reasoning (the eight LLM-Adapters sets): the first answer word of the set's vocabulary.

Source: the scoring script of "Learning Rate Matters" (yuang-lee/lr-matters-lora, ``run-lora/utils/test_acc.py``,
``extract_commonsense_answer``), after LLM-Adapters (Hu et al., 2023). The first match of the set's
vocabulary in the stripped generation is compared with the first match in the gold ``output`` (e.g.
``"the correct answer is option2"`` → ``option2``):

========================================  ====================================
set                                       vocabulary
========================================  ====================================
boolq                                     ``true|false``
piqa                                      ``solution1|solution2``
social_i_qa, ARC-Easy, ARC-Challenge,     ``answer1|answer2|answer3|answer4|answer5``
openbookqa
hellaswag                                 ``ending1|ending2|ending3|ending4``
winogrande                                ``option1|option2``
========================================  ====================================

The set is named by ``vocabulary`` (default: the evaluation set's name). In the study a generation with no
match scores as correct if the gold output has none either; here a gold output without a match is refused
when the set loads, so a missing answer is always wrong.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from .base import Evaluator, GoldError

VOCABULARIES = {
    "boolq": "true|false",
    "piqa": "solution1|solution2",
    "social_i_qa": "answer1|answer2|answer3|answer4|answer5",
    "ARC-Easy": "answer1|answer2|answer3|answer4|answer5",
    "ARC-Challenge": "answer1|answer2|answer3|answer4|answer5",
    "openbookqa": "answer1|answer2|answer3|answer4|answer5",
    "hellaswag": "ending1|ending2|ending3|ending4",
    "winogrande": "option1|option2",
}


class CommonsenseOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vocabulary: str | None = None  # a set name of VOCABULARIES (default: the evaluation set's name)


class Commonsense(Evaluator):
    name = "commonsense"
    max_new_tokens = 30
    Options = CommonsenseOptions

    def __init__(self, set_name: str, options: BaseModel) -> None:
        super().__init__(set_name, options)
        key = getattr(options, "vocabulary", None) or set_name
        if key not in VOCABULARIES:
            raise ValueError(f"no answer vocabulary for set {key!r}; name the set, or set options.vocabulary to "
                             f"one of {', '.join(VOCABULARIES)}")
        self.pattern = re.compile(VOCABULARIES[key])

    def extract(self, text: str) -> str | None:
        m = self.pattern.search(text.strip())
        return m.group() if m else None

    def gold(self, row: dict[str, Any], field: str) -> str:
        raw = super().gold(row, field)
        found = self.extract(raw)
        if found is None:
            raise GoldError(field, f"no answer of the form {self.pattern.pattern} in {raw[:60]!r}")
        return found
