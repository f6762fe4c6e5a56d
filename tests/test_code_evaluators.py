"""Code evaluators on the real HumanEval and MBPP files: canonical solutions pass, wrong ones fail, and a program
that misbehaves fails alone, within its limits, touching nothing outside its scratch folder."""

from __future__ import annotations

import json
import time

import pytest

from lorabench.evaluators import GoldError, get_evaluator
from lorabench.evaluators.code import completion
from lorabench.evaluators.sandbox import Limits, program, run_program

from .conftest import require_data_root


def rows(name: str) -> list[dict]:
    return [json.loads(x) for x in (require_data_root() / "code" / name).read_text(encoding="utf-8").splitlines()]


def test_humaneval_canonical_solutions_pass_164_of_164_and_wrong_ones_none():
    ev = get_evaluator("humaneval", "humaneval")
    data = rows("humaneval_test.jsonl")
    golds = [ev.gold(r, "test") for r in data]
    assert len(data) == 164
    assert sum(j["correct"] for j in ev.judge_all([r["canonical_solution"] for r in data], golds)) == 164
    assert sum(j["correct"] for j in ev.judge_all(["    return None\n"] * len(golds), golds)) == 0


def test_mbpp_sanitized_test_split_canonical_code_passes_all_257_and_wrong_none():
    ev = get_evaluator("mbpp", "mbpp")
    data = [r for r in rows("mbpp_sanitized.jsonl") if 11 <= r["task_id"] <= 510]
    golds = [ev.gold(r, "test_list") for r in data]
    assert len(data) == 257
    assert sum(j["correct"] for j in ev.judge_all([r["code"] for r in data], golds)) == 257
    wrong = [r["code"].split("\n")[0] + "\n    return None" for r in data]  # the right name and signature only
    assert sum(j["correct"] for j in ev.judge_all(wrong, golds)) == 0


def test_the_studys_post_processing():
    text = "Here you go:\n```python\ndef f(x):\n    return x + 1\n```\nThat adds one."
    assert completion(text) == "def f(x):\n    return x + 1"
    assert completion("def f():\n    return 1\n\n# Example usage\nprint(f())") == "def f():\n    return 1"
    assert completion("def f():\n    return 1\nassert f() == 1") == "def f():\n    return 1"
    assert completion('def f():\n    return 1\nif __name__ == "__main__":\n    f()') == "def f():\n    return 1"


@pytest.mark.parametrize("name, code", [
    ("infinite loop", "while True:\n    pass"),
    ("unbounded memory", "x = bytearray(10 ** 11)"),
    ("fork", "import os\nos.fork()"),
    ("subprocess", "import subprocess\nsubprocess.run(['true'])"),
    ("delete a file", "import os\nos.remove(KEEP)"),
    ("remove a tree", "import shutil\nshutil.rmtree(KEEP_DIR)"),
    ("socket", "import socket\nsocket.create_connection(('127.0.0.1', 9))"),
    ("sys.exit before the tests", "import sys\nsys.exit(0)"),
])
def test_a_misbehaving_program_fails_alone_within_its_limits(name, code, tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("still here")
    setup = f"KEEP = {str(keep)!r}\nKEEP_DIR = {str(tmp_path)!r}"
    t0 = time.perf_counter()
    out = run_program(program(setup, code, "assert True"), Limits(timeout_s=2, cpu_s=2, memory_mb=512))
    assert not out.passed and out.status in ("failed", "timeout"), out
    assert time.perf_counter() - t0 < 5
    assert keep.read_text() == "still here"


def test_what_a_program_printed_before_its_timeout_is_kept():
    """A plus test that times out still tells whether base passed: the sandbox keeps the output up to the kill."""
    out = run_program(program("", "print('base done', flush=True)\nwhile True:\n    pass", ""),
                      Limits(timeout_s=1, cpu_s=2))
    assert out.status == "timeout" and out.output == "base done\n"


def test_unparseable_tests_are_refused_with_the_task_id():
    with pytest.raises(GoldError, match="the tests of task HumanEval/7 do not parse"):
        get_evaluator("humaneval", "h").gold({"task_id": "HumanEval/7", "prompt": "def f():\n", "entry_point": "f",
                                             "test": "def check(c):\n    assert c( == 1\n"}, "test")
    with pytest.raises(GoldError, match="task 3 needs a non-empty list of test lines"):
        get_evaluator("mbpp", "m").gold({"task_id": 3, "test_list": []}, "test_list")


def test_shipped_tiny_code_config_trains_generates_and_executes(tmp_path, monkeypatch, one_thread):
    from lorabench import load_config, run

    monkeypatch.setenv("LORABENCH_DATA_ROOT", str(require_data_root()))
    r = run(load_config("configs/sft-code-tinyllama.yaml"), tmp_path / "run", progress=False, log=lambda s: None)
    assert r["status"] == "ok" and set(r["final"]["sets"]) == {"humaneval", "mbpp"}
    gens = [json.loads(x) for x in (tmp_path / "run" / "generations.jsonl").read_text().splitlines()]
    assert len(gens) == 40 and all(g["correct"] in (True, False) and g["plus"] in (True, False) for g in gens)
    assert r["final"]["accuracy"] == sum(r["final"]["sets"].values()) / 2
    lo, hi = r["final"]["accuracy_ci"]  # stratified over the two sets
    assert lo <= r["final"]["accuracy"] <= hi
    for name, d in r["final"]["details"].items():  # base is the set's figure, plus beside it
        assert d["base"] == r["final"]["sets"][name] and d["plus"] <= d["base"]


@pytest.mark.slow
def test_humaneval_plus_canonical_solutions_pass_base_and_plus_and_a_base_only_fix_passes_base_alone():
    """HumanEval+ (evalplus's release file, read as it ships, gzipped), scored as evalplus scores it: the canonical
    solutions pass base and plus on all 164 tasks; a solution right only on small inputs passes base, not plus."""
    from lorabench.config import Source
    from lorabench.data.rows import read_rows

    ev = get_evaluator("humaneval", "humaneval+", {"plus": True})
    data = read_rows(Source(path="code/HumanEvalPlus-v0.1.10.jsonl.gz"), require_data_root()).rows
    golds = [ev.gold(r, "test") for r in data]
    assert len(data) == 164 and sum(len(t["plus"]) for t in ev.plus_tasks.values()) > 100_000
    judged = ev.judge_all([r["canonical_solution"] for r in data], golds)
    assert ev.figures(judged) == (1.0, {"base": 1.0, "plus": 1.0})
    assert ev.figures(ev.judge_all(["    return None\n"] * len(data), golds)) == (0.0, {"base": 0.0, "plus": 0.0})
    small_only = ("    if len(numbers) > 8:\n        return False\n"
                  "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n")
    plain = get_evaluator("humaneval", "humaneval")
    assert plain.correct(small_only, plain.gold(data[0], "test"))  # HumanEval/0's own tests pass …
    assert ev.judge(small_only, golds[0]) == {"correct": True, "plus": False}  # … base too, plus does not
    assert ev.judge("    return None\n", golds[0]) == {"correct": False, "plus": False}


@pytest.mark.slow
def test_mbpp_plus_canonical_solutions_pass_base_and_plus_on_all_378_tasks():
    """MBPP+ v0.2.0: every canonical solution passes the differential test on its base and plus inputs, rebuilt
    per task as evalplus does (without the rebuild Mbpp/106, 124, 252, 580 … fail); wrong solutions fail."""
    from lorabench.config import Source
    from lorabench.data.rows import read_rows
    from lorabench.evaluators.plus import MBPP_SHAPES

    ev = get_evaluator("mbpp", "mbpp+", {"plus": True})
    data = read_rows(Source(path="code/MbppPlus-v0.2.0.jsonl.gz"), require_data_root()).rows
    golds = [ev.gold(r, "assertion") for r in data]
    assert len(data) == 378 and sum(len(t["plus"]) for t in ev.plus_tasks.values()) > 30_000
    shaped = {t for t, p in ev.plus_tasks.items() if p["shape"]}
    listed = {f"Mbpp/{n}" for v in MBPP_SHAPES.values() for n in v}
    assert shaped == listed & set(ev.plus_tasks) and len(shaped) == 52  # of 61 listed, 52 are in v0.2.0
    assert {"Mbpp/106", "Mbpp/124", "Mbpp/252", "Mbpp/580"} <= shaped
    judged = ev.judge_all([r["canonical_solution"] for r in data], golds)
    assert [r["task_id"] for r, j in zip(data, judged) if not j["plus"]] == []
    assert ev.figures(judged) == (1.0, {"base": 1.0, "plus": 1.0})
    wrong = ev.judge_all([f"def {r['entry_point']}(*args):\n    return None" for r in data], golds)
    assert ev.figures(wrong) == (0.0, {"base": 0.0, "plus": 0.0})  # (are_equivalent, whose oracle accepts
    # anything, is not in v0.2.0)
    by_id = {r["task_id"]: g for r, g in zip(data, golds)}
    # similar_elements: compared as sets, so any order of the shared elements passes
    assert ev.judge("def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b), reverse=True))",
                    by_id["Mbpp/2"]) == {"correct": True, "plus": True}
    assert not ev.judge("def similar_elements(a, b):\n    return (4, 5)", by_id["Mbpp/2"])["correct"]
    assert not ev.judge("def angle_complex(a, b):\n    return 0.0", by_id["Mbpp/124"])["plus"]
