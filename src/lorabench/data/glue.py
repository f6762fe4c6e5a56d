"""GLUE-format SST-2: a folder with ``train.tsv`` and ``dev.tsv`` (``sentence<TAB>label``, header line),
or the datasets hub (``nyu-mll/glue``, config ``sst2``) when no folder is given.

Every malformed row is a ``DataError`` naming the file and line, before anything is trained or written.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

HUB_ID, HUB_CONFIG = "nyu-mll/glue", "sst2"
LABELS = (0, 1)


@dataclass(frozen=True)
class Example:
    sentence: str
    label: int


@dataclass(frozen=True)
class Split:
    """Examples plus where they came from (a file and its sha256, or the hub)."""

    examples: tuple[Example, ...] | list[Example]  # a file's rows are a tuple: cached, shared, never changed
    source: str
    sha256: str


def read_tsv(path: str | Path) -> Split:
    """Read and validate one GLUE TSV file (kept in memory while the file is unchanged, for the runs of a
    fused group, which read it once each)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    st = path.stat()
    return _read_tsv(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _read_tsv(name: str, mtime_ns: int, size: int) -> Split:
    path = Path(name)
    raw = path.read_bytes()
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark, as some editors write
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        raise DataError(f"{path}:1: empty file, expected a header line 'sentence<TAB>label'")

    def decode(i: int) -> str:
        try:
            return lines[i].decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}:{i + 1}: invalid UTF-8 at byte {e.start}") from None

    header = decode(0).split("\t")
    missing = [c for c in ("sentence", "label") if c not in header]
    if missing:
        raise DataError(f"{path}:1: header lacks column {missing[0]!r} (found {header})")
    twice = [c for c in ("sentence", "label") if header.count(c) > 1]
    if twice:
        raise DataError(f"{path}:1: column {twice[0]!r} appears {header.count(twice[0])} times in the header")
    si, li = header.index("sentence"), header.index("label")
    examples = []
    for i in range(1, len(lines)):
        fields = decode(i).split("\t")
        if len(fields) != len(header):
            raise DataError(f"{path}:{i + 1}: expected {len(header)} tab-separated columns, found {len(fields)}")
        sentence, label = fields[si].strip(), fields[li].strip()
        if not sentence:
            raise DataError(f"{path}:{i + 1}: empty sentence")
        if label not in ("0", "1"):
            raise DataError(f"{path}:{i + 1}: label must be 0 or 1, found {label!r}")
        examples.append(Example(sentence, int(label)))
    if not examples:
        raise DataError(f"{path}: no data rows after the header")
    return Split(tuple(examples), str(path.resolve()), hashlib.sha256(raw).hexdigest())


def load_hub() -> tuple[Split, Split]:
    """SST-2 train and validation splits from the datasets hub."""
    try:
        import datasets

        ds = datasets.load_dataset(HUB_ID, HUB_CONFIG)
    except Exception as e:  # offline, no such dataset, …: all end the same way for the user
        raise DataError(
            f"no data folder set (data.dir or LORABENCH_DATA_DIR) and the hub dataset {HUB_ID}/{HUB_CONFIG} "
            f"could not be loaded: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from None

    def split(name: str) -> Split:
        d = ds[name]
        return Split([Example(s.strip(), int(y)) for s, y in zip(d["sentence"], d["label"])],
                     f"hub:{HUB_ID}/{HUB_CONFIG}/{name}", d._fingerprint)

    return split("train"), split("validation")


def load_sst2(data_dir: str | None) -> tuple[Split, Split]:
    """(train, dev) from ``data_dir`` (GLUE layout) or the hub when ``data_dir`` is None."""
    if data_dir is None:
        return load_hub()
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    return read_tsv(root / "train.tsv"), read_tsv(root / "dev.tsv")


def subset(examples: Sequence[Example], n: int | None, seed: int) -> list[Example]:
    """``n`` examples drawn without replacement with a fixed seed (all, in file order, when n is None)."""
    if n is None or n >= len(examples):
        return list(examples)
    idx = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in idx]


def label_counts(examples: list[Example]) -> dict[int, int]:
    return {y: sum(1 for e in examples if e.label == y) for y in LABELS}
