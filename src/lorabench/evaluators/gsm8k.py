"""GSM8K: the first number after ``The answer is: `` in the generation, rounded to an integer.

Source: the scoring script of "Learning Rate Matters" (yuang-lee/lr-matters-lora, ``run-lora/utils/test_acc.py``,
``extract_answer_number``), which follows MetaMath's GSM8K evaluation. The rule, reproduced here:

- take the text after the *last* ``The answer is: ``; no such phrase: wrong;
- the first match of ``[-+]?\\d*[.,/]?\\d+`` in it: one separator at most, so ``1,234`` reads as 1234 but
  ``1,450,000`` as 1450 (MetaMath's answers carry no thousands separators); a fraction ``a/b`` is evaluated
  (``b = 0`` reads as ``a``);
- commas removed, **rounded to the nearest integer** (Python's ``round``: halves to even), and compared with
  the gold number. The rounding is the study's quirk: ``17.6`` scores against a gold ``18``. ``strict: true``
  compares the unrounded value instead.

Gold: the number after ``#### `` in the official GSM8K ``answer`` field, or the field itself when it is a bare
number (as in the PiSSA dataset's GSM8K split).
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from pydantic import BaseModel, ConfigDict

from .base import Evaluator, GoldError

ANSWER = "The answer is: "
NUMBER = re.compile(r"[\-+]?\d*[\.,/]?\d+")


class GSM8KOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strict: bool = False  # compare the stated number exactly instead of rounded to an integer


def stated_number(text: str, *, rounded: bool = True) -> float | None:
    """The number the generation states after the last ``The answer is: `` (see the module docstring)."""
    if ANSWER not in text:
        return None
    m = NUMBER.search(text.split(ANSWER)[-1].strip())
    if m is None:
        return None
    s = m.group().replace(",", "")
    if "/" in s:
        num, den = s.split("/")
        if num in ("", "-", "+"):
            return None  # "/5": the study's script reads no number
        value = float(num) if int(den) == 0 else float(Fraction(int(num), int(den)))
    else:
        value = float(s)
    if value in (float("inf"), float("-inf")):
        return None
    return float(round(value)) if rounded else value


class GSM8K(Evaluator):
    name = "gsm8k"
    prompt_field = "question"
    answer_field = "answer"
    max_new_tokens = 1024
    Options = GSM8KOptions

    def gold(self, row: dict[str, Any], field: str) -> str:
        raw = super().gold(row, field)
        tail = raw.rsplit("####", 1)[-1].strip().replace(",", "")
        try:
            return repr(float(tail))
        except ValueError:
            raise GoldError(field, f"no final number (expected '#### N' or a number), found {tail[:40]!r}") from None

    def extract(self, text: str) -> str | None:
        strict = isinstance(self.options, GSM8KOptions) and self.options.strict
        value = stated_number(text, rounded=not strict)
        return None if value is None else repr(value)

    def correct(self, extracted: str | None, gold: str) -> bool:
        return extracted is not None and float(extracted) == float(gold)
