"""Partitions of the flat parameter vector into blocks, and the per-block solver plan.

A plan gives each block (index set I_j of size d_b) a registered solver, the reason, and its
memory estimate (the solver's own ``estimate``), checked against a budget before anything
large is allocated. With ``auto``, each block also records its lowest-memory alternative
among the other auto candidates, to switch to when the total exceeds the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from unlearnkit.curvature.memory import MemoryEstimate, format_bytes
from unlearnkit.curvature.solvers import SOLVERS, AutoSolver, auto_candidates, estimate
from unlearnkit.errors import ConfigError, MemoryBudgetError


class BlockLike(Protocol):
    """Anything with a ``name`` and an ``index``: int64 positions in the flat vector, or a
    ``slice(start, stop)`` (e.g. :class:`unlearnkit.curvature.blocks.Block`)."""

    @property
    def name(self) -> str: ...

    @property
    def index(self) -> Tensor | slice: ...


@dataclass(frozen=True)
class IndexBlock:
    """A minimal :class:`BlockLike`."""

    name: str
    index: Tensor | slice


def as_index(index: Tensor | slice, name: str) -> Tensor:
    if isinstance(index, slice):
        if index.step not in (None, 1) or index.start is None or index.stop is None:
            raise ConfigError(f"block {name!r}: slice index must be slice(start, stop)")
        return torch.arange(index.start, index.stop, dtype=torch.int64)
    idx = torch.as_tensor(index)
    if idx.ndim != 1 or idx.is_floating_point():
        raise ConfigError(f"block {name!r}: index must be a 1-D integer tensor or a slice")
    return idx.to(torch.int64).cpu()


def check_partition(blocks: Sequence[BlockLike], d: int) -> list[tuple[str, Tensor]]:
    """Blocks must partition 0..d−1 (each position exactly once) and have unique names."""
    out = []
    for b in blocks:
        idx = as_index(b.index, str(b.name))
        if idx.numel() == 0:
            raise ConfigError(f"block {b.name!r} is empty")
        out.append((str(b.name), idx))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"block names must be unique, got {names}")
    allidx = torch.cat([i for _, i in out]) if out else torch.empty(0, dtype=torch.int64)
    in_range = allidx.numel() == 0 or (int(allidx.min()) >= 0 and int(allidx.max()) < d)
    if (
        allidx.numel() != d
        or not in_range
        or not bool((torch.bincount(allidx, minlength=d) == 1).all())
    ):
        raise ConfigError(
            f"blocks must partition the {d} parameters (every position exactly once); they "
            f"cover {allidx.unique().numel()} distinct positions with {allidx.numel()} entries"
        )
    return out


@dataclass
class BlockPlan:
    """One block's solver choice and memory estimate (``alt``: the lowest-memory other auto
    candidate)."""

    name: str
    index: Tensor
    method: str
    reason: str
    est: MemoryEstimate
    alt: tuple[str, MemoryEstimate] | None  # the lowest-memory other auto candidate


def total_bytes(plans: Sequence[BlockPlan]) -> int:
    """Persistent bytes of all blocks plus the largest single build workspace."""
    return sum(p.est.persistent for p in plans) + max((p.est.workspace for p in plans), default=0)


def plan_blocks(
    m: int,
    d: int,
    blocks: Sequence[BlockLike] | None,
    solver: str,
    dtype: torch.dtype,
    budget: int | None,
) -> list[BlockPlan]:
    """Per-block solver choice and memory estimate (nothing built); ``auto`` switches blocks to
    their lower-memory candidate until the total fits ``budget``, else MemoryBudgetError."""
    if solver not in SOLVERS:
        SOLVERS.get(solver)  # raises ConfigError listing the known solvers
    if blocks is None:
        blocks = [IndexBlock("full", torch.arange(d))]
    parts = check_partition(blocks, d)
    plans: list[BlockPlan] = []
    auto = AutoSolver()
    for name, idx in parts:
        d_b = idx.numel()
        if solver == AutoSolver.name:
            choice = auto.choose(m, d_b, dtype, memory_budget_bytes=budget)
            alts = [
                (c.name, estimate(c.name, m, d_b, dtype))
                for c in auto_candidates()
                if c.name != choice.method
            ]
            alt = min(alts, key=lambda a: a[1].peak) if alts else None
            plans.append(
                BlockPlan(
                    name,
                    idx,
                    choice.method,
                    choice.reason,
                    estimate(choice.method, m, d_b, dtype),
                    alt,
                )
            )
        else:
            plans.append(
                BlockPlan(
                    name,
                    idx,
                    solver,
                    f"{solver}: requested",
                    estimate(solver, m, d_b, dtype),
                    None,
                )
            )
    if budget is not None and total_bytes(plans) > budget and solver == AutoSolver.name:
        # switch blocks to their lower-memory candidate, biggest saving first
        def saving(p: BlockPlan) -> int:
            return p.est.peak - p.alt[1].peak if p.alt else 0

        for p in sorted(plans, key=saving, reverse=True):
            if total_bytes(plans) <= budget or saving(p) <= 0 or p.alt is None:
                continue
            (p.method, p.est), p.alt = p.alt, (p.method, p.est)
            p.reason = f"{p.method}: lower memory ({format_bytes(p.est.peak)}) to fit the budget"
    if budget is not None and total_bytes(plans) > budget:
        big = max(plans, key=lambda p: p.est.peak)
        others = ", ".join(
            f"solver={c.name!r} about "
            f"{format_bytes(sum(estimate(c.name, m, p.index.numel(), dtype).peak for p in plans))}"
            for c in auto_candidates()
            if c.name != solver
        )
        raise MemoryBudgetError(
            f"building the Fisher inverse ({len(plans)} blocks, m={m} rows, d={d}, "
            f"solver={solver!r}) needs about {format_bytes(total_bytes(plans))} but the memory "
            f"budget is {format_bytes(budget)}; the largest block is {big.name!r} "
            f"(d_b={big.index.numel()}, {big.method}, {format_bytes(big.est.peak)}). "
            f"Options: smaller blocks; another solver ({others or 'none registered'} in all); "
            "fewer rows by grouping gradients (group_size); or a larger budget."
        )
    return plans
