"""Memory estimates for the exact Fisher-inverse solvers, computed *before* anything is allocated.

Per block, F = λI + (1/N)·GᵀG with G of shape (m, d_b). What each solver keeps
(ssse-engine.md §4.2; all factors are fp64, G keeps its own dtype):

* ``dense``            — A = GᵀG and the Cholesky factor of λI + A/N: 2·d_b² fp64, plus
  the rows' squared norms (m fp64, to check rows passed to downdates).
  Build workspace: the shifted matrix (d_b² fp64) and one fp64 chunk of rows.
* ``woodbury``         — G (m·d_b, input dtype), K = GGᵀ and the Cholesky factor of
  NλI + K: 2·m² fp64. Build workspace: the shifted matrix (m² fp64) and one fp64 column chunk.
* ``sherman_morrison`` — the dense inverse (d_b² fp64) and G (kept for exact rebuilds).
  Workspace: two fp64 vectors.

Estimates are exact for the tensors the solvers allocate, and ignore allocator slack and
the (small) temporaries of a single solve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from unlearnkit.errors import ConfigError, MemoryBudgetError
from unlearnkit.registry import Registry

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


Estimator = Callable[[int, int, int], MemoryEstimate]  # (m, d_b, itemsize) -> estimate

ESTIMATORS: Registry[Estimator] = Registry("memory estimator")


def _chunk(elements_per_line: int) -> int:
    """Bytes of one fp64 streaming chunk: as many lines as fit DEFAULT_CHUNK_BYTES (at least 1)."""
    line = max(1, elements_per_line) * FP64
    return max(line, (DEFAULT_CHUNK_BYTES // line) * line)


@ESTIMATORS.register("dense")
def _dense(m: int, d_b: int, itemsize: int) -> MemoryEstimate:
    return MemoryEstimate(
        persistent=2 * d_b * d_b * FP64 + m * FP64,
        workspace=d_b * d_b * FP64 + min(m * d_b * FP64, _chunk(d_b)),
    )


@ESTIMATORS.register("woodbury")
def _woodbury(m: int, d_b: int, itemsize: int) -> MemoryEstimate:
    return MemoryEstimate(
        persistent=m * d_b * itemsize + 2 * m * m * FP64,
        workspace=m * m * FP64 + min(m * d_b * FP64, _chunk(m)),
    )


@ESTIMATORS.register("sherman_morrison")
def _sherman_morrison(m: int, d_b: int, itemsize: int) -> MemoryEstimate:
    return MemoryEstimate(
        persistent=d_b * d_b * FP64 + m * d_b * itemsize, workspace=3 * d_b * FP64
    )


def estimate(method: str, m: int, d_b: int, dtype: torch.dtype = torch.float32) -> MemoryEstimate:
    """Persistent and workspace bytes of solver ``method`` for one block of m rows and d_b columns."""
    if m < 0 or d_b < 0:
        raise ConfigError(f"block sizes must be non-negative, got m={m}, d_b={d_b}")
    itemsize = torch.empty((), dtype=dtype).element_size()
    return ESTIMATORS.get(method)(m, d_b, itemsize)


def estimate_bytes(method: str, m: int, d_b: int, dtype: torch.dtype = torch.float32) -> int:
    """Peak bytes (persistent + build workspace) of ``method`` for one (m, d_b) block."""
    return estimate(method, m, d_b, dtype).peak


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
