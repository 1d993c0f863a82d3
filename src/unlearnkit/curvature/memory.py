"""Memory accounting shared by the Fisher-inverse solvers, computed *before* anything is allocated.

Each solver states what it keeps for one block (m rows, d_b columns) in its own
``estimate(m, d_b, itemsize)`` classmethod (see :mod:`unlearnkit.curvature.solvers`), as a
:class:`MemoryEstimate`. Estimates are exact for the tensors the solvers allocate, and ignore
allocator slack and the (small) temporaries of a single solve.
"""

from __future__ import annotations

from dataclasses import dataclass

from unlearnkit.errors import MemoryBudgetError

FP64 = 8

#: Bytes of one streaming chunk (rows or columns of G converted to fp64) used by every solver.
DEFAULT_CHUNK_BYTES = 32 * 2**20


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a solver keeps after building (``persistent``) and needs on top while building."""

    persistent: int
    workspace: int

    @property
    def peak(self) -> int:
        return self.persistent + self.workspace


def chunk_bytes_for(elements_per_line: int) -> int:
    """Bytes of one fp64 streaming chunk: as many lines as fit DEFAULT_CHUNK_BYTES (at least 1)."""
    line = max(1, elements_per_line) * FP64
    return max(line, (DEFAULT_CHUNK_BYTES // line) * line)


def format_bytes(n: float) -> str:
    """Human-readable size: ``format_bytes(1536) == '1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_budget(needed: int, budget: int | None, what: str, advice: str) -> None:
    """Raise MemoryBudgetError when ``needed`` bytes exceed ``budget`` (None = no budget)."""
    if budget is not None and needed > budget:
        raise MemoryBudgetError(
            f"{what} needs about {format_bytes(needed)} but the memory budget is "
            f"{format_bytes(budget)}. {advice}"
        )


def default_memory_budget(fraction: float = 0.8) -> int:
    """``fraction`` of the memory available now (``MemAvailable`` in /proc/meminfo), or 8 GiB
    where that cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(int(line.split()[1]) * 1024 * fraction)
    except OSError:
        pass
    return 8 * 2**30
