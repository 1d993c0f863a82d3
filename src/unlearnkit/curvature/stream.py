"""Curvature rows from data that arrives in batches (datasets that do not fit in memory).

The same rows as :func:`~unlearnkit.curvature.gradients.collect_rows`, but the data is read
once, in order, from an iterator of ``(x, y, ids)`` batches; nothing is concatenated except the
ids. Sample positions are the order of arrival (0..n−1), so group membership and the true
Fisher's label draws are those ``collect_rows`` gives for the same data in the same order.

A group's row is accumulated from its members as they arrive: each sample's rows are computed
with weight ``1/|b|`` and added into its group's rows,

    r_b = Σ_{i∈b} (1/|b|)·r_i,

which is the group mean (with ``group_size = 1`` each row is written once, unchanged).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from unlearnkit.curvature.backends import detach_model, func_rows, hooks_rows, linear_modules
from unlearnkit.curvature.gradients import Backend, check_eval_mode, chunk_units, make_groups
from unlearnkit.curvature.layout import ParamLayout
from unlearnkit.curvature.matrix import GradientMatrix
from unlearnkit.curvature.programs import RowProgram
from unlearnkit.errors import ConfigError, DataError, NumericalError

Batch = tuple[Tensor, Tensor, Tensor]


def collect_rows_stream(
    model: nn.Module,
    batches: Iterable[Batch],
    n: int,
    program: RowProgram,
    *,
    group_size: int = 1,
    seed: int = 0,
    chunk_size: int | None = None,
    max_bytes: int | None = None,
    device: str | torch.device | None = None,
    storage_device: str | torch.device | None = None,
    compute_dtype: torch.dtype | None = None,
    out_dtype: torch.dtype = torch.float32,
    backend: Backend = "func",
) -> GradientMatrix:
    """Rows of ``program`` for the ``n`` samples yielded by ``batches`` (``(x, y, ids)``).

    Arguments as :func:`~unlearnkit.curvature.gradients.collect_rows`; ``chunk_size`` counts
    samples per vmapped call. Raises :class:`DataError` when the batches do not hold exactly
    ``n`` samples with unique ids, :class:`NumericalError` for NaN/Inf rows (naming the ids).
    """
    check_eval_mode(model)
    if backend not in ("func", "hooks"):
        raise ConfigError(f"unknown backend {backend!r}; known: func, hooks")
    layout = ParamLayout.from_model(model)
    if backend == "hooks":
        linear_modules(model, layout)  # fail early
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    store = torch.device(storage_device) if storage_device is not None else dev
    state = detach_model(model, dev, compute_dtype)
    members_pos, sizes = make_groups(n, group_size, seed)
    n_groups = members_pos.shape[0]
    group_of = torch.empty(n, dtype=torch.int64)
    real = members_pos >= 0
    group_of[members_pos[real]] = torch.arange(n_groups).unsqueeze(1).expand_as(members_pos)[real]
    weight = 1.0 / sizes.to(torch.float64)
    itemsize = torch.empty((), dtype=compute_dtype or torch.float32).element_size()

    G: Tensor | None = None
    r, chunk, start = 0, 1, 0
    all_ids: list[Tensor] = []
    for xb, yb, idb in batches:
        idb = torch.as_tensor(idb, dtype=torch.int64).reshape(-1).cpu()
        if xb.shape[0] != idb.numel() or yb.shape[0] != idb.numel():
            raise DataError(
                f"a batch has {xb.shape[0]} inputs, {yb.shape[0]} labels, {idb.numel()} ids"
            )
        if start + idb.numel() > n:
            raise DataError(f"the batches hold more than the {n} samples announced")
        all_ids.append(idb)
        x_dtype = (
            compute_dtype if compute_dtype is not None and xb.is_floating_point() else xb.dtype
        )
        lo = 0
        while lo < idb.numel():
            hi = min(idb.numel(), lo + chunk)
            pos = torch.arange(start + lo, start + hi)
            xs, ys = xb[lo:hi].to(dev, x_dtype), yb[lo:hi].to(dev)
            if program.prepare is not None:
                with torch.no_grad():
                    auxs = program.prepare(state.call(state.params, xs), ys, pos.to(dev))
            else:
                auxs = torch.zeros(hi - lo, device=dev)
            wb = weight[group_of[pos]].to(dev, compute_dtype or torch.float32).reshape(-1, 1)
            if backend == "func":
                rows = func_rows(
                    state, program, layout, xs.unsqueeze(1), ys.unsqueeze(1), auxs.unsqueeze(1), wb
                )
            else:
                rows = hooks_rows(state, program, layout, xs, ys, auxs, wb)
            bad = ~torch.isfinite(rows.sum(dim=-1)).all(dim=-1)
            if bool(bad.any()):
                raise NumericalError(
                    f"NaN/Inf {program.kind} gradients for sample id(s) "
                    f"{idb[lo:hi][bad.cpu()][:20].tolist()} (check their inputs and labels, and "
                    "the model's parameters)"
                )
            if G is None:
                r = int(rows.shape[1])
                G = torch.zeros(n_groups * r, layout.d, dtype=out_dtype, device=store)
                x_numel = max(1, math.prod(xb.shape[1:]))
                chunk = chunk_units(
                    chunk_size, max_bytes, d=layout.d, r=r, g=1, x_numel=x_numel, itemsize=itemsize
                )
            target = group_of[pos].to(store)
            G.view(n_groups, r, layout.d).index_add_(0, target, rows.to(store, out_dtype))
            lo = hi
        start += idb.numel()
    if start != n or G is None:
        raise DataError(f"the batches held {start} samples, expected {n}")
    ids = torch.cat(all_ids)
    if torch.unique(ids).numel() != n:
        raise DataError("sample ids are not unique")
    return GradientMatrix.from_groups(
        G, r, members_pos, ids, sizes, layout, program.kind, group_size, seed
    )
