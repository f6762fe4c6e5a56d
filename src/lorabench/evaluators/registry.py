"""Evaluator names → classes, and their construction with validated options."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError, config_error
from .base import Evaluator
from .code import MBPP, HumanEval
from .commonsense import Commonsense
from .gsm8k import GSM8K
from .hendrycks_math import Math
from .ifeval import IFEval

EVALUATORS: dict[str, type[Evaluator]] = {cls.name: cls for cls in (GSM8K, Math, Commonsense, HumanEval, MBPP, IFEval)}


def evaluator_names() -> list[str]:
    return list(EVALUATORS)


def unknown_evaluator(name: str) -> str:
    near = difflib.get_close_matches(name, EVALUATORS, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"unknown evaluator {name!r}{hint}; known: {', '.join(EVALUATORS)}"


def evaluator_class(name: str, where: str = "evaluator") -> type[Evaluator]:
    if name not in EVALUATORS:
        raise ConfigError(f"{where}: {unknown_evaluator(name)}")
    return EVALUATORS[name]


def get_evaluator(name: str, set_name: str, options: dict[str, Any] | None = None,
                  where: str = "evaluator") -> Evaluator:
    """Evaluator ``name`` for evaluation set ``set_name``; bad options are a one-line ``ConfigError``."""
    cls = evaluator_class(name, where)
    try:
        opts = cls.Options.model_validate(options or {})
        return cls(set_name, opts)
    except ValidationError as e:
        raise config_error(e, f"{where}.options") from None
    except (ValueError, ImportError) as e:  # ImportError: an evaluator's optional package is not installed
        raise ConfigError(f"{where}: {e}") from None
