"""Rows from a local CSV, TSV, JSON, JSON-lines or Parquet file, a ``datasets.save_to_disk`` folder or the hub.

Every problem is a ``DataError`` naming the file, the line (JSON lines) or row (a JSON array) and the field,
raised before anything is trained or written. A source keeps its first ``n`` rows in file order, or (with
``sample_seed``) a seeded sample of ``n``, the same for every run.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError

if TYPE_CHECKING:
    from ..config import Source


@dataclass(frozen=True)
class Rows:
    """Rows (JSON objects), where each came from (``where[i]``: ``file:line``), and the source's identity."""

    rows: list[dict[str, Any]]
    where: list[str]
    source: str
    sha256: str


def _read_json_file(path: Path) -> Rows:
    raw = path.read_bytes()
    if path.suffix == ".gz":  # e.g. evalplus's release files
        import gzip

        raw = gzip.decompress(raw)
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: invalid UTF-8 at byte {e.start}") from None
    digest = hashlib.sha256(raw).hexdigest()
    if ".json" in path.suffixes[-2:] and text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        where = [f"{path}: row {i + 1}" for i in range(len(data))]
        rows = data
    else:
        rows, where = [], []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{i}: not a JSON line ({e.msg} at column {e.colno})") from None
            where.append(f"{path}:{i}")
    for w, r in zip(where, rows):
        if not isinstance(r, dict):
            raise DataError(f"{w}: expected a JSON object, found {type(r).__name__}")
    if not rows:
        raise DataError(f"{path}: no rows")
    return Rows(rows, where, str(path.resolve()), digest)


def _read_delimited(path: Path, delimiter: str) -> Rows:
    """A CSV (quoted fields allowed) or TSV (no quoting, as GLUE writes it) file with a header line."""
    import csv

    raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: invalid UTF-8 at byte {e.start}") from None
    csv.field_size_limit(2**31 - 1)  # a long document is a row, not an error
    lines = io.StringIO(text, newline="")
    reader = (csv.reader(lines, delimiter=delimiter, quoting=csv.QUOTE_NONE) if delimiter == "\t"
              else csv.reader(lines, delimiter=delimiter))
    try:
        return _delimited_rows(path, reader, delimiter, hashlib.sha256(raw).hexdigest())
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: malformed {'TSV' if delimiter == chr(9) else 'CSV'} ({e})") from None


def _delimited_rows(path: Path, reader: Any, delimiter: str, digest: str) -> Rows:
    header = next(reader, None)
    if not header:
        raise DataError(f"{path}:1: empty file, expected a header line")
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        raise DataError(f"{path}:1: column {twice[0]!r} appears {header.count(twice[0])} times in the header")
    rows, where = [], []
    kind = "tab-separated" if delimiter == "\t" else "comma-separated"
    for fields in reader:
        if not fields:
            continue
        if len(fields) != len(header):
            raise DataError(f"{path}:{reader.line_num}: expected {len(header)} {kind} columns, found {len(fields)}")
        rows.append(dict(zip(header, fields)))
        where.append(f"{path}:{reader.line_num}")
    if not rows:
        raise DataError(f"{path}: no data rows after the header")
    return Rows(rows, where, str(path.resolve()), digest)


def _read_parquet(path: Path) -> Rows:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # not Parquet, truncated …: one line for the user
        raise DataError(f"{path}: not a readable Parquet file ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    rows = table.to_pylist()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Rows(rows, [f"{path}: row {i + 1}" for i in range(len(rows))], str(path.resolve()), digest)


READERS = {".json": _read_json_file, ".jsonl": _read_json_file, ".json.gz": _read_json_file,
           ".jsonl.gz": _read_json_file, ".csv": lambda p: _read_delimited(p, ","),
           ".tsv": lambda p: _read_delimited(p, "\t"), ".parquet": _read_parquet}


def _from_dataset(ds: Any, source: str) -> Rows:
    rows = [dict(r) for r in ds]
    return Rows(rows, [f"{source}: row {i + 1}" for i in range(len(rows))], source,
                getattr(ds, "_fingerprint", "") or "")


def _read_folder(path: Path, split: str) -> Rows:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: a folder but not a datasets.save_to_disk folder (no dataset_info.json)") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"{path}: no split {split!r} (it has {', '.join(ds)})")
        ds = ds[split]
    return _from_dataset(ds, str(path.resolve()))


def _read_hub(src: Source) -> Rows:
    split = src.split if src.n is None or src.sample_seed is not None else f"{src.split}[:{src.n}]"
    name = f"hub:{src.hub}" + (f"/{src.subset}" if src.subset else "") + (f"/{src.data_dir}" if src.data_dir else "")
    try:
        import datasets

        ds = datasets.load_dataset(src.hub, src.subset, data_dir=src.data_dir, split=split)
    except Exception as e:  # offline, no such dataset or split: all end the same way for the user
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DataError(f"{name}: cannot load split {split!r}: {type(e).__name__}: {first}") from None
    return _from_dataset(ds, f"{name}/{split}")


def read_rows(src: Source, root: Path) -> Rows:
    """The rows of ``src`` (relative paths under ``root``), cut to ``src.n``."""
    if src.hub is not None:
        rows = _read_hub(src)
    else:
        assert src.path is not None  # Source's validator: one of path and hub
        if root.is_file():
            raise DataError(f"{root}: a file where a folder is expected (data.dir, or its environment variable, "
                            "names the folder the data paths start from)")
        path = Path(src.path) if Path(src.path).is_absolute() else root / src.path
        if path.is_dir():
            rows = _read_folder(path, src.split)
        elif path.is_file():
            kind = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
            if kind not in READERS:
                raise DataError(f"{path}: expected a {', '.join(READERS)} file, or a datasets folder")
            rows = READERS[kind](path)
        else:
            raise DataError(f"{path}: file not found (relative paths start from data.dir)")
    return take(rows, src.n, src.sample_seed)


def take(rows: Rows, n: int | None, seed: int | None) -> Rows:
    """The first ``n`` rows, or ``n`` drawn with ``seed`` (kept in file order); all when ``n`` is None."""
    if n is None or n >= len(rows.rows):
        if n is not None and n > len(rows.rows):
            raise DataError(f"{rows.source}: n = {n} exceeds its {len(rows.rows)} rows")
        return rows
    idx = list(range(n)) if seed is None else sorted(random.Random(seed).sample(range(len(rows.rows)), n))
    return Rows([rows.rows[i] for i in idx], [rows.where[i] for i in idx], rows.source, rows.sha256)


def value_field(rows: Rows, i: int, field: str) -> Any:
    """Row ``i``'s ``field`` as stored; a missing field is a ``DataError`` naming the fields there are."""
    row = rows.rows[i]
    if field not in row:
        raise DataError(f"{rows.where[i]}: field {field!r} missing (the row has {', '.join(sorted(row)[:8])})")
    return row[field]


def text_field(rows: Rows, i: int, field: str, *, required: bool = True) -> str:
    """Row ``i``'s ``field`` as text; a missing, non-text or (if ``required``) empty field is a ``DataError``."""
    value = value_field(rows, i, field)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{rows.where[i]}: field {field!r} must be text, found {type(value).__name__}")
    if required and not value.strip():
        raise DataError(f"{rows.where[i]}: field {field!r} is empty")
    return value
