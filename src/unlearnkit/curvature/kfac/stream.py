"""Kronecker sums of data that arrives in batches, with the batch size chosen from a memory
budget; the forget set's leave-out and summed gradient read the same way.

Sources (:func:`iter_batches`): a dataset with ``batches(batch_size)`` yielding ``(x, y, ids)``
(:class:`~unlearnkit.ssse.rows.SampleData`; the batch size is chosen here), a dataset with
in-memory ``x``/``y``/``ids`` (sliced), or any iterable of ``(x, y[, ids])`` batches such as a
``torch.utils.data.DataLoader`` (its own batch size; without ids, the samples' positions
0, 1, … in arrival order are their ids). The inputs are never concatenated; only the ids are
collected, to check that they are unique.

Each batch's sums are :func:`~unlearnkit.curvature.kfac.factors.accumulate` (resp.
:func:`~unlearnkit.curvature.kfac.ekfac.scale_sums`) of that batch, added in arrival order, so
:func:`stream_sums` with batches of b samples equals ``accumulate(..., batch_size=b)`` on the
same data exactly for one label column per sample (``empirical``: the running sum starts from
the first batch's sums, ``0 + s₁ = s₁``, and adds each batch's as accumulate does), and equals
it up to rounding otherwise (other batch sizes; several columns, whose per-batch partial sums
are added in another order).

**Memory per sample** (:func:`per_sample_bytes`; an estimate, allocator slack not counted).
One probe forward pass of one sample gives each factored layer's positions P (1 for a Linear
on (b, d_in) inputs, the output pixels of a Conv2d). A batch of b samples then holds, per
factored layer, the inputs ã (P·d_in) and output gradients g (P·d_out) in the model's dtype
twice (the captured copies and the autograd graph's saved tensors) plus their fp64 copies for
the products (P·(d_in + d_out)·8); for each diagonal parameter its per-sample Jacobian, 3
working copies of ``columns × numel`` (columns: 1 empirical, S true, C ggn); the input itself
4×; and, for the EK-FAC scale pass, the rotated inputs and gradients (P·(d_in + d_out)·8) and
the rotated per-sample gradient and its square (2·d_out·d_in·8). The batch size is the
budget left after the sums themselves (twice: the running sum and the batch's, fp64) divided
by that, at most :data:`MAX_BATCH`; :class:`~unlearnkit.errors.MemoryBudgetError` when one
sample does not fit.

A progress bar (rich) is shown while reading when stderr is a terminal (``progress=None``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from unlearnkit.curvature.kfac.capture import LABEL_MODES, layer_inputs, plan_layers
from unlearnkit.curvature.kfac.direction import KroneckerCurvature, summed_gradient
from unlearnkit.curvature.kfac.downdate import Downdated, subtract, subtract_scales
from unlearnkit.curvature.kfac.ekfac import LayerEigen, ScaleSums, eigenbases, scale_sums
from unlearnkit.curvature.kfac.factors import KFACSums, accumulate
from unlearnkit.curvature.kfac.sources import (
    first_input,
    iter_batches,
    read_progress,
    source_length,
)
from unlearnkit.curvature.memory import FP64, default_memory_budget, format_bytes
from unlearnkit.errors import ConfigError, DataError, MemoryBudgetError
from unlearnkit.tasks import Task

#: Largest batch the budget rule picks (larger batches save nothing measurable).
MAX_BATCH = 512
#: Working copies of a per-sample Jacobian (as the exact engine's gradient passes count).
JACOBIAN_COPIES = 3
INPUT_COPIES = 4


# ---------------------------------------------------------------------- sources
# ---------------------------------------------------------------------- memory
def sums_bytes(model: nn.Module, ekfac: bool = False) -> int:
    """fp64 bytes of the sums: Σ (d_in² + d_out²) per factored layer plus the diagonal blocks;
    EK-FAC adds the eigenbases (d_in² + d_out² + d_in + d_out) and the scales (d_out·d_in)."""
    layers, diag = plan_layers(model)
    params = dict(model.named_parameters())
    total = sum(s.d_in**2 + s.d_out**2 for s in layers) + sum(params[k].numel() for k in diag)
    if ekfac:
        total += sum(s.d_in**2 + s.d_out**2 + s.d_in + s.d_out + s.d_in * s.d_out for s in layers)
    return total * FP64


def per_sample_bytes(
    model: nn.Module, x1: Tensor, columns: int, ekfac: bool = False
) -> tuple[int, dict[str, int]]:
    """(bytes per sample of a batch, positions P per factored layer): the estimate of the
    module docstring, from one probe forward pass of ``x1`` (one sample)."""
    layers, diag = plan_layers(model)
    mods = dict(model.named_modules())
    pos: dict[str, int] = {}
    handles = [
        mods[s.name].register_forward_hook(
            lambda m, a, o, name=s.name: pos.__setitem__(name, int(layer_inputs(m, a[0]).shape[1]))
        )
        for s in layers
    ]
    try:
        with torch.no_grad():
            model(x1.to(next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    item = next(model.parameters()).element_size()
    params = dict(model.named_parameters())
    total = INPUT_COPIES * x1.numel() * item
    for s in layers:
        p = pos.get(s.name, 1)
        total += p * (s.d_in + s.d_out) * (2 * item + FP64)
        if ekfac:
            total += p * (s.d_in + s.d_out) * FP64 + 2 * s.d_out * s.d_in * FP64
    total += sum(JACOBIAN_COPIES * columns * params[k].numel() * item for k in diag)
    return int(total), pos


def label_columns(mode: str, samples: int, num_outputs: int) -> int:
    """Backward passes (columns) per sample of a label mode (:mod:`.capture`)."""
    if mode not in LABEL_MODES:
        raise ConfigError(f"unknown curvature {mode!r}; known: {', '.join(LABEL_MODES)}")
    return {"empirical": 1, "true": samples, "ggn": num_outputs}[mode]


def choose_batch_size(
    model: nn.Module,
    x1: Tensor,
    budget: int | None,
    columns: int,
    ekfac: bool = False,
) -> int:
    """The batch size of a stream under ``budget`` bytes (module docstring)."""
    budget = default_memory_budget() if budget is None else int(budget)
    kept = 2 * sums_bytes(model, ekfac)
    per, _ = per_sample_bytes(model, x1, columns, ekfac)
    if kept + per > budget:
        raise MemoryBudgetError(
            f"the Kronecker sums ({format_bytes(kept)}, kept twice while streaming) and one "
            f"sample's activations and gradients ({format_bytes(per)}) exceed the memory budget "
            f"of {format_bytes(budget)}; raise memory_budget_bytes"
        )
    return int(min(MAX_BATCH, (budget - kept) // max(per, 1)))


# ---------------------------------------------------------------------- passes
def _num_outputs(model: nn.Module, x1: Tensor) -> int:
    with torch.no_grad():
        return int(model(x1.to(next(model.parameters()).device)).shape[-1])


def resolve_batch_size(
    model: nn.Module,
    data: Any,
    batch_size: int | None,
    budget: int | None,
    mode: str,
    samples: int,
    ekfac: bool,
) -> int:
    """``batch_size`` when given, else :func:`choose_batch_size` for ``data``'s first input
    and the label mode's columns."""
    if batch_size is not None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        return int(batch_size)
    x1 = first_input(data)
    columns = label_columns(mode, samples, _num_outputs(model, x1) if mode == "ggn" else 1)
    return choose_batch_size(model, x1, budget, columns, ekfac)


def _check_ids(seen: list[Tensor], expected: int | None) -> None:
    if not seen:
        raise DataError("no samples to accumulate Kronecker sums of")
    ids = torch.cat(seen)
    if torch.unique(ids).numel() != ids.numel():
        raise DataError("the batches repeat sample ids")
    if expected is not None and ids.numel() != expected:
        raise DataError(f"the batches held {ids.numel()} samples, expected {expected}")


def _summed_batches(
    data: Any,
    batch_size: int,
    what: str,
    progress: bool | None,
    batch_sums: Callable[[Tensor, Tensor, Tensor], Any],
) -> Any:
    """Σ over the batches of ``data`` of ``batch_sums(x, y, ids)`` (added in arrival order,
    ``0 + s₁ = s₁``), with a progress bar and the check that every id came once."""
    total: Any = None
    seen: list[Tensor] = []
    n = source_length(data)
    with read_progress(n, what, progress) as advance:
        for xb, yb, ib in iter_batches(data, batch_size):
            part = batch_sums(xb, yb, ib)
            total = part if total is None else total.combine(part, 1.0)
            seen.append(ib)
            advance(int(xb.shape[0]))
    _check_ids(seen, n)
    return total


def stream_sums(
    model: nn.Module,
    data: Any,
    task: str | Task,
    *,
    mode: str = "empirical",
    seed: int = 0,
    samples: int = 1,
    batch_size: int | None = None,
    memory_budget_bytes: int | None = None,
    progress: bool | None = None,
    sum_dtype: torch.dtype = torch.float64,
) -> KFACSums:
    """K-FAC sums of every sample of ``data`` (any source of :func:`iter_batches`), read once
    in batches (``batch_size``, default: from ``memory_budget_bytes``). Equals
    :func:`~unlearnkit.curvature.kfac.factors.accumulate` on the same samples."""
    bs = resolve_batch_size(model, data, batch_size, memory_budget_bytes, mode, samples, False)

    def batch_sums(xb: Tensor, yb: Tensor, ib: Tensor) -> KFACSums:
        return accumulate(
            model, xb, yb, task, mode=mode, ids=ib, seed=seed, samples=samples,
            batch_size=int(xb.shape[0]), sum_dtype=sum_dtype,
        )  # fmt: skip

    return _summed_batches(data, bs, "Kronecker factors", progress, batch_sums)


def stream_scale_sums(
    model: nn.Module,
    data: Any,
    task: str | Task,
    bases: dict[str, LayerEigen],
    *,
    mode: str = "empirical",
    seed: int = 0,
    samples: int = 1,
    batch_size: int | None = None,
    memory_budget_bytes: int | None = None,
    progress: bool | None = None,
    sum_dtype: torch.dtype = torch.float64,
) -> ScaleSums:
    """EK-FAC scale sums of ``data`` in the eigenbases ``bases`` (the second pass), batched
    like :func:`stream_sums`; equals :func:`~unlearnkit.curvature.kfac.ekfac.scale_sums`."""
    bs = resolve_batch_size(model, data, batch_size, memory_budget_bytes, mode, samples, True)

    def batch_sums(xb: Tensor, yb: Tensor, ib: Tensor) -> ScaleSums:
        return scale_sums(
            model, xb, yb, task, bases, mode=mode, ids=ib, seed=seed, samples=samples,
            batch_size=int(xb.shape[0]), sum_dtype=sum_dtype,
        )  # fmt: skip

    return _summed_batches(data, bs, "EK-FAC scales", progress, batch_sums)


def stream_curvature(
    model: nn.Module,
    data: Any,
    task: str | Task,
    *,
    ekfac: bool = False,
    **kwargs: Any,
) -> tuple[KFACSums, ScaleSums | None]:
    """The sums of ``data`` and, with ``ekfac``, the scale sums in the eigenbases of its
    factors (two passes over the data); ``kwargs`` as :func:`stream_sums`."""
    sums = stream_sums(model, data, task, **kwargs)
    if not ekfac:
        return sums, None
    # row-major copies (eigh returns column-major ones): a saved and reloaded state then
    # multiplies by the very same memory layout, so its results are bit-identical
    bases = {
        k: LayerEigen(e.spec, e.UA.contiguous(), e.alpha, e.UG.contiguous(), e.gamma)
        for k, e in eigenbases(sums.factors()).items()
    }
    opts = {k: v for k, v in kwargs.items() if k not in ("mode", "seed", "samples")}
    common = dict(mode=sums.mode, seed=sums.seed, samples=sums.samples)
    return sums, stream_scale_sums(model, data, task, bases, **common, **opts)


def stream_gradient(
    model: nn.Module, data: Any, task: str | Task, batch_size: int
) -> dict[str, Tensor]:
    """``v = Σ_i ∇ℓ_i`` (fp64, per trainable parameter) over ``data``, batch by batch."""
    total: dict[str, Tensor] = {}
    for xb, yb, _ in iter_batches(data, batch_size):
        part = summed_gradient(model, xb, yb, task, batch_size=int(xb.shape[0]))
        for k, g in part.items():
            total[k] = g.double() if k not in total else total[k].add_(g.double())
    if not total:
        raise DataError("no samples to sum gradients of")
    return total


def leave_out_stream(
    model_at_fisher: nn.Module,
    sums: KFACSums,
    forget: Any,
    task: str | Task,
    *,
    scales: ScaleSums | None = None,
    batch_size: int | None = None,
    memory_budget_bytes: int | None = None,
) -> Downdated:
    """:func:`~unlearnkit.curvature.kfac.downdate.leave_out` with the forget set read in
    batches: S's sums at θ_F (same label mode, seed and draws; for EK-FAC also S's scale sums
    in D's eigenbases) subtracted from ``sums`` (and ``scales``), then R's curvature.
    Nothing is modified."""
    dtype = next(iter(sums.layers.values())).a_sum.dtype if sums.layers else torch.float64
    opts: dict[str, Any] = dict(
        mode=sums.mode,
        seed=sums.seed,
        samples=sums.samples,
        batch_size=batch_size,
        memory_budget_bytes=memory_budget_bytes,
        progress=False,
        sum_dtype=dtype,
    )
    removed = stream_sums(model_at_fisher, forget, task, **opts)
    kept = subtract(sums, removed)
    if scales is None:
        return Downdated(kept, None, KroneckerCurvature.build(kept.factors()), "none")
    s_removed = stream_scale_sums(model_at_fisher, forget, task, scales.bases, **opts)
    s_kept = subtract_scales(scales, s_removed)
    curv = KroneckerCurvature.build(kept.factors(), s_kept.scales(), bases=scales.bases)
    return Downdated(kept, s_kept, curv, "full-data")


__all__ = [
    "MAX_BATCH",
    "choose_batch_size",
    "iter_batches",
    "leave_out_stream",
    "per_sample_bytes",
    "resolve_batch_size",
    "stream_curvature",
    "stream_gradient",
    "stream_scale_sums",
    "stream_sums",
    "sums_bytes",
]
