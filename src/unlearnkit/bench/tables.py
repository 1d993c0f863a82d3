"""The report's tables and their export: every table as CSV and as a LaTeX ``tabular``.

:func:`export_tables` writes ``DIR/tables/NN-<slug>.csv`` (RFC 4180 via :mod:`csv`, a header
row then the cells as the report prints them) and ``NN-<slug>.tex`` (a ``table`` with a
booktabs ``tabular``, the title as caption, the note below; LaTeX's special characters
escaped, ``±`` as ``$\\pm$``), ``NN`` being the table's position in the report.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from unlearnkit.io import atomic_write_bytes


@dataclass
class Table:
    """A titled table rendered to Markdown and HTML alike."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "‖": r"$\|$",
    "₂": r"$_2$",
    "≈": r"$\approx$",
    "≤": r"$\le$",
    "≥": r"$\ge$",
    "—": "---",
    "−": "-",
    "ρ": r"$\rho$",
    "Δ": r"$\Delta$",
}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters (and the report's symbols) escaped."""
    return "".join(_LATEX.get(ch, ch) for ch in text)


def to_csv(table: Table) -> str:
    """The header row and the rows, as CSV text."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(table.headers)
    w.writerows(table.rows)
    return buf.getvalue()


def to_latex(table: Table) -> str:
    """A ``table`` float with a booktabs ``tabular`` (first column left, others right)."""
    spec = "l" + "r" * (len(table.headers) - 1)
    lines = [
        r"\begin{table}[ht]",
        r"\centering",
        rf"\caption{{{latex_escape(table.title)}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in table.headers) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.note:
        lines.append(rf"\par\smallskip{{\footnotesize {latex_escape(table.note)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def slug(title: str) -> str:
    """A file name stem from a title: lower case, runs of other characters as ``-``."""
    s = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return s[:60].rstrip("-") or "table"


def export_tables(tables: Sequence[Table], out: Path) -> list[Path]:
    """Write every table as CSV and LaTeX under ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, t in enumerate(tables, start=1):
        stem = out / f"{i:02d}-{slug(t.title)}"
        for suffix, text in ((".csv", to_csv(t)), (".tex", to_latex(t))):
            path = stem.with_suffix(suffix)
            atomic_write_bytes(path, text.encode("utf-8"))
            paths.append(path)
    return paths
