"""report.md and report.html from one list of blocks.

The HTML is self-contained: inline CSS, figures embedded as base64 PNG, no scripts, fonts or links,
so it opens the same offline, in a mail attachment or years later.
"""

from __future__ import annotations

import base64
import html
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .figures import Figure
from .tables import Table


@dataclass
class Block:
    kind: str  # h1, h2, p, ul, table, figure
    value: Any


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _md_table(t: Table) -> str:
    lines = ["| " + " | ".join(_md_cell(c) for c in t.columns) + " |",
             "|" + "|".join("---" if a == "l" else "---:" for a in t.aligns()) + "|"]
    for i, r in enumerate(t.rows):
        cells = [f"**{_md_cell(v)}**" if (i, j) in t.bold else _md_cell(v) for j, v in enumerate(r)]
        lines.append("| " + " | ".join(cells) + " |")
    files = f"`tables/{t.name}.csv`" + (f", `tables/{t.name}.tex`" if t.tex else "")
    return "\n".join(lines) + f"\n\n*{t.caption}* ({files})"


def to_markdown(blocks: list[Block], out_dir: Path) -> str:
    out = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {b.value}")
        elif b.kind == "h2":
            out.append(f"## {b.value}")
        elif b.kind == "p":
            out.append(str(b.value))
        elif b.kind == "ul":
            out.append("\n".join(f"- {x}" for x in b.value))
        elif b.kind == "table":
            out.append(_md_table(b.value))
        elif b.kind == "figure":
            f: Figure = b.value
            rel = f.path.relative_to(out_dir).as_posix()
            out.append(f"![{f.path.stem}]({rel})\n\n*{f.caption}*")
        else:
            raise ValueError(b.kind)
    return "\n\n".join(out) + "\n"


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;max-width:70rem;
margin:2rem auto;padding:0 1.5rem;color:#1d1d1f;line-height:1.5}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #ddd;
padding-bottom:.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem;font-variant-numeric:tabular-nums}
th,td{padding:.25rem .7rem;text-align:right;border-bottom:1px solid #e5e5e5}
th.l,td.l{text-align:left}thead th{border-bottom:2px solid #555}
caption{caption-side:bottom;text-align:left;color:#555;font-size:.85rem;padding-top:.4rem}
figure{margin:1.2rem 0}figure img{max-width:100%;height:auto}
figcaption{color:#555;font-size:.85rem}code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem}
pre{background:#f6f6f6;padding:.6rem;overflow-x:auto}.files{color:#777;font-size:.8rem}
"""


def _html_table(t: Table) -> str:
    al = [' class="l"' if a == "l" else "" for a in t.aligns()]
    head = "".join(f"<th{a}>{html.escape(c)}</th>" for a, c in zip(al, t.columns))
    body = []
    for i, r in enumerate(t.rows):
        cells = "".join(f"<td{al[j]}><b>{html.escape(v)}</b></td>" if (i, j) in t.bold
                        else f"<td{al[j]}>{html.escape(v)}</td>" for j, v in enumerate(r))
        body.append(f"<tr>{cells}</tr>")
    files = f"tables/{t.name}.csv" + (f", tables/{t.name}.tex" if t.tex else "")
    return (f'<table id="table-{t.name}"><caption>{html.escape(t.caption)} '
            f'<span class="files">({html.escape(files)})</span></caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def _css_width(png: bytes) -> int:
    """Display width in CSS pixels: figures drawn at DPI shown at 96 per inch, so all share one scale."""
    from .figures import DPI

    return round(struct.unpack(">I", png[16:20])[0] * 96 / DPI)


def to_html(blocks: list[Block], title: str) -> str:
    out = []
    for b in blocks:
        if b.kind in ("h1", "h2", "p"):
            out.append(f"<{b.kind}>{html.escape(str(b.value))}</{b.kind}>")
        elif b.kind == "ul":
            out.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in b.value) + "</ul>")
        elif b.kind == "table":
            out.append(_html_table(b.value))
        elif b.kind == "figure":
            f: Figure = b.value
            raw = f.path.read_bytes()
            data = base64.b64encode(raw).decode("ascii")
            out.append(f'<figure id="figure-{f.path.stem}"><img src="data:image/png;base64,{data}" '
                       f'width="{_css_width(raw)}" alt="{html.escape(f.path.stem)}">'
                       f"<figcaption>{html.escape(f.caption)}</figcaption></figure>")
        else:
            raise ValueError(b.kind)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(out) + "\n</body></html>\n")
