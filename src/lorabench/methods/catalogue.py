"""Every method's options and fixed settings, each with its default and the source of that default.

Read from the method classes (their ``Options`` fields made with :func:`~lorabench.methods.base.option`
and their ``choices``), so the listing cannot drift from the code. ``lorabench methods --verbose``
prints it; ``docs/methods.md`` is :func:`markdown`'s output (``make docs``), and a test checks it is current.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Method
from .registry import method_classes


@dataclass(frozen=True)
class Row:
    setting: str
    kind: str  # "option" (a config key) or "fixed"
    value: str
    source: str
    elsewhere: str


def _show(value: object) -> str:
    if value is None:
        return "unset"
    return f"{value:g}" if isinstance(value, float) else str(value)


def rows(cls: type[Method]) -> list[Row]:
    """The method's options (config keys), then its fixed settings."""
    out = []
    for name, field in cls.Options.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        out.append(Row(name, "option", _show(field.default), str(extra.get("source", "")),
                       str(extra.get("elsewhere", ""))))
    out += [Row(c.setting, "fixed", c.value, c.source, c.elsewhere) for c in cls.choices]
    out.append(Row("rate from λ_max", "fixed", cls.lr_rule.value, cls.lr_note,
                   "lorabench suggest-lr and strategy: hessian (lr_ref · (λ_ref / λ_max)^γ)"))
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|") or "–"


def markdown() -> str:
    """``docs/methods.md``: one table per method."""
    lines = ["# Methods: settings, defaults and where they come from", "",
             "Generated from the method modules by `make docs` (`lorabench methods --markdown`); do not edit by hand.",
             "\"option\" rows are config keys (`--set key=value`, or a sweep axis); \"fixed\" rows are part of the "
             "method's definition here. \"Elsewhere\" says what the paper, the authors' code, PEFT or the two "
             "studies do instead, where that differs.", ""]
    for cls in method_classes():
        lines += [f"## `{cls.name}`", "", f"{cls.summary}. {cls.paper}.", "",
                  "| setting | kind | lorabench | source | elsewhere |", "|---|---|---|---|---|"]
        lines += [f"| `{r.setting}` | {r.kind} | {_cell(r.value)} | {_cell(r.source)} | {_cell(r.elsewhere)} |"
                  for r in rows(cls)]
        lines.append("")
    return "\n".join(lines)


def text() -> str:
    """The same listing for a terminal."""
    out = []
    for cls in method_classes():
        out.append(f"{cls.name}: {cls.summary}  [{cls.paper}]")
        for r in rows(cls):
            key = r.setting if r.kind == "fixed" else f"{r.setting} (option)"
            out.append(f"  {key}: {r.value}")
            out.append(f"      source: {r.source or '-'}" + (f"; elsewhere: {r.elsewhere}" if r.elsewhere else ""))
        out.append("")
    return "\n".join(out).rstrip() + "\n"
