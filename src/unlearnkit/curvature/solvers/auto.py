"""Automatic per-block choice among the registered solvers (ssse-engine.md §0.4, §4.2).

The candidates are the registered solvers with ``auto_candidate = True`` (today ``dense``,
m·d_b² + d_b³/3 multiply-adds and ≈ d_b² memory, and ``woodbury``, m²·d_b + m³/3 and
≈ m·d_b + m²). Each states its own build cost (``build_flops``) and memory (``estimate``):
the cheapest in flops wins among those whose estimated peak memory fits the budget (ties: the
smaller memory, then the name); none fitting raises MemoryBudgetError.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from unlearnkit.curvature.memory import DEFAULT_CHUNK_BYTES, MemoryEstimate, format_bytes
from unlearnkit.curvature.solvers.base import BlockInverse, Solver
from unlearnkit.curvature.solvers.registry import SOLVERS, auto_candidates, register_solver
from unlearnkit.errors import ConfigError, MemoryBudgetError


@dataclass(frozen=True)
class Choice:
    """The solver picked for one block and a human-readable reason."""

    method: str
    reason: str
    flops: float
    bytes: int


@register_solver
class AutoSolver(Solver):
    """Picks a candidate solver per block by flops, under an optional memory budget."""

    name = "auto"
    description = "per block, the candidate with the fewest build flops that fits the memory"

    def __init__(
        self, memory_budget_bytes: int | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES
    ) -> None:
        super().__init__(chunk_bytes)
        self.memory_budget_bytes = memory_budget_bytes

    @classmethod
    def estimate(cls, m: int, d_b: int, itemsize: int) -> MemoryEstimate:
        """The estimate of the candidate picked without a budget."""
        return SOLVERS.get(cls._pick(m, d_b, itemsize, None).method).estimate(m, d_b, itemsize)

    @classmethod
    def build_flops(cls, m: int, d_b: int) -> float:
        """The fewest build flops among the candidates."""
        return min(c.build_flops(m, d_b) for c in auto_candidates())

    def choose(
        self,
        m: int,
        d_b: int,
        dtype: torch.dtype = torch.float32,
        memory_budget_bytes: int | None = None,
    ) -> Choice:
        """The cheapest candidate that fits ``memory_budget_bytes`` (default: the solver's)."""
        budget = self.memory_budget_bytes if memory_budget_bytes is None else memory_budget_bytes
        return self._pick(m, d_b, torch.empty((), dtype=dtype).element_size(), budget)

    @staticmethod
    def _pick(m: int, d_b: int, itemsize: int, budget: int | None) -> Choice:
        names = [c.name for c in auto_candidates()]
        if not names:
            raise ConfigError("no registered solver is an auto candidate")
        cost = {k: SOLVERS.get(k).build_flops(m, d_b) for k in names}
        mem = {k: SOLVERS.get(k).estimate(m, d_b, itemsize).peak for k in names}
        fits = [k for k in names if budget is None or mem[k] <= budget]
        if not fits:
            need = " or ".join(f"{format_bytes(mem[k])} ({k})" for k in names)
            raise MemoryBudgetError(
                f"a block with m={m} rows and d_b={d_b} needs {need}, more than the budget "
                f"of {format_bytes(budget or 0)}; use smaller blocks or group the gradients "
                "(fewer rows)"
            )
        best = min(fits, key=lambda k: (cost[k], mem[k]))
        rel = "<" if m < d_b else (">" if m > d_b else "=")
        reason = f"{best}: m={m} {rel} d_b={d_b}"
        others = sorted((k for k in names if k != best), key=lambda k: (cost[k], mem[k]))
        if others:
            other = others[0]
            reason += (
                f"; {cost[best]:.2g} vs {cost[other]:.2g} flops; "
                f"{format_bytes(mem[best])} vs {format_bytes(mem[other])}"
            )
            if other not in fits and cost[other] < cost[best]:
                reason += (
                    f" ({other} is cheaper but exceeds the budget of {format_bytes(budget or 0)})"
                )
        return Choice(best, reason, cost[best], mem[best])

    def build(
        self, G: Tensor, damping: float, normalizer: float, *, name: str = "block"
    ) -> BlockInverse:
        choice = self.choose(G.shape[0], G.shape[1], G.dtype)
        return SOLVERS.get(choice.method)(self.chunk_bytes).build(G, damping, normalizer, name=name)

    def build_columns(
        self,
        G: Tensor,
        cols: slice | Tensor,
        damping: float,
        normalizer: float,
        *,
        name: str = "block",
    ) -> BlockInverse:
        d_b = G[:0, cols].shape[1]
        choice = self.choose(G.shape[0], d_b, G.dtype)
        solver = SOLVERS.get(choice.method)(self.chunk_bytes)
        return solver.build_columns(G, cols, damping, normalizer, name=name)
