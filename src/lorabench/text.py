"""How numbers read in tables, summaries and progress lines."""

from __future__ import annotations

from typing import Any


def num(v: Any) -> str:
    """A float to 3 significant digits (learning rates, axis values); anything else as ``str``."""
    return f"{v:.3g}" if isinstance(v, float) else str(v)
