"""Offline lm-evaluation-harness task definitions for the staged evaluation files.

Each definition is lm-evaluation-harness's own task of that name (prompt, choices, target, metrics, few-shot
setting, as in its ``lm_eval/tasks/*`` YAML files) with its hub dataset replaced by the staged local file under
the data root (``$LORABENCH_DATA_ROOT``); ``process_docs`` turns the staged rows into the fields the harness's
prompt reads. The commonsense files are in the study's instruction format (question and numbered choices in one
text); they are parsed back into question and choices. Where the staged file lacks a field the harness uses, the
definition says so: BoolQ's passage is not staged, so ``boolq`` here asks the question alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

Doc = dict[str, Any]

_CHOICE = re.compile(r"(?:Answer|Solution|Option)(\d+):\s*(.*?)(?=\s*(?:(?:Answer|Solution|Option)\d+:|Answer format:)|$)",
                     re.S)
_QUESTION = re.compile(r"(?:question|sentence):\s*(.*?)\s*(?:\n\n|(?:Answer|Solution|Option)1:)", re.S)


def parse_choice_row(row: Doc) -> Doc:
    """A staged commonsense row → ``question``, ``choices`` and ``label`` (the gold choice's index)."""
    text = row["instruction"]
    q = _QUESTION.search(text)
    choices = [c.strip() for _, c in _CHOICE.findall(text)]
    gold = re.search(r"(\d+)$", str(row["answer"]).strip())
    if not q or not choices or not gold:
        raise ValueError(f"cannot read question and choices from {text[:80]!r}")
    return {"question": q.group(1).strip(), "choices": choices, "label": int(gold.group(1)) - 1}


def _choices(ds: Any) -> Any:
    return ds.map(parse_choice_row, remove_columns=ds.column_names)


def _boolq(ds: Any) -> Any:
    def one(row: Doc) -> Doc:
        q = re.search(r"question:\s*(.*?)\s*\n\nAnswer format", row["instruction"], re.S)
        return {"question": (q.group(1) if q else row["instruction"]).rstrip("?"),
                "label": int(str(row["answer"]).strip() == "true")}
    return ds.map(one, remove_columns=ds.column_names)


def _winogrande(ds: Any) -> Any:
    def one(row: Doc) -> Doc:
        parsed = parse_choice_row(row)
        return {"sentence": parsed["question"], "option1": parsed["choices"][0], "option2": parsed["choices"][1],
                "answer": str(parsed["label"] + 1)}
    return ds.map(one, remove_columns=ds.column_names)


def _wino_text(doc: Doc) -> int:
    return int(doc["answer"]) - 1  # the harness's "partial" scoring: the context varies, the target is shared


def _wino_target(doc: Doc) -> str:
    return str(doc["sentence"][doc["sentence"].index("_") + 1:].strip())


def _wino_choice(doc: Doc) -> list[str]:
    cut = doc["sentence"].index("_")
    return [doc["sentence"][:cut] + o for o in (doc["option1"], doc["option2"])]


ACC = [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]
ACC_NORM = [*ACC, {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}]


def _mc(file: str, process: Callable[[Any], Any], text: Any, choice: Any, target: Any,
        metrics: list[dict[str, Any]] = ACC_NORM) -> dict[str, Any]:
    return {"file": file, "output_type": "multiple_choice", "process_docs": process, "doc_to_text": text,
            "doc_to_choice": choice, "doc_to_target": target, "metric_list": metrics}


# name → (staged file under the data root, the harness task's settings)
LOCAL: dict[str, dict[str, Any]] = {
    "gsm8k": {
        "file": "math/gsm8k_test.jsonl", "fewshot_file": "math/gsm8k_train.jsonl", "output_type": "generate_until",
        "doc_to_text": "Question: {{question}}\nAnswer:", "doc_to_target": "{{answer}}", "num_fewshot": 5,
        "generation_kwargs": {"until": ["Question:", "</s>", "<|im_end|>"], "do_sample": False, "temperature": 0.0},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                         "ignore_case": True, "ignore_punctuation": False,
                         "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"]}],
        "filter_list": [{"name": "strict-match", "filter": [
                            {"function": "regex", "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"},
                            {"function": "take_first"}]},
                        {"name": "flexible-extract", "filter": [
                            {"function": "regex", "group_select": -1,
                             "regex_pattern": "(-?[$0-9.,]{2,})|(-?[0-9]+)"}, {"function": "take_first"}]}],
    },
    "arc_easy": _mc("commonsense/ARC-Easy_test.jsonl", _choices, "Question: {{question}}\nAnswer:",
                    "{{choices}}", "{{label}}"),
    "arc_challenge": _mc("commonsense/ARC-Challenge_test.jsonl", _choices, "Question: {{question}}\nAnswer:",
                         "{{choices}}", "{{label}}"),
    "openbookqa": _mc("commonsense/openbookqa_test.jsonl", _choices, "{{question}}", "{{choices}}", "{{label}}"),
    "piqa": _mc("commonsense/piqa_test.jsonl", _choices, "Question: {{question}}\nAnswer:", "{{choices}}",
                "{{label}}"),
    "social_iqa": _mc("commonsense/social_i_qa_test.jsonl", _choices, "Q: {{question}}\nA:", "{{choices}}",
                      "{{label}}", ACC),
    "boolq": _mc("commonsense/boolq_test.jsonl", _boolq, "Question: {{question}}?\nAnswer:", ["no", "yes"],
                 "{{label}}", ACC),
    "winogrande": _mc("commonsense/winogrande_test.jsonl", _winogrande, _wino_text, _wino_choice, _wino_target, ACC),
}


def task_config(name: str, root: Path) -> dict[str, Any]:
    """The harness config of local task ``name``, its files under ``root``."""
    spec = dict(LOCAL[name])
    files = {"test": str(root / spec.pop("file"))}
    fewshot = spec.pop("fewshot_file", None)
    if fewshot:
        files["train"] = str(root / fewshot)
    for f in files.values():
        if not Path(f).is_file():
            raise FileNotFoundError(f)
    conf = {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": files}, "test_split": "test",
            "num_fewshot": 0, "metadata": {"version": 1.0, "source": "lorabench offline definition"}, **spec}
    if fewshot:
        conf |= {"training_split": "train", "fewshot_split": "train"}
    return conf
