"""Evaluators: how a generated answer is extracted and scored against an evaluation set's gold answer.

One small module per evaluator, each citing the scoring rule it implements; :mod:`.registry` maps names to
them. Nothing here imports torch.
"""

from .base import Evaluator, GoldError
from .registry import evaluator_names, get_evaluator

__all__ = ["Evaluator", "GoldError", "evaluator_names", "get_evaluator"]
