"""Labelled examples for classification: one text field or a pair of them (NLI-style), integer or string labels,
any number of classes.

Classes are the label values as text, in a fixed order: ``labels`` when the config declares them, else the
training rows' distinct values, sorted (numerically when all are integers). Class k is index k of that list, so
SST-2's ``0``/``1`` stay 0 and 1. A label outside the classes, or an empty text, is a ``DataError`` naming the
file, line and field.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import DataError
from .rows import Rows, text_field, value_field


@dataclass(frozen=True)
class Example:
    texts: tuple[str, ...]  # the text field(s), in the configured order
    label: int  # the class index


def label_key(value: Any) -> str | None:
    """A label value as the text classes are keyed by (``1``, ``1.0`` and ``"1"`` are one class); None if it is
    not a label (missing, a bool, a list …)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return str(int(value))
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def classes_of(rows: Rows, field: str, declared: Sequence[str | int] | None) -> list[str]:
    """The classes in order: ``declared``, else the sorted distinct label values of ``rows``."""
    if declared is not None:
        keys = [label_key(v) for v in declared]
        if None in keys or len(set(keys)) != len(keys):
            raise DataError(f"data.labels: {list(declared)} must be distinct non-empty values")
        return [k for k in keys if k is not None]
    found = set()
    for i in range(len(rows.rows)):
        key = label_key(value_field(rows, i, field))
        if key is None:
            raise DataError(f"{rows.where[i]}: field {field!r}: {rows.rows[i][field]!r} is not a label")
        found.add(key)
    if len(found) < 2:
        raise DataError(f"{rows.source}: field {field!r} holds {len(found)} distinct label(s); a classifier needs 2 or more")
    numeric = all(k.lstrip("-").isdigit() for k in found)
    return sorted(found, key=int) if numeric else sorted(found)


def examples_of(rows: Rows, text_fields: Sequence[str], label_field: str, classes: Sequence[str], *,
                declared: bool = False) -> list[Example]:
    index = {c: k for k, c in enumerate(classes)}
    out = []
    for i in range(len(rows.rows)):
        texts = tuple(text_field(rows, i, f).strip() for f in text_fields)
        value = value_field(rows, i, label_field)
        k = index.get(label_key(value) or "")
        if k is None:
            hint = "declared in data.labels" if declared else "the training labels; set data.labels to declare others"
            raise DataError(f"{rows.where[i]}: field {label_field!r}: {value!r} is not one of the classes "
                            f"{list(classes)} ({hint})")
        out.append(Example(texts, k))
    return out


def subset(examples: Sequence[Example], n: int | None, seed: int) -> list[Example]:
    """``n`` examples drawn without replacement with a fixed seed, kept in file order (all when n is None)."""
    if n is None or n >= len(examples):
        return list(examples)
    idx = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in idx]


def stratified(examples: Sequence[Example], n: int | None, seed: int) -> list[Example]:
    """``n`` examples with each class's share of the whole (largest remainders), drawn with ``seed`` within each
    class and kept in file order; all when n is None."""
    if n is None or n >= len(examples):
        return list(examples)
    by_class: dict[int, list[int]] = {}
    for i, e in enumerate(examples):
        by_class.setdefault(e.label, []).append(i)
    quota = {y: n * len(ix) / len(examples) for y, ix in by_class.items()}
    take = {y: int(q) for y, q in quota.items()}
    for y in sorted(quota, key=lambda y: (take[y] - quota[y], y))[: n - sum(take.values())]:
        take[y] += 1
    rng = random.Random(seed)
    chosen = sorted(i for y, ix in sorted(by_class.items()) for i in rng.sample(ix, take[y]))
    return [examples[i] for i in chosen]


def label_counts(examples: Sequence[Example], n_classes: int) -> dict[int, int]:
    return {y: sum(1 for e in examples if e.label == y) for y in range(n_classes)}
