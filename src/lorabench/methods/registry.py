"""The registry of methods: one name, one class, one module."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError, config_error
from .base import Method

_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available under ``cls.name``.

    Method options are flat config keys, so each option name must belong to one method only.
    """
    if cls.name in _REGISTRY:
        raise ValueError(f"method {cls.name!r} registered twice")
    for other in _REGISTRY.values():
        clash = set(cls.Options.model_fields) & set(other.Options.model_fields)
        if clash:
            raise ValueError(f"options {sorted(clash)} of {cls.name!r} already belong to {other.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def get_method(name: str) -> Method:
    try:
        return _REGISTRY[name]()
    except KeyError:
        near = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise KeyError(f"unknown method {name!r}{hint}; known: {', '.join(sorted(_REGISTRY))}") from None


def methods() -> list[str]:
    """The registered method names, in registration order."""
    return list(_REGISTRY)


def method_classes() -> list[type[Method]]:
    return list(_REGISTRY.values())


def option_owner(key: str) -> str | None:
    """The method that takes option ``key``, or None if no method does."""
    for cls in _REGISTRY.values():
        if key in cls.Options.model_fields:
            return cls.name
    return None


def method_options(method: str, options: dict[str, Any]) -> BaseModel:
    """Validate ``options`` against ``method``'s option model; errors name the option and the method."""
    try:
        m = get_method(method)
    except KeyError as e:
        raise ConfigError(f"method: {e.args[0]}") from None
    for key in options:
        if key not in m.Options.model_fields:
            owner = option_owner(key)
            where = f" (it belongs to {owner!r})" if owner else ""
            raise ConfigError(f"{key}: option not taken by method {method!r}{where}")
    try:
        return m.Options(**options)
    except ValidationError as e:
        raise config_error(e, suffix=f" for method {method!r}") from None
