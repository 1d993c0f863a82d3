"""Rendering a benchmark report: sections of text, tables and figures as Markdown and as one
self-contained HTML page (figures embedded as base64 PNG). What goes in the report is
:mod:`unlearnkit.bench.report`; this module only lays it out.
"""

from __future__ import annotations

import base64
import html
import time
from dataclasses import dataclass, field
from pathlib import Path

from unlearnkit.bench.tables import Table


@dataclass
class Figure:
    title: str
    path: Path
    caption: str = ""


@dataclass
class Section:
    title: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def to_markdown(title: str, sections: list[Section], root: Path) -> str:
    lines = [f"# {title}", "", f"_Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')}._", ""]
    for sec in sections:
        lines += [f"## {sec.title}", ""]
        if sec.text:
            lines += [sec.text, ""]
        for t in sec.tables:
            lines += [f"**{t.title}**", ""]
            lines.append("| " + " | ".join(_md_cell(h) for h in t.headers) + " |")
            lines.append("|" + "---|" * len(t.headers))
            lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in t.rows]
            lines.append("")
            if t.note:
                lines += [f"_{t.note}_", ""]
        for f in sec.figures:
            lines += [f"![{f.title}]({f.path.relative_to(root).as_posix()})", ""]
            if f.caption:
                lines += [f"_{f.caption}_", ""]
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 0.3em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
caption { font-weight: bold; text-align: left; padding: 4px 0; }
.note { font-size: 0.8em; color: #555; margin-bottom: 1.2em; }
img { max-width: 100%; border: 1px solid #eee; }
"""


def to_html(title: str, sections: list[Section]) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1><p class='note'>Generated {e(time.strftime('%Y-%m-%d %H:%M:%S %Z'))}"
        "</p>",
    ]
    for sec in sections:
        parts.append(f"<h2>{e(sec.title)}</h2>")
        if sec.text:
            parts += [f"<p>{e(p)}</p>" for p in sec.text.split("\n\n")]
        for t in sec.tables:
            parts.append(f"<table><caption>{e(t.title)}</caption><tr>")
            parts += [f"<th>{e(h)}</th>" for h in t.headers]
            parts.append("</tr>")
            for r in t.rows:
                parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>")
            parts.append("</table>")
            if t.note:
                parts.append(f"<div class='note'>{e(t.note)}</div>")
        for f in sec.figures:
            data = base64.b64encode(f.path.read_bytes()).decode("ascii")
            parts.append(
                f"<figure><img alt='{e(f.title)}' src='data:image/png;base64,{data}'>"
                f"<figcaption class='note'>{e(f.caption or f.title)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)
