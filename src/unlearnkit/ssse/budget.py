"""Memory of one erasure request, estimated before anything large is allocated.

A request for k samples (:meth:`~unlearnkit.ssse.state.ErasureState.request`, d parameters,
c samples per gradient chunk, m_s rows in the state, n_s re-averaged and n_e emptied groups,
``exact`` mode only for the last two) allocates, on top of the state it starts from:

* **gradient pass** (per chunk, freed after it): the per-sample gradients (c·d fp32), with
  either the vmapped working memory of :func:`~unlearnkit.curvature.gradients.collect_rows`
  (its own estimate: 3 Jacobian copies, 3·c·d fp32, plus 32 inputs per sample) or, after it
  is freed, their fp64 copy to sum (c·d fp64); ``exact`` mode, the fp64 rows of the samples
  whose group shrinks (c·d fp64);
* **kept through the request**: v = Σ∇ℓ_i and θ (d fp64 each), the model's copy (d fp32) and,
  ``exact`` mode, the per-group sums Σ_{i∈S∩b} g_i (n_s·d fp64);
* **leave-out** (``exact``): the shrunk groups' old rows (n_s·d fp32 and fp64) and their new
  values (n_s·d fp64), the emptied rows (n_e·d fp32), the new row patch (n_s·d fp32), and each
  block's update (:func:`block_update_bytes`): the new factors and their workspace;
* **step and ε**: Δ, θ + εΔ/(n−k) (d fp64 each) and two model copies for the ε search.

The peak is the kept part plus the largest of the three phases (gradient pass, leave-out, step).
Only the gradient pass scales with the chunk, so :func:`plan_request` picks the largest chunk
that fits the budget (all k samples in one chunk when they fit: the original single pass) and
raises :class:`~unlearnkit.errors.MemoryBudgetError` when even one sample per chunk does not fit
(the leave-out's n_s·d arrays and the block updates cannot be split without changing the
result): the message says to split the request or raise the budget. The budget counts what
the request allocates on top of the state (whose rows and inverse ``prepare`` already checked).
Allocator slack and small (O(d), O(k)) temporaries are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from unlearnkit.curvature.block_inverse import BlockDiagonalInverse
from unlearnkit.curvature.layout import flat_params
from unlearnkit.curvature.matrix import GradientMatrix
from unlearnkit.curvature.memory import (
    DEFAULT_CHUNK_BYTES,
    FP64,
    default_memory_budget,
    format_bytes,
)
from unlearnkit.errors import MemoryBudgetError
from unlearnkit.ssse.rows import SampleData, sample_gradients

FP32 = 4
#: The working-memory model of one vmapped sample in collect_rows (gradients.chunk_units).
JACOBIAN_COPIES = 3
INPUT_COPIES = 32


def block_update_bytes(inverse: BlockDiagonalInverse, n_replaced: int, n_removed: int) -> int:
    """Bytes a ``replace_rows`` of ``n_replaced`` rows then a ``downdate`` of ``n_removed``
    rows allocate: per block the new persistent pieces plus that block's workspace; the blocks'
    new pieces add up (the new inverse keeps them all), the workspaces do not (one at a time).

    * ``dense`` (A, L kept, d_b² fp64 each): per update A' = A − UᵀU + WᵀW, λI + A'/N and its
      Cholesky factor (3·d_b²), plus a contiguous copy of the block's rows (k·d_b fp64);
    * ``woodbury`` (m rows stored, m_a active, q stale, s dropped from the factor's basis m_b):
      the patch G'_P (fp32) and K'_{P,:} (p·m fp64) and K'[r, :] (k·m fp64) for replaced rows,
      plus the larger of a refactor (K'_RR: m_a·m + 2·m_a², fp64) and the incremental pieces
      (K'[Q, :], Z, ~4 solves' columns: 7·m·q; W, X, E: 3·m_b·s; C, its factor, Σ: 2·s² + q²);
    * ``sherman_morrison``: a copy of G and of F⁻¹ per update;
    * another solver: twice its current memory (a conservative bound).
    The solvers' streaming fp64 chunk (at most ``DEFAULT_CHUNK_BYTES``) is added once.
    """
    kept = work = chunk = 0
    k, e = n_replaced, n_removed
    for entry in inverse.entries:
        inv = entry.inverse
        d_b, m = inv.d_b, inv.n_built
        updates = (k > 0) + (e > 0) or 1
        if inv.method == "dense":
            kept += updates * 2 * d_b * d_b * FP64
            w = d_b * d_b * FP64 + max(k, e) * d_b * FP64
        elif inv.method == "woodbury":
            p = int(inv.patch_ids.numel()) + k
            q = int(inv.stale.numel()) + k
            m_b = int(inv.basis.numel())
            s = m_b - (inv.m - int(inv.stale.numel())) + e + k
            m_a = inv.m
            kept += p * d_b * FP32 + p * m * FP64 + k * d_b * FP32
            refactor = (m_a * m + 2 * m_a * m_a) * FP64
            incremental = (7 * m * q + 3 * m_b * s + 2 * s * s + q * q) * FP64
            kept += updates * max(refactor, incremental)
            w = k * m * FP64
        elif inv.method == "sherman_morrison":
            kept += updates * (m * d_b * inv.G.element_size() + d_b * d_b * FP64)
            w = 2 * max(k, e, 1) * d_b * inv.G.element_size()
        else:
            kept += updates * inv.memory_bytes()
            w = inv.memory_bytes()
        work = max(work, w)
        chunk = max(chunk, min(DEFAULT_CHUNK_BYTES, (k + e + m) * d_b * FP64))
    return kept + work + chunk


@dataclass(frozen=True)
class RequestPlan:
    """The estimate of one request: bytes per part, the chunk chosen and the budget."""

    parts: dict[str, int]
    chunk: int
    budget: int

    @property
    def peak(self) -> int:
        p = self.parts
        return p["kept"] + max(p["gradient pass"], p["leave-out"], p["step and ε"])


def _parts(
    d: int, k: int, chunk: int, x_numel: int, n_shrunk: int, n_empty: int, updates: int, item: int
) -> dict[str, int]:
    vmapped = (JACOBIAN_COPIES * d + INPUT_COPIES * x_numel) * item  # freed before the sum
    per_sample = FP32 * d + max(vmapped, FP64 * d)
    reuse = FP64 * d if n_shrunk else 0  # the shrinking groups' rows, fp64, to add up
    return {
        "kept": 2 * d * FP64 + d * FP32 + n_shrunk * d * FP64,
        "gradient pass": chunk * (per_sample + reuse),
        "leave-out": n_shrunk * d * (FP32 + 2 * FP64 + FP32) + n_empty * d * FP32 + updates
        if n_shrunk or n_empty
        else 0,
        "step and ε": 2 * d * FP64 + 2 * d * FP32,
    }


def plan_request(
    d: int,
    k: int,
    x_numel: int,
    budget: int,
    *,
    n_shrunk: int = 0,
    n_empty: int = 0,
    update_bytes: int = 0,
    itemsize: int = FP32,
) -> RequestPlan:
    """The largest gradient chunk (≤ k samples) whose request peak fits ``budget``;
    MemoryBudgetError (nothing allocated) when one sample per chunk does not fit.
    ``itemsize``: bytes of the model's parameters (the dtype the gradients are computed in)."""
    args = (x_numel, n_shrunk, n_empty, update_bytes, itemsize)
    parts = _parts(d, k, 1, *args)
    fixed = RequestPlan(parts | {"gradient pass": 0}, 1, budget).peak
    one = RequestPlan(parts, 1, budget)
    if one.peak > budget:
        big = max(parts, key=lambda name: parts[name] if name != "kept" else 0)
        raise MemoryBudgetError(
            f"erasing these {k} samples needs about {format_bytes(one.peak)} (d={d}; largest "
            f"part: {big}, {format_bytes(parts[big])}) but the memory budget is "
            f"{format_bytes(budget)}; nothing was changed. Split the request into smaller "
            "ones (fewer ids each) or raise memory_budget_bytes"
        )
    per = parts["gradient pass"]  # bytes per sample of the chunk
    chunk = k if fixed + k * per <= budget else max(1, (budget - parts["kept"]) // max(per, 1))
    chunk = int(min(k, chunk))
    return RequestPlan(_parts(d, k, chunk, *args), chunk, budget)


def request_plan(state: Any, plan: Any, k: int, x_numel: int) -> RequestPlan:
    """:func:`plan_request` for erasing k samples from ``state`` (``plan``: the
    :class:`~unlearnkit.ssse.leave_out.LeavePlan` in ``exact`` mode, else None), under the
    state's ``memory_budget_bytes`` (default :func:`default_memory_budget`)."""
    budget = state.config.memory_budget_bytes or default_memory_budget()
    n_s = n_e = 0
    if plan is not None:
        n_s = int(plan.shrunk.numel()) * plan.rows_per_group
        n_e = int(plan.emptied.numel()) * plan.rows_per_group
    updates = block_update_bytes(state.inverse, n_s, n_e)
    return plan_request(
        state.layout.d,
        k,
        x_numel,
        budget,
        n_shrunk=n_s,
        n_empty=n_e,
        update_bytes=updates,
        itemsize=state.theta_fisher.element_size(),
    )


def input_numel(data: SampleData) -> int:
    """Elements of one input (from ``x``, else the first batch of one sample)."""
    x = getattr(data, "x", None)
    if x is None:
        xb = next(iter(data.batches(1)))[0]  # type: ignore[attr-defined]
        x = xb
    return max(1, math.prod(x.shape[1:]))


def gradient_sums(
    model: nn.Module,
    data: SampleData,
    rows: Callable[[nn.Module, SampleData], GradientMatrix],
    chunk: int,
    owner: tuple[Tensor, Tensor, int] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """v = Σ_i g_i (fp64, d) over ``data``, computing ``rows`` (one per sample) ``chunk``
    samples at a time; with ``owner = (ids, owner index, n_owners)`` also the per-owner sums
    Σ_{i: owner(i)=j} g_i ((n_owners, d) fp64) over those ids."""
    ids = torch.as_tensor(data.ids, dtype=torch.int64).reshape(-1)
    v: Tensor | None = None
    sums: Tensor | None = None
    for s in range(0, ids.numel(), chunk):
        part = data if chunk >= ids.numel() else data.subset(ids[s : s + chunk])
        gm = rows(model, part)
        G = gm.G.double()
        v = G.sum(0) if v is None else v.add_(G.sum(0))
        if owner is not None:
            o_ids, o_idx, n_o = owner
            if sums is None:
                sums = torch.zeros(n_o, G.shape[1], dtype=torch.float64, device=G.device)
            hit = torch.isin(o_ids, gm.sample_ids)
            if bool(hit.any()):
                sel = o_ids[hit]
                sums.index_add_(0, o_idx[hit].to(G.device), G[gm.groups_of(sel).to(G.device)])
        del gm, G
    assert v is not None
    return v, sums


def forget_gradient_sums(
    state: Any, model: nn.Module, forget: SampleData, plan: Any, chunk: int
) -> tuple[Tensor, Tensor | None]:
    """v = Σ_{i∈S}∇ℓ_i(θ_t) (fp64) in chunks of ``chunk`` samples and, at θ_F in ``exact``
    mode with the empirical Fisher (the first request after prepare), the sums of the rows
    that shrinking groups lose (``plan.gone`` per ``plan.owner``): the same gradients, so one
    pass serves both (otherwise :func:`~unlearnkit.ssse.leave_out.leave_out` computes them)."""
    cfg = state.config
    theta = flat_params(model, state.layout).to(state.theta_fisher)
    reuse = (
        plan is not None
        and bool(plan.shrunk.numel())
        and cfg.curvature == "empirical"
        and torch.equal(theta, state.theta_fisher)
    )
    owner = (plan.gone, plan.owner, int(plan.shrunk.numel())) if reuse else None
    grads = lambda mod, data: sample_gradients(mod, data, cfg.task)  # noqa: E731
    return gradient_sums(model, forget, grads, chunk, owner)


__all__ = [
    "forget_gradient_sums",
    "RequestPlan",
    "block_update_bytes",
    "gradient_sums",
    "input_numel",
    "plan_request",
    "request_plan",
]
