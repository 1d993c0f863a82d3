"""Data-parallel accumulation: every process sums over its shard, one all-reduce, normalise.

The statistics of :mod:`.factors` and :mod:`.ekfac` are sums over samples plus counts, so for
shards D_1..D_w of D::

    A_sum(D) = Σ_r A_sum(D_r),   G_sum(D) = Σ_r G_sum(D_r),   n(D) = Σ_r n(D_r), ...

and normalising *after* the reduction gives exactly the single-process factors (up to the
order of floating-point additions). Each reduction packs all tensors of one statistic into a
single flat buffer: one ``all_reduce(SUM)`` per call. The eigenbases used for the EK-FAC scales
are broadcast from rank 0, so every process projects into the same basis even where ``eigh``
is not bit-reproducible across machines.

Without an initialised ``torch.distributed`` process group, every function is the identity.
All processes must hold the same model and use the same mode, seed and ``samples``; the
check is one ``all_gather_object`` of these facts before the reduction.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from unlearnkit.curvature.kfac.direction import KroneckerCurvature
from unlearnkit.curvature.kfac.ekfac import LayerEigen, ScaleSums, eigenbases, scale_sums
from unlearnkit.curvature.kfac.factors import KFACSums, LayerSums, accumulate
from unlearnkit.curvature.kfac.stream import stream_scale_sums, stream_sums
from unlearnkit.errors import ConfigError
from unlearnkit.tasks import Task


def is_distributed() -> bool:
    """Whether a ``torch.distributed`` process group is initialised (with more than 1 rank)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _check_same(facts: tuple[object, ...]) -> None:
    gathered: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, facts)
    if any(g != facts for g in gathered):
        raise ConfigError(f"processes disagree on the K-FAC statistics to reduce: {gathered}")


def comm_device() -> torch.device:
    """Where collectives run: the current CUDA device for NCCL, else the CPU (gloo)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_reduce(tensors: list[Tensor]) -> list[Tensor]:
    """One ``all_reduce(SUM)`` of the concatenation (on :func:`comm_device`); returns new
    tensors of the same shapes, on the device of the inputs."""
    home = tensors[0].device
    flat = torch.cat([t.reshape(-1).to(home) for t in tensors]).to(comm_device())
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat = flat.to(home)
    out, start = [], 0
    for t in tensors:
        out.append(flat[start : start + t.numel()].reshape(t.shape))
        start += t.numel()
    return out


def all_reduce_sums(sums: KFACSums) -> KFACSums:
    """The K-FAC sums over all processes' shards (a new object; the input is unchanged)."""
    if not is_distributed():
        return sums
    layer_keys, diag_keys = list(sums.layers), list(sums.diag)
    _check_same((sums.mode, sums.seed, sums.samples, tuple(layer_keys), tuple(diag_keys)))
    tensors = [sums.count]
    for k in layer_keys:
        s = sums.layers[k]
        tensors += [s.a_sum, s.g_sum, s.positions]
    tensors += [sums.diag[k] for k in diag_keys]
    red = _all_reduce(tensors)
    layers = {}
    for i, k in enumerate(layer_keys):
        a, g, p = red[1 + 3 * i : 4 + 3 * i]
        layers[k] = LayerSums(sums.layers[k].spec, a, g, p)
    diag = dict(zip(diag_keys, red[1 + 3 * len(layer_keys) :], strict=True))
    return replace(sums, count=red[0], layers=layers, diag=diag)


def all_reduce_scale_sums(sums: ScaleSums) -> ScaleSums:
    """EK-FAC scale sums over all processes (all in the same, broadcast, eigenbases)."""
    if not is_distributed():
        return sums
    keys = list(sums.sums)
    _check_same((sums.mode, sums.seed, sums.samples, tuple(keys)))
    red = _all_reduce([sums.count, *(sums.sums[k] for k in keys)])
    return replace(sums, count=red[0], sums=dict(zip(keys, red[1:], strict=True)))


def broadcast_bases(bases: dict[str, LayerEigen], src: int = 0) -> dict[str, LayerEigen]:
    """Rank ``src``'s eigenbases on every process (one broadcast of a packed buffer)."""
    if not is_distributed():
        return bases
    keys = list(bases)
    parts = [t for k in keys for t in (bases[k].UA, bases[k].alpha, bases[k].UG, bases[k].gamma)]
    home = parts[0].device
    flat = torch.cat([t.reshape(-1) for t in parts]).to(comm_device())
    dist.broadcast(flat, src=src)
    flat = flat.to(home)
    out, start = {}, 0
    for k in keys:
        fields = []
        for t in (bases[k].UA, bases[k].alpha, bases[k].UG, bases[k].gamma):
            fields.append(flat[start : start + t.numel()].reshape(t.shape))
            start += t.numel()
        out[k] = LayerEigen(bases[k].spec, *fields)
    return out


def shard_curvature(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    task: str | Task,
    *,
    ids: Tensor,
    mode: str = "empirical",
    seed: int = 0,
    samples: int = 1,
    ekfac: bool = False,
    batch_size: int = 256,
) -> tuple[KFACSums, ScaleSums | None, KroneckerCurvature]:
    """This process's shard ``(x, y, ids)`` → the curvature of all shards together.

    Pass 1: K-FAC sums, all-reduced, normalised, eigendecomposed (bases from rank 0).
    Pass 2 (``ekfac``): scale sums in those bases, all-reduced. Returns the global sums (for
    later downdates), the global scale sums (or ``None``) and the curvature."""
    opts = dict(mode=mode, ids=ids, seed=seed, samples=samples, batch_size=batch_size)
    sums = all_reduce_sums(accumulate(model, x, y, task, **opts))
    factors = sums.factors()
    bases = broadcast_bases(eigenbases(factors))
    if not ekfac:
        return sums, None, KroneckerCurvature.build(factors, bases=bases)
    s = all_reduce_scale_sums(scale_sums(model, x, y, task, bases, **opts))
    return sums, s, KroneckerCurvature.build(factors, s.scales(), bases=bases)


def stream_curvature_shards(
    model: nn.Module,
    data: Any,
    task: str | Task,
    *,
    ekfac: bool = False,
    **kwargs: Any,
) -> tuple[KFACSums, ScaleSums | None]:
    """:func:`~unlearnkit.curvature.kfac.stream.stream_curvature` of this process's shard
    ``data`` (any stream source), returning the sums of **all** shards: the shard's sums,
    one all-reduce; for EK-FAC the eigenbases of the reduced factors (rank 0's, broadcast, in
    row-major copies as a single process keeps them), the shard's scale sums in them and one
    more all-reduce. ``kwargs`` as :func:`~unlearnkit.curvature.kfac.stream.stream_sums`;
    without a process group it is ``stream_curvature``."""
    sums = all_reduce_sums(stream_sums(model, data, task, **kwargs))
    if not ekfac:
        return sums, None
    own = {
        k: LayerEigen(e.spec, e.UA.contiguous(), e.alpha, e.UG.contiguous(), e.gamma)
        for k, e in eigenbases(sums.factors()).items()
    }
    bases = broadcast_bases(own)
    opts = {k: v for k, v in kwargs.items() if k not in ("mode", "seed", "samples")}
    common: dict[str, Any] = dict(mode=sums.mode, seed=sums.seed, samples=sums.samples)
    scales = stream_scale_sums(model, data, task, bases, **common, **opts)
    return sums, all_reduce_scale_sums(scales)
