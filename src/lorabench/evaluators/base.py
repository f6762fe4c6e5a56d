"""What every evaluator provides: default fields, the gold answer of a row, the answer extracted from a
generation, and whether the two agree."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class GoldError(ValueError):
    """A row's gold answer cannot be parsed (``field`` names the row's field)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Evaluator:
    """Scores generations for one evaluation set.

    ``prompt_field`` and ``answer_field`` are the row fields read by default; ``max_new_tokens`` the study's
    generation budget for the family. Subclasses set ``name`` and override :meth:`gold`, :meth:`extract`
    and :meth:`correct` (an evaluator whose figure is not the share correct also overrides :meth:`judge` and
    :meth:`figures`); their options (if any) are a pydantic ``Options`` model.
    """

    name: ClassVar[str]
    prompt_field: ClassVar[str] = "instruction"
    answer_field: ClassVar[str] = "output"
    max_new_tokens: ClassVar[int] = 256
    Options: ClassVar[type[BaseModel]] = NoOptions
    figure_is_share: ClassVar[bool] = True  # the set's figure is its share correct (so it has a bootstrap interval)

    def __init__(self, set_name: str, options: BaseModel) -> None:
        self.set_name, self.options = set_name, options

    def gold(self, row: dict[str, Any], field: str) -> str:
        """The reference answer of ``row`` (read from ``field``), normalised for :meth:`correct`; raises
        :class:`GoldError` if it cannot be parsed."""
        value = row.get(field)
        if not isinstance(value, str | int | float) or isinstance(value, bool) or not str(value).strip():
            raise GoldError(field, f"expected a non-empty answer, found {value!r}")
        return str(value).strip()

    def extract(self, text: str) -> str | None:
        """The answer a generation states, or None if it states none."""
        raise NotImplementedError

    def correct(self, extracted: str | None, gold: str) -> bool:
        return extracted is not None and extracted == gold

    def judge(self, extracted: str | None, gold: str) -> dict[str, Any]:
        """What is recorded of one generation's scoring: ``correct``, and any detail an evaluator adds."""
        return {"correct": self.correct(extracted, gold)}

    def judge_all(self, extracted: list[str | None], golds: list[str]) -> list[dict[str, Any]]:
        """:meth:`judge` of each pair, in order (an evaluator that runs programs runs them in parallel)."""
        return [self.judge(x, g) for x, g in zip(extracted, golds, strict=True)]

    def figures(self, judged: list[dict[str, Any]]) -> tuple[float, dict[str, float]]:
        """The set's figure (by default the share correct) and any further figures, from its judged rows."""
        return sum(bool(r["correct"]) for r in judged) / len(judged), {}
