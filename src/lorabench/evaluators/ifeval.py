"""IFEval: Google's verifiable-instruction checkers, as lm-evaluation-harness ships them.

Source: Zhou et al. 2023, "Instruction-Following Evaluation for Large Language Models"
(google-research ``instruction_following_eval/evaluation_main.py``); the checkers are lm-evaluation-harness's
module ``lm_eval.tasks.ifeval`` (its copy of Google's code), called as they are. For a response r and a prompt
with instructions i₁ … iₙ:

- strict: instruction i is followed when r is non-empty and i's checker accepts r;
- loose: i is followed when its checker accepts any of eight variants of r (r, r without its first line, without
  its last, without both, each also with every ``*`` removed);
- prompt-level accuracy: the share of prompts whose instructions are all followed; instruction-level: the share
  of all instructions followed.

The set's figure is "Learning Rate Matters"'s: (strict prompt-level + strict instruction-level) / 2 (as a share;
the study's ``run-lora`` scripts report the same mean in percent). All four accuracies are kept, and the same
figures over the prompts none of whose checkers call NLTK's Punkt sentence model (``*_without_punkt``: the model
is installed offline by :mod:`lorabench.evaluators.punkt_tab`), so a user can see what the Punkt model weighs.
One departure, for reproducibility: ``langdetect`` (the language checkers) is seeded (0); Google's script leaves
it unseeded, so its language verdicts on borderline text can differ from run to run.
"""

from __future__ import annotations

import json
from typing import Any

from .base import Evaluator, GoldError

# checkers that split sentences with Punkt: NumberOfSentences (count_sentences) and CapitalWordFrequencyChecker
# (nltk.word_tokenize, which splits sentences first)
PUNKT_INSTRUCTIONS = frozenset({"length_constraints:number_sentences", "change_case:capital_word_frequency"})


def checkers() -> Any:
    """lm-evaluation-harness's IFEval module (``utils``), with NLTK's English Punkt model findable first: the
    module looks for it when imported and would otherwise try to download it."""
    from .punkt_tab import ensure_punkt_tab

    try:
        ensure_punkt_tab()
        import langdetect
        from lm_eval.tasks.ifeval import instructions_registry, utils
    except ImportError as e:
        raise ImportError(f"the ifeval evaluator needs lm-evaluation-harness, NLTK and langdetect ({e}); "
                          "install lorabench[harness]") from None
    langdetect.DetectorFactory.seed = 0  # langdetect samples: unseeded, a language check could flip between runs
    return utils, instructions_registry.INSTRUCTION_DICT


class IFEval(Evaluator):
    name = "ifeval"
    prompt_field = "prompt"
    answer_field = "instruction_id_list"
    max_new_tokens = 2048
    figure_is_share = False  # the mean of two accuracies at different levels

    def __init__(self, set_name: str, options: Any) -> None:
        super().__init__(set_name, options)
        self.utils, self.known = checkers()

    def gold(self, row: dict[str, Any], field: str) -> str:
        ids, kwargs, key = row.get(field), row.get("kwargs"), row.get("key")
        if not isinstance(ids, list) or not ids:
            raise GoldError(field, f"prompt {key} needs a non-empty list of instruction ids")
        unknown = [i for i in ids if i not in self.known]
        if unknown:
            raise GoldError(field, f"prompt {key}: unknown instruction id {unknown[0]!r}")
        if not isinstance(kwargs, list) or len(kwargs) != len(ids) or not all(isinstance(k, dict) for k in kwargs):
            raise GoldError("kwargs", f"prompt {key} needs one dict of arguments per instruction ({len(ids)})")
        if not isinstance(row.get("prompt"), str):
            raise GoldError("prompt", f"prompt {key} has no prompt text")
        return json.dumps({"key": key, "prompt": row["prompt"], "instruction_id_list": ids, "kwargs": kwargs})

    def extract(self, text: str) -> str | None:
        return text  # the response itself is checked

    def judge(self, extracted: str | None, gold: str) -> dict[str, Any]:
        g = json.loads(gold)
        inp = self.utils.InputExample(key=g["key"], instruction_id_list=g["instruction_id_list"],
                                      prompt=g["prompt"], kwargs=g["kwargs"])
        strict = self.utils.test_instruction_following_strict(inp, extracted or "")
        loose = self.utils.test_instruction_following_loose(inp, extracted or "")
        return {"correct": strict.follow_all_instructions, "strict": strict.follow_instruction_list,
                "loose": loose.follow_instruction_list, "prompt_loose": loose.follow_all_instructions,
                "punkt": any(i in PUNKT_INSTRUCTIONS for i in g["instruction_id_list"])}

    def correct(self, extracted: str | None, gold: str) -> bool:
        return bool(self.judge(extracted, gold)["correct"])

    def figures(self, judged: list[dict[str, Any]]) -> tuple[float, dict[str, float]]:
        out = _accuracies(judged)
        rest = [r for r in judged if not r["punkt"]]
        if rest:
            without = _accuracies(rest)
            out |= {f"{k}_without_punkt": v for k, v in without.items()}
            out["figure_without_punkt"] = (without["prompt_strict"] + without["inst_strict"]) / 2
        out["prompts_with_punkt"] = float(len(judged) - len(rest))
        return (out["prompt_strict"] + out["inst_strict"]) / 2, out


def _accuracies(judged: list[dict[str, Any]]) -> dict[str, float]:
    def share(xs: list[bool]) -> float:
        return sum(xs) / len(xs) if xs else 0.0

    return {"prompt_strict": share([bool(r["correct"]) for r in judged]),
            "inst_strict": share([x for r in judged for x in r["strict"]]),
            "prompt_loose": share([bool(r["prompt_loose"]) for r in judged]),
            "inst_loose": share([x for r in judged for x in r["loose"]])}
