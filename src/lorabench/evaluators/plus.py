"""evalplus's differential "plus" test: a program's output on every base and plus input must match the canonical
solution's, by evalplus's rules (``evalplus/eval/__init__.py``, ``unsafe_execute``, and ``evalplus/data/mbpp.py``,
``mbpp_deserialize_inputs``, of evalplus 0.3.1):

- outputs match when ``out == expected``; when not, and the task has a tolerance ``atol`` (1e-6 is imposed when
  ``atol`` is 0 and the expected output is a float or a non-empty list/tuple of floats), they match when of the
  same type and length and ``numpy.allclose(out, expected, rtol=1e-7, atol=atol)``;
- special oracles: HumanEval/32 (``find_zero``) accepts any x with ``|poly(xs, x)| ≤ atol``; MBPP's
  ``are_equivalent`` accepts anything, ``sum_div`` also 0, ``surface_Area`` and ``digit_distance_nums`` also
  the value of evalplus's alternative reading of the task, eight tasks compare outputs as sets, and for three
  the expected output is whether the canonical one is not None;
- MBPP+ inputs are stored as JSON, which has no tuples, sets or complex numbers: evalplus rebuilds them per task
  (:data:`MBPP_SHAPES`) before calling the function, and so does the program here.

Expected outputs are computed in the same sandboxed process, by the canonical solution on a deep copy of each
input, as evalplus does. Base inputs run first and the program says so when they all match; the plus inputs
follow in the same process (evalplus runs two, but plus counts only when base passed, so one start per task
gives the same pair of results at half the interpreter starts).
"""

from __future__ import annotations

import json
from typing import Any

from .sandbox import program

BASE_PASSED = "LORABENCH-BASE-PASSED-2c9e"  # printed once every base input matched

# evalplus's per-task rebuild of MBPP+ inputs (task number → rule of SHAPE_RULES)
MBPP_SHAPES: dict[str, tuple[int, ...]] = {
    "each_arg_tuple": (2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630,
                       726, 740, 744, 809),
    "each_arg_list_of_tuples": (63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780),
    "first_arg_list_of_tuples": (75, 413, 444, 753),
    "second_arg_tuple": (106, 750),
    "first_arg_sets": (115,),
    "float_and_complex": (124,),
    "first_arg_tuple": (250, 405, 446, 617, 720, 763, 808),
    "each_arg_tuple_of_tuples": (259, 401, 445),
    "first_arg_tuple_of_tuples_and_values": (278,),
    "dict_of_tuples_first": (722,),
    "complex_arg": (252,),
    "all_tuples": (580, 615, 791),
}

SHAPE_RULES = '''
def _deep_tuple(x):
    return tuple(_deep_tuple(y) for y in x) if isinstance(x, list) else x
_RULES = {
    "each_arg_tuple": lambda a: [tuple(x) for x in a],
    "each_arg_list_of_tuples": lambda a: [[tuple(y) for y in x] for x in a],
    "first_arg_list_of_tuples": lambda a: [[tuple(y) for y in a[0]], a[1]],
    "second_arg_tuple": lambda a: [a[0], tuple(a[1])],
    "first_arg_sets": lambda a: [[set(y) if isinstance(y, list) and y else {} for y in a[0]]],
    "float_and_complex": lambda a: (float(a[0]), complex(a[1])),
    "first_arg_tuple": lambda a: [tuple(a[0]), *a[1:]],
    "each_arg_tuple_of_tuples": lambda a: [tuple(tuple(y) for y in x) for x in a],
    "first_arg_tuple_of_tuples_and_values": lambda a: [tuple(tuple(y) if isinstance(y, list) else y for y in a[0])],
    "dict_of_tuples_first": lambda a: [{k: tuple(v) for k, v in a[0].items()}, *a[1:]],
    "complex_arg": lambda a: [complex(a[0])],
    "all_tuples": _deep_tuple,
}
'''

ORACLES = '''
SET_EQ = {"similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly", "larg_nnum",
          "intersection_array", "find_dissimilar", "Diff"}
NOT_NONE = {"check_str", "text_match_three", "text_starta_endb"}
def _floats(x):
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(y, float) for y in x)
    return isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64)
def _surface_area(edge, height):
    return round(edge ** 2 + 2 * edge * math.sqrt((edge / 2) ** 2 + height ** 2))
def _digit_distance(a, b):
    n = max(len(str(a)), len(str(b)))
    return sum(abs(int(x) - int(y)) for x, y in zip(str(a).zfill(n), str(b).zfill(n)))
def _matches(out, exp, args, atol):
    same = out == exp
    if _DATASET == "humaneval" and _ENTRY == "find_zero":
        return abs(sum(c * math.pow(out, i) for i, c in enumerate(args[0]))) <= atol
    if _DATASET == "mbpp":
        if _ENTRY == "are_equivalent":
            return True
        if _ENTRY == "sum_div":
            same = same or out == 0
        elif _ENTRY == "surface_Area":
            same = same or abs(out - _surface_area(*args)) <= atol
        elif _ENTRY == "digit_distance_nums":
            same = same or out == _digit_distance(*args)
        elif _ENTRY in SET_EQ:
            same = set(out) == set(exp)
        elif _ENTRY in NOT_NONE:
            same = out == exp if isinstance(out, bool) else exp == (out is not None)
    if atol == 0 and _floats(exp):
        atol = 1e-6
    if not same and atol != 0:
        if type(out) is not type(exp) or (isinstance(exp, (list, tuple)) and len(out) != len(exp)):
            return False
        return bool(np.allclose(out, exp, rtol=1e-07, atol=atol))
    return bool(same)
_ref, _cand = {}, {}
exec(compile(_REF, "reference", "exec"), _ref)
exec(compile(_CAND, "candidate", "exec"), _cand)
def _check(inputs, kind):
    for _i, _args in enumerate(inputs):
        _exp = _ref[_ENTRY](*copy.deepcopy(_args))
        if _DATASET == "mbpp" and _ENTRY in NOT_NONE:
            _exp = _exp is not None
        assert _matches(_cand[_ENTRY](*copy.deepcopy(_args)), _exp, _args, _ATOL), f"{kind} input {_i}"
_check(_BASE, "base")
print(BASE_PASSED, flush=True)
_check(_PLUS, "plus")
'''


def shape_of(task_id: str) -> str | None:
    """The rule rebuilding MBPP+ task ``task_id``'s inputs ("Mbpp/106" → "second_arg_tuple"), if it has one."""
    number = int(task_id.rsplit("/", 1)[-1])
    return next((rule for rule, tasks in MBPP_SHAPES.items() if number in tasks), None)


def differential(dataset: str, reference: str, candidate: str, entry: str, base: list[Any], plus: list[Any],
                 atol: float, shape: str | None = None) -> str:
    """A program that prints :data:`BASE_PASSED` once ``candidate`` matches ``reference`` on every base input, and
    passes when it matches on every plus input too (see the module docstring). One process runs both, in that
    order, as evalplus's two executions would: plus counts only after base."""
    rebuild = (f"_BASE = [_RULES[{shape!r}](a) for a in _BASE]\n_PLUS = [_RULES[{shape!r}](a) for a in _PLUS]\n"
               if shape else "")
    setup = ("import copy, math\nimport numpy as np\n"  # before the guard
             f"_DATASET = {dataset!r}\n_REF = {reference!r}\n_CAND = {candidate!r}\n_ENTRY = {entry!r}\n"
             f"_BASE = __import__('json').loads({json.dumps(base)!r})\n"
             f"_PLUS = __import__('json').loads({json.dumps(plus)!r})\n_ATOL = {float(atol)!r}\n"
             f"BASE_PASSED = {BASE_PASSED!r}\n{SHAPE_RULES}{rebuild}")
    return program(setup, "", ORACLES)
