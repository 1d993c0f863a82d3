"""Writing a report figure: matplotlib's non-interactive backend, a PNG and the figure's data.

Every figure of a benchmark report is written as ``<name>.png`` beside ``<name>.json`` (the
numbers it shows), both atomically, so a plot can be checked or redrawn without the store.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from unlearnkit.io import atomic_write_bytes, atomic_write_json


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, data: Any) -> Path:
    """Write ``fig`` to ``path`` (PNG, 110 dpi) and ``data`` to ``path`` with ``.json``; close it."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_json(path.with_suffix(".json"), data)
    return path
