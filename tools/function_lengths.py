"""Fail if a function in the given source trees is longer than the limit (lines, docstring included).

    python tools/function_lengths.py src --max 60
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def long_functions(root: Path, limit: int) -> list[tuple[str, int]]:
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > limit:
                    out.append((f"{path}:{node.lineno} {node.name}", n))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("roots", nargs="+", type=Path)
    ap.add_argument("--max", type=int, default=60, help="most lines a function may have (default 60)")
    args = ap.parse_args()
    found = [x for root in args.roots for x in long_functions(root, args.max)]
    for where, n in found:
        print(f"{where}: {n} lines (limit {args.max})")
    if not found:
        print(f"every function is at most {args.max} lines")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
