"""Exact leave-S-out of the curvature rows (``exact`` mode): drop or re-average the rows that
hold the erased samples S, without a pass over the retained data.

A group b (rows = its members' mean) that loses the members S∩b gets the mean row of the others,

    g_b' = (|b|·g_b − Σ_{i∈S∩b} g_i) / (|b| − |S∩b|),

with the per-sample rows g_i at θ_F (where the rows were computed); a group that loses all its
members is dropped. The inverse is updated by an exact downdate / row replacement
(:meth:`~unlearnkit.curvature.block_inverse.BlockDiagonalInverse.downdate`,
:meth:`~unlearnkit.curvature.block_inverse.BlockDiagonalInverse.replace_rows`). The state's
``rows`` are never modified: re-averaged rows go to a patch shared along a sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from unlearnkit.curvature.block_inverse import BlockDiagonalInverse, BlockEntry
from unlearnkit.curvature.layout import with_params
from unlearnkit.curvature.matrix import PAD_ID
from unlearnkit.errors import ConfigError
from unlearnkit.ssse.budget import gradient_sums
from unlearnkit.ssse.rows import SampleData, dataset_rows


def share_rows(inverse: BlockDiagonalInverse, rows: Tensor | None) -> BlockDiagonalInverse:
    """Blocks whose stored rows equal the exact-mode rows' columns (e.g. ``woodbury``'s G with
    its replaced-row patch) hold a view of ``rows`` instead of a second copy (the rows matrix
    is then in memory once); see :meth:`BlockInverse.sharing`."""
    if rows is None:
        return inverse
    entries = []
    for e in inverse.entries:
        inv = e.inverse
        if isinstance(e.sel, slice):
            try:  # a solver keeping no rows returns itself; one keeping others raises
                inv = inv.sharing(rows[:, e.sel])
            except ConfigError:
                pass
        entries.append(BlockEntry(e.name, e.index, e.sel, inv, e.reason))
    return BlockDiagonalInverse(entries, inverse.d)


def patched_rows(
    patch: tuple[Tensor, Tensor] | None, ridx: Tensor, values: Tensor
) -> tuple[Tensor, Tensor]:
    """A new row patch: ``patch`` with the rows ``ridx`` set to ``values`` (inputs unchanged)."""
    if patch is None:
        return ridx.clone(), values
    pid, old = patch
    fresh = ~torch.isin(ridx, pid)
    ids = torch.cat([pid, ridx[fresh]])
    out = torch.cat([old, values[fresh.to(values.device)]])
    pos = torch.full((int(ids.max()) + 1,), -1, dtype=torch.int64)
    pos[ids] = torch.arange(ids.numel())
    out[pos[ridx].to(out.device)] = values
    return ids, out


@dataclass(frozen=True)
class LeavePlan:
    """Which groups a request touches (computed before any gradient): ``remove`` (n_groups, g)
    marks the erased members, ``shrunk``/``emptied`` the groups losing some/all members,
    ``gone`` the erased members of shrunk groups and ``owner`` their position in ``shrunk``."""

    remove: Tensor
    hit_groups: Tensor
    lost: Tensor
    shrunk: Tensor
    emptied: Tensor
    gone: Tensor
    owner: Tensor
    rows_per_group: int

    def rows_of(self, groups: Tensor) -> Tensor:
        r = self.rows_per_group
        return (groups.reshape(-1, 1) * r + torch.arange(r)).reshape(-1)


def plan_leave_out(state: Any, ids: Tensor) -> LeavePlan:
    """The groups that erasing ``ids`` shrinks or empties (small integer tensors only)."""
    members, sizes = state.group_members, state.group_sizes
    remove = torch.isin(members, ids) & (members != PAD_ID)
    hit_groups = torch.nonzero(remove.any(dim=1)).reshape(-1)
    lost = remove[hit_groups].sum(dim=1)
    shrunk = hit_groups[lost < sizes[hit_groups]]
    return LeavePlan(
        remove=remove,
        hit_groups=hit_groups,
        lost=lost,
        shrunk=shrunk,
        emptied=hit_groups[lost == sizes[hit_groups]],
        gone=members[shrunk][remove[shrunk]],
        owner=torch.repeat_interleave(torch.arange(shrunk.numel()), remove[shrunk].sum(dim=1)),
        rows_per_group=state.row_group.numel() // max(state.group_sizes.numel(), 1),
    )


def leave_out(
    state: Any,  # the ErasureState (typed loosely: state.py imports this module)
    model: nn.Module,
    forget: SampleData,
    n_after: int,
    plan: LeavePlan,
    gone_sums: Tensor | None = None,
    chunk: int | None = None,
) -> tuple[BlockDiagonalInverse, tuple[Tensor, Tensor] | None, Tensor, Tensor]:
    """Exact Fisher of the remaining data: drop or re-average the rows holding S.

    Returns the new inverse, the new row patch (``rows`` is never copied or modified),
    the group sizes and members.

    ``gone_sums`` (len(plan.shrunk), d) fp64: Σ_{i∈S∩b} g_i of the per-sample curvature rows
    at θ_F for each shrunk group, when already known; otherwise they are computed for the
    samples of shrinking groups, ``chunk`` samples at a time (default: all at once)."""
    assert state.rows is not None
    cfg = state.config
    members, sizes = state.group_members.clone(), state.group_sizes.clone()
    remove, hit_groups, lost = plan.remove, plan.hit_groups, plan.lost
    shrunk, emptied = plan.shrunk, plan.emptied
    n_groups_after = int((sizes > 0).sum()) - int(emptied.numel())
    N = n_after if cfg.normalizer_kind == "samples" else n_groups_after
    inverse = state.inverse
    patch = state.row_patch  # ``rows`` is shared (never modified in place)
    if shrunk.numel():
        # g_b' = (|b|·g_b − Σ_{i∈S∩b} g_i) / (|b| − |S∩b|), per-sample g_i at θ_F
        sums = gone_sums
        if sums is None:
            theta_model = with_params(model, state.layout, state.theta_fisher)
            rows = lambda mod, data: dataset_rows(mod, data, cfg, group_size=1)  # noqa: E731
            gone = forget.subset(plan.gone)
            owner = (plan.gone, plan.owner, int(shrunk.numel()))
            _, sums = gradient_sums(theta_model, gone, rows, chunk or len(gone), owner)
            del theta_model
        assert sums is not None
        dev = sums.device  # the model's device (rows may live on a GPU)
        b = sizes[shrunk].double().to(dev)
        kb = lost[lost < sizes[hit_groups]].double().to(dev)
        ridx = plan.rows_of(shrunk)
        old = state.rows_at(ridx).double()
        new = b[:, None] * old
        new -= sums
        del sums, gone_sums
        new /= (b - kb)[:, None]
        inverse = inverse.replace_rows(ridx, new, N, old_values=old)
        del old
        patch = patched_rows(patch, ridx, new.to(device=state.rows.device, dtype=state.rows.dtype))
        del new
    if emptied.numel():
        ridx = plan.rows_of(emptied)
        inverse = inverse.downdate(ridx, N, row_values=state.rows_at(ridx))
    if not shrunk.numel() and not emptied.numel():
        inverse = inverse.downdate(torch.empty(0, dtype=torch.int64), N, row_values=None)
    members[remove] = PAD_ID
    sizes[hit_groups] -= lost
    return inverse, patch, sizes, members
