"""Automatic per-block choice between ``dense`` and ``woodbury`` (ssse-engine.md §0.4, §4.2).

Cost model in multiply-adds, for m rows and block size d_b:

    dense    : m·d_b² + d_b³/3      (syrk + Cholesky),   memory ≈ d_b²
    woodbury : m²·d_b + m³/3        (Gram + Cholesky),   memory ≈ m·d_b + m²

The cheaper one in flops wins among those whose estimated peak memory (see
:mod:`unlearnkit.curvature.memory`) fits the budget; none fitting raises MemoryBudgetError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from unlearnkit.curvature.memory import DEFAULT_CHUNK_BYTES, estimate_bytes, format_bytes
from unlearnkit.curvature.solvers.base import SOLVERS, BlockInverse, Solver
from unlearnkit.errors import MemoryBudgetError

CANDIDATES: tuple[str, ...] = ("dense", "woodbury")


#: Multiply-adds to build one block, by method: (m, d_b) -> flops.
BUILD_FLOPS: dict[str, Callable[[int, int], float]] = {
    "dense": lambda m, d: m * d * d + d**3 / 3,
    "woodbury": lambda m, d: m * m * d + m**3 / 3,
    "sherman_morrison": lambda m, d: 2.0 * m * d * d,
}


def build_flops(method: str, m: int, d_b: int) -> float:
    """Multiply-adds to build one (m, d_b) block with ``method`` (the cost model above)."""
    return BUILD_FLOPS[method](m, d_b)


@dataclass(frozen=True)
class Choice:
    """The solver picked for one block and a human-readable reason."""

    method: str
    reason: str
    flops: float
    bytes: int


@SOLVERS.register("auto")
class AutoSolver(Solver):
    """Picks ``dense`` or ``woodbury`` per block by flops, under an optional memory budget."""

    name = "auto"

    def __init__(
        self, memory_budget_bytes: int | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES
    ) -> None:
        super().__init__(chunk_bytes)
        self.memory_budget_bytes = memory_budget_bytes

    def choose(
        self,
        m: int,
        d_b: int,
        dtype: torch.dtype = torch.float32,
        memory_budget_bytes: int | None = None,
    ) -> Choice:
        """The cheapest candidate that fits ``memory_budget_bytes`` (default: the solver's)."""
        budget = self.memory_budget_bytes if memory_budget_bytes is None else memory_budget_bytes
        cost = {k: build_flops(k, m, d_b) for k in CANDIDATES}
        mem = {k: estimate_bytes(k, m, d_b, dtype) for k in CANDIDATES}
        fits = [k for k in CANDIDATES if budget is None or mem[k] <= budget]
        if not fits:
            raise MemoryBudgetError(
                f"a block with m={m} rows and d_b={d_b} needs {format_bytes(mem['dense'])} "
                f"(dense) or {format_bytes(mem['woodbury'])} (woodbury), more than the budget "
                f"of {format_bytes(budget or 0)}; use smaller blocks or group the gradients "
                "(fewer rows)"
            )
        best = min(fits, key=lambda k: (cost[k], mem[k]))
        other = next(k for k in CANDIDATES if k != best)
        rel = "<" if m < d_b else (">" if m > d_b else "=")
        reason = (
            f"{best}: m={m} {rel} d_b={d_b}; {cost[best]:.2g} vs {cost[other]:.2g} "
            f"flops; {format_bytes(mem[best])} vs {format_bytes(mem[other])}"
        )
        if other not in fits and cost[other] < cost[best]:
            reason += f" ({other} is cheaper but exceeds the budget of {format_bytes(budget or 0)})"
        return Choice(best, reason, cost[best], mem[best])

    def build(
        self, G: Tensor, damping: float, normalizer: float, *, name: str = "block"
    ) -> BlockInverse:
        choice = self.choose(G.shape[0], G.shape[1], G.dtype)
        return SOLVERS.get(choice.method)(self.chunk_bytes).build(G, damping, normalizer, name=name)
