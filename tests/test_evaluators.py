"""Evaluators against the real evaluation files: gold answers restated in the study's format score
(almost) perfectly, and shuffled answers score near chance. Skipped when the shared data is absent."""

from __future__ import annotations

import json
import random

import pytest

from lorabench.errors import ConfigError
from lorabench.evaluators import GoldError, get_evaluator
from lorabench.evaluators.hendrycks_math import is_equiv

from .conftest import require_data_root

COMMONSENSE = {"boolq": 0.5, "piqa": 0.5, "social_i_qa": 1 / 3, "winogrande": 0.5, "ARC-Easy": 0.25,
               "ARC-Challenge": 0.25, "openbookqa": 0.25}  # chance: one over the number of choices


def rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def metamath_style(solution: str) -> str:
    """A GSM8K worked solution restated as MetaMath answers: ``The answer is: N``, N without separators."""
    work, final = solution.rsplit("####", 1)
    return f"{work.rstrip()}\nThe answer is: {final.strip().replace(',', '')}"


def test_gsm8k_gold_solutions_score_all_1319():
    ev = get_evaluator("gsm8k", "gsm8k")
    data = rows(require_data_root() / "math/gsm8k_test.jsonl")
    assert len(data) == 1319
    golds = [ev.gold(r, "answer") for r in data]
    assert sum(ev.correct(ev.extract(metamath_style(r["answer"])), g) for r, g in zip(data, golds)) == 1319
    wrong = [metamath_style(r["answer"]) for r in data]
    random.Random(0).shuffle(wrong)
    assert sum(ev.correct(ev.extract(w), g) for w, g in zip(wrong, golds)) < 1319 * 0.05


def test_gsm8k_rule_rounds_and_strict_does_not():
    loose, strict = get_evaluator("gsm8k", "g"), get_evaluator("gsm8k", "g", {"strict": True})
    gold = loose.gold({"answer": "so #### 18"}, "answer")
    assert loose.correct(loose.extract("The answer is: 17.6"), gold)
    assert not strict.correct(strict.extract("The answer is: 17.6"), gold)
    assert loose.correct(loose.extract("x The answer is: 3 The answer is: $18."), gold)  # the last phrase counts
    assert not loose.correct(loose.extract("18"), gold)  # no answer phrase
    assert loose.extract("The answer is: 1,450,000") == repr(1450.0)  # the study's one-separator match
    assert loose.extract("The answer is: 36/2") == repr(18.0)
    with pytest.raises(GoldError, match="answer: no final number"):
        loose.gold({"answer": "#### eighteen"}, "answer")


def test_math500_gold_answers_score_500_and_full_math_all_but_one():
    ev = get_evaluator("math", "math500")
    for name, expect in (("math500_test.jsonl", 500), ("math_test.jsonl", 4999)):
        data = rows(require_data_root() / "math" / name)
        stated = [f"{r['solution']}\nThe answer is: {r['answer']}" for r in data]
        golds = [ev.gold(r, "answer") for r in data]
        ok = [ev.correct(ev.extract(s), g) for s, g in zip(stated, golds)]
        assert sum(ok) == expect, name
        random.Random(0).shuffle(stated)
        assert sum(ev.correct(ev.extract(s), g) for s, g in zip(stated, golds)) < len(data) * 0.05
    # the one miss of the 5,000: an answer ending in "." loses it to the study's extraction
    assert [r["answer"] for r, good in zip(data, ok) if not good] == ["\\frac{7}{5} + \\frac{1}{5} i."]


def test_hendrycks_equivalence_rules():
    assert is_equiv("\\dfrac{1}{2}", "\\frac12") and is_equiv("0.5", "\\frac{1}{2}") and is_equiv("1/2", "\\frac{1}{2}")
    assert is_equiv("x = 5", "5") and is_equiv("\\sqrt3", "\\sqrt{3}") and is_equiv("90^\\circ", "90")
    assert is_equiv("10\\%", "10") and is_equiv(".5", "0.5") and is_equiv("\\left( 1, 2 \\right)", "(1,2)")
    assert not is_equiv("\\frac{1}{3}", "\\frac{1}{2}") and not is_equiv("x/y", "\\frac{x}{y}")  # raw fallback
    assert is_equiv("5\\text{ cm}", "5")


@pytest.mark.parametrize("name", sorted(COMMONSENSE))
def test_commonsense_gold_outputs_score_100_and_shuffled_near_chance(name):
    ev = get_evaluator("commonsense", name)
    data = rows(require_data_root() / f"commonsense/{name}_test.jsonl")
    golds = [ev.gold(r, "output") for r in data]
    outs = [r["output"] for r in data]
    assert sum(ev.correct(ev.extract(o), g) for o, g in zip(outs, golds)) == len(data)
    random.Random(0).shuffle(outs)
    shuffled = sum(ev.correct(ev.extract(o), g) for o, g in zip(outs, golds)) / len(data)
    assert abs(shuffled - COMMONSENSE[name]) < 0.05, shuffled


def test_commonsense_refuses_unparseable_gold_and_unknown_sets():
    ev = get_evaluator("commonsense", "boolq")
    with pytest.raises(GoldError, match="output: no answer of the form true|false"):
        ev.gold({"output": "maybe"}, "output")
    assert ev.extract("the answer is false, not true") == "false"
    with pytest.raises(ConfigError, match="no answer vocabulary for set 'mine'"):
        get_evaluator("commonsense", "mine")
    assert get_evaluator("commonsense", "mine", {"vocabulary": "piqa"}).extract("solution2") == "solution2"
    with pytest.raises(ConfigError, match="did you mean 'gsm8k'"):
        get_evaluator("gsm8", "x")


def test_cli_lists_the_evaluators_with_their_rules():
    from typer.testing import CliRunner

    from lorabench.cli import app

    r = CliRunner().invoke(app, ["evaluators"])
    assert r.exit_code == 0
    assert "gsm8k        GSM8K: the first number after 'The answer is: '" in r.output
    assert "options: strict" in r.output and "commonsense" in r.output and "at most 30 new tokens" in r.output
