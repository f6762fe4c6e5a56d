"""MATH and MATH-500: the text after ``The answer is: `` up to ``.\\n``, compared with Hendrycks' ``is_equiv``.

Sources: the scoring script of "Learning Rate Matters" (yuang-lee/lr-matters-lora, ``run-lora/utils/test_acc.py``,
``process_math_results`` and ``is_equiv``), whose equivalence is the one published with MATH (Hendrycks et al.,
2021, ``math_equivalence.py``). Extraction: the text after the last ``The answer is: ``, cut at the first
``.\\n``, stripped, one trailing ``.`` dropped. Equivalence: both strings normalised, then compared exactly;
normalisation, in this order:

1. drop line breaks and ``\\!``; ``\\\\`` → ``\\``; ``tfrac``/``dfrac`` → ``frac``; drop ``\\left``, ``\\right``,
   degree marks ``^{\\circ}``/``^\\circ``, ``\\$``;
2. units: text before ``\\text{ `` when it occurs once;
3. drop ``\\%``; ``" ."`` → ``" 0."``, ``"{."`` → ``"{0."``, a leading ``.`` gets a ``0``;
4. ``k = v`` with a left side of at most 2 characters → ``v``;
5. ``\\sqrt3`` → ``\\sqrt{3}``; spaces dropped; ``\\frac12`` → ``\\frac{1}{2}``, ``\\frac1{b}`` → ``\\frac{1}{b}``;
6. ``0.5`` → ``\\frac{1}{2}``; ``a/b`` of two integers → ``\\frac{a}{b}``.

Quirk reproduced: where the original normalisation raises (``\\text{ `` twice, a ``\\sqrt`` or ``\\frac`` at the
very end, an ``a/b`` whose parts are not integers) the two *raw* strings are compared instead.

Gold: the row's ``answer`` field (the staged MATH files carry the content of the solution's last ``\\boxed{}``).
"""

from __future__ import annotations

from .base import Evaluator

ANSWER = "The answer is: "


class Malformed(Exception):
    """Where the original normalisation raises; the comparison falls back to the raw strings."""


def _units(s: str) -> str:
    if "\\text{ " not in s:
        return s
    parts = s.split("\\text{ ")
    if len(parts) != 2:
        raise Malformed
    return parts[0]


def _sqrt(s: str) -> str:
    head, *rest = s.split("\\sqrt")
    out = head
    for part in rest:
        if not part:
            raise Malformed
        out += "\\sqrt" + (part if part[0] == "{" else "{" + part[0] + "}" + part[1:])
    return out


def _fracs(s: str) -> str:
    head, *rest = s.split("\\frac")
    out = head
    for part in rest:
        out += "\\frac"
        if not part:
            raise Malformed
        if part[0] == "{":
            out += part
        elif len(part) < 2:
            return s  # "\\frac1": left as it was
        elif part[1] != "{":
            out += "{" + part[0] + "}{" + part[1] + "}" + part[2:]
        else:
            out += "{" + part[0] + "}" + part[1:]
    return out


def _slash(s: str) -> str:
    parts = s.split("/")
    if len(parts) != 2:
        return s
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        raise Malformed from None
    return f"\\frac{{{a}}}{{{b}}}" if s == f"{a}/{b}" else s


def normalise(s: str) -> str:
    """Hendrycks' normalisation of a MATH answer (see the module docstring); raises :class:`Malformed`."""
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac").replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "")
    s = _units(s).replace("\\%", "").replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]
    s = _fracs(_sqrt(s).replace(" ", ""))
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _slash(s)


def is_equiv(a: str, b: str) -> bool:
    try:
        return normalise(a) == normalise(b)
    except Malformed:
        return a == b


def stated_answer(text: str) -> str | None:
    if ANSWER not in text:
        return None
    ans = text.split(ANSWER)[-1].split(".\n")[0].strip()
    return ans[:-1].strip() if ans.endswith(".") else ans


class Math(Evaluator):
    name = "math"
    prompt_field = "problem"
    answer_field = "answer"
    max_new_tokens = 1024

    def extract(self, text: str) -> str | None:
        return stated_answer(text)

    def correct(self, extracted: str | None, gold: str) -> bool:
        return extracted is not None and is_equiv(extracted, gold)
