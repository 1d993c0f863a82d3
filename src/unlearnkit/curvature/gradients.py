"""Per-sample and grouped gradients with ``torch.func``, chunked to a memory budget.

Every curvature in unlearnkit is stored as a matrix of *rows* R (m x d) such that the
curvature is ``(1/N) * R^T R`` (plus ``lambda * I``, added by the solvers). This module builds
R for any ``nn.Module`` from a :class:`~unlearnkit.curvature.programs.RowProgram` with one of
the backends of :mod:`unlearnkit.curvature.backends`.

**Groups** (the paper's "mini-batches of 10 gradients", after WoodFisher): the row of a group
b is the mean over its members, ``r_b = (1/|b|) sum_{i in b} r_i``. Membership comes from a
seeded permutation and is *recorded*, which exact deletion needs (docs/ssse.md). With ``n``
samples and group size ``g`` there are ``ceil(n/g)`` groups: consecutive slices of the
permutation, the **last group smaller** when ``g`` does not divide ``n``. ``g = 1`` keeps the
input order (no permutation).

The model must be in eval mode (BatchNorm statistics frozen, dropout off); a model in training
mode raises :class:`~unlearnkit.errors.ConfigError` rather than being switched silently. The
caller's model is never modified: parameters and buffers are detached copies moved to
``device``.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import torch
from torch import Tensor, nn

from unlearnkit.curvature.backends import detach_model, func_rows, hooks_rows, linear_modules
from unlearnkit.curvature.layout import ParamLayout
from unlearnkit.curvature.matrix import GradientMatrix
from unlearnkit.curvature.programs import Loss, RowProgram, empirical_program
from unlearnkit.errors import ConfigError, DataError, MemoryBudgetError, NumericalError
from unlearnkit.tasks import Task

log = logging.getLogger(__name__)

#: Default working-memory budget of one vmapped chunk (bytes), used when neither
#: ``chunk_size`` nor ``max_bytes`` is given.
DEFAULT_MAX_BYTES = 256 * 2**20

Backend = Literal["func", "hooks"]


def make_groups(n: int, group_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded group membership: ``(positions (n_groups, g) padded with -1, sizes (n_groups,))``.

    ``g = 1`` keeps the input order; otherwise a ``torch.randperm(n)`` from a generator seeded
    with ``seed`` is cut into consecutive slices of ``g``; the last group holds ``n mod g``
    samples when ``g`` does not divide ``n``.
    """
    if group_size < 1:
        raise ConfigError(f"group_size must be >= 1, got {group_size}")
    if n < 1:
        raise DataError("no samples to compute gradients of")
    if group_size == 1:
        order = torch.arange(n)
    else:
        gen = torch.Generator().manual_seed(int(seed))
        order = torch.randperm(n, generator=gen)
    n_groups = -(-n // group_size)
    padded = torch.full((n_groups * group_size,), -1, dtype=torch.int64)
    padded[:n] = order
    sizes = torch.full((n_groups,), group_size, dtype=torch.int64)
    sizes[-1] = n - (n_groups - 1) * group_size
    return padded.reshape(n_groups, group_size), sizes


def check_eval_mode(model: nn.Module) -> None:
    """Raise ConfigError if any submodule is in training mode (BatchNorm/dropout not frozen)."""
    training = [name or "<root>" for name, mod in model.named_modules() if mod.training]
    if training:
        raise ConfigError(
            "per-sample gradients need the model in eval mode (BatchNorm statistics frozen, "
            f"dropout off); call model.eval() first. Modules in training mode: {training[:5]}"
        )


def _check_inputs(x: Tensor, y: Tensor, ids: Tensor | None) -> Tensor:
    n = int(x.shape[0])
    if int(y.shape[0]) != n:
        raise DataError(f"x and y disagree in length ({n} vs {y.shape[0]})")
    if ids is None:
        return torch.arange(n, dtype=torch.int64)
    ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1).cpu()
    if ids.numel() != n:
        raise DataError(f"ids has {ids.numel()} entries for {n} samples")
    if torch.unique(ids).numel() != n:
        raise DataError("sample ids are not unique")
    return ids


def chunk_units(
    chunk_size: int | None,
    max_bytes: int | None,
    *,
    d: int,
    r: int,
    g: int,
    x_numel: int,
    itemsize: int,
) -> int:
    """Groups per vmapped call. The estimate (documented, rough): 3 copies of each group's
    (r x d) Jacobian plus 32 activations the size of each member's input."""
    if chunk_size is not None:
        if chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
        return int(chunk_size)
    budget = DEFAULT_MAX_BYTES if max_bytes is None else int(max_bytes)
    per_unit = itemsize * (3 * r * d + 32 * g * x_numel)
    if per_unit > budget:
        raise MemoryBudgetError(
            f"one group needs about {per_unit} bytes of working memory, over max_bytes={budget}"
        )
    return max(1, budget // per_unit)


def collect_rows(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    program: RowProgram,
    *,
    ids: Tensor | None = None,
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
    """Rows of ``program`` for every sample (or group of samples) of ``(x, y)``.

    Args:
        model: any ``nn.Module`` in eval mode; not modified.
        x, y: inputs (n, ...) and labels (n, ...), as the model and loss expect.
        program: what to differentiate (see :func:`empirical_program`, ``rows.py``).
        ids: (n,) unique int64 sample ids (default ``arange(n)``).
        group_size: g; each row is the mean over a group's members (see module docstring).
        seed: seed of the group permutation.
        chunk_size: groups per vmapped call; overrides ``max_bytes``.
        max_bytes: working-memory budget of one chunk (rough estimate; default 256 MiB).
        device: where to compute (default: the device of the model's first parameter).
        storage_device: where G is kept (default: ``device``).
        compute_dtype: cast floating parameters, buffers and inputs (e.g. float64 for checks).
        out_dtype: dtype of G (float32 by default).
        backend: "func" (any module) or "hooks" (nn.Linear-only models).

    Raises:
        ConfigError: model in training mode, bad sizes or backend.
        NumericalError: NaN/Inf rows; the message names the sample ids involved.
    """
    check_eval_mode(model)
    ids = _check_inputs(x, y, ids)
    layout = ParamLayout.from_model(model)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    store = torch.device(storage_device) if storage_device is not None else dev
    state = detach_model(model, dev, compute_dtype)
    if backend not in ("func", "hooks"):
        raise ConfigError(f"unknown backend {backend!r}; known: func, hooks")
    if backend == "hooks":
        linear_modules(model, layout)  # fail early

    n = int(x.shape[0])
    members_pos, sizes = make_groups(n, group_size, seed)
    n_groups, g = members_pos.shape
    fill = torch.where(members_pos >= 0, members_pos, members_pos[:, :1])  # pad: first member
    weights = (members_pos >= 0).to(torch.float64) / sizes[:, None].to(torch.float64)
    x_dtype = compute_dtype if compute_dtype is not None and x.is_floating_point() else x.dtype
    itemsize = torch.empty((), dtype=compute_dtype or torch.float32).element_size()
    x_numel = max(1, math.prod(x.shape[1:]))

    G: Tensor | None = None
    r = 0
    chunk = 0
    start = 0
    while start < n_groups:
        if G is None:
            chunk = 1  # first call finds r
        stop = min(n_groups, start + chunk)
        pos = fill[start:stop]  # (B, g)
        bsz = stop - start
        flat = pos.reshape(-1)
        xs = x[flat].to(dev, x_dtype)
        ys = y[flat].to(dev)
        if program.prepare is not None:
            with torch.no_grad():
                logits = state.call(state.params, xs)
                auxs = program.prepare(logits, ys, flat.to(dev))
        else:
            auxs = torch.zeros(flat.numel(), device=dev)
        wb = weights[start:stop].to(dev, compute_dtype or torch.float32)
        out = None if G is None else G[start * r : stop * r].view(bsz, r, layout.d)
        if backend == "func":
            rows = func_rows(
                state,
                program,
                layout,
                xs.reshape(bsz, g, *xs.shape[1:]),
                ys.reshape(bsz, g, *ys.shape[1:]),
                auxs.reshape(bsz, g, *auxs.shape[1:]),
                wb,
                out,
            )
        else:
            rows = hooks_rows(state, program, layout, xs, ys, auxs, wb, out)
        # one pass, no (B, r, d) mask: a sum is non-finite iff a term is (barring overflow)
        bad = ~torch.isfinite(rows.sum(dim=-1)).all(dim=-1)
        if bool(bad.any()):
            groups = start + torch.nonzero(bad.cpu()).reshape(-1)
            offending = ids[members_pos[groups][members_pos[groups] >= 0]]
            raise NumericalError(
                f"NaN/Inf {program.kind} gradients for sample id(s) {offending[:20].tolist()}"
                " (check their inputs and labels, and the model's parameters)"
            )
        if G is None:
            r = int(rows.shape[1])
            need = n_groups * r * layout.d * torch.empty((), dtype=out_dtype).element_size()
            log.info("allocating %d x %d rows (%.1f MiB)", n_groups * r, layout.d, need / 2**20)
            G = torch.empty(n_groups * r, layout.d, dtype=out_dtype, device=store)
            chunk = chunk_units(
                chunk_size, max_bytes, d=layout.d, r=r, g=g, x_numel=x_numel, itemsize=itemsize
            )
            G[start * r : stop * r] = rows.reshape(bsz * r, layout.d)
        start = stop

    assert G is not None
    return GradientMatrix.from_groups(
        G, r, members_pos, ids, sizes, layout, program.kind, group_size, seed
    )


def per_sample_gradients(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss: str | Task | Loss,
    *,
    ids: Tensor | None = None,
    chunk_size: int | None = None,
    max_bytes: int | None = None,
    device: str | torch.device | None = None,
    storage_device: str | torch.device | None = None,
    compute_dtype: torch.dtype | None = None,
    out_dtype: torch.dtype = torch.float32,
    backend: Backend = "func",
) -> GradientMatrix:
    """(n, d) per-sample gradients ``grad_theta loss(f(x_i; theta), y_i)``, row i = sample i.

    ``loss`` is a task (name or :class:`~unlearnkit.tasks.Task`: its per-sample loss) or a
    per-sample callable ``loss(logits_one, y_one) -> scalar``.
    """
    return collect_rows(
        model,
        x,
        y,
        empirical_program(loss),
        ids=ids,
        group_size=1,
        chunk_size=chunk_size,
        max_bytes=max_bytes,
        device=device,
        storage_device=storage_device,
        compute_dtype=compute_dtype,
        out_dtype=out_dtype,
        backend=backend,
    )


def grouped_gradients(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss: str | Task | Loss,
    *,
    group_size: int,
    seed: int = 0,
    ids: Tensor | None = None,
    chunk_size: int | None = None,
    max_bytes: int | None = None,
    device: str | torch.device | None = None,
    storage_device: str | torch.device | None = None,
    compute_dtype: torch.dtype | None = None,
    out_dtype: torch.dtype = torch.float32,
    backend: Backend = "func",
) -> GradientMatrix:
    """(ceil(n/g), d) group-mean gradients ``(1/|b|) sum_{i in b} grad loss_i`` (WoodFisher's
    mini-batch gradients, SSSE §4), membership recorded in ``group_members``."""
    return collect_rows(
        model,
        x,
        y,
        empirical_program(loss),
        ids=ids,
        group_size=group_size,
        seed=seed,
        chunk_size=chunk_size,
        max_bytes=max_bytes,
        device=device,
        storage_device=storage_device,
        compute_dtype=compute_dtype,
        out_dtype=out_dtype,
        backend=backend,
    )
