"""User-facing errors: each one is printed as a single line and ends the CLI with exit status 2."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class LorabenchError(Exception):
    """Bad input that the user can fix (a config key, a data file, a model path)."""


class ConfigError(LorabenchError):
    """A config key is unknown or its value is invalid."""


class DataError(LorabenchError):
    """A data file is missing or malformed; the message names the file and line."""


class ModelError(LorabenchError):
    """A model cannot be loaded or does not fit the requested head."""


TASK_KINDS = ("classification", "sft")  # the tags pydantic puts in the path of a data.kind union member


def did_you_mean(key: str, known: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the known name closest to ``key``, or nothing."""
    import difflib

    near = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def config_error(e: ValidationError, source: str = "", suffix: str = "", known: list[str] | None = None) -> ConfigError:
    """A pydantic validation error as one line: ``source: key: what is wrong (got value)``."""
    err = e.errors()[0]
    key = ".".join(str(x) for x in err["loc"] if x not in TASK_KINDS) or "(top level)"
    extra = err["type"] == "extra_forbidden"
    msg = "unknown config key" if extra else err["msg"].removeprefix("Value error, ")
    if extra and known:
        msg += did_you_mean(str(err["loc"][-1]), known)
    got = "" if extra or "input" not in err else f" (got {err['input']!r})"
    return ConfigError(f"{source + ': ' if source else ''}{key}: {msg}{got}{suffix}")
