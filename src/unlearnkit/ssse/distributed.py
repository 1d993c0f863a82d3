"""Data-parallel preparation: with ``torch.distributed`` initialised, every process prepares from
its own shard of the training data and all of them end with the state of the whole data.

The curvature of an erasure state is a sum over samples, so for disjoint shards D_1..D_w of D
(w processes, gloo on CPU or NCCL on GPU):

* **Kronecker factors** (``kfac`` / ``ekfac``): each process streams its shard's sums, one
  all-reduce adds them (:func:`~unlearnkit.curvature.kfac.distributed.stream_curvature_shards`);
  EK-FAC eigendecomposes the reduced factors, broadcasts rank 0's bases, streams the shard's
  scale sums in them and all-reduces once more. Sampled labels are keyed by (seed, sample id),
  so they do not depend on the sharding.
* **Exact rows** (``rows``): each process computes its shard's rows, :func:`gather_rows`
  collects them on every process (one padded ``all_gather``, the shards may be uneven) and every
  process inverts F as usual. Only one row group per sample (``group_size=1``) is defined:
  groups of g are drawn from a seeded permutation of the *global* positions, which a shard does
  not know, and the true Fisher's label draws are indexed by global position as well, so
  ``group_size > 1`` and ``curvature="true"`` are refused in distributed mode.

Before anything is computed, :func:`plan_shards` gathers every shard's ids and facts once
(``all_gather_object``) and refuses, on every process alike, shards that overlap or are empty,
and processes that disagree on the model, the configuration or the task. The state lists all
ids in **ascending** order (the single-process state keeps the dataset's order: the same state
when the dataset's ids ascend, e.g. the default positions 0..n−1; otherwise the same up to the
order of the samples). The rows are then in that order, so with ascending ids the rows and the
inverse equal the single-process ones to rounding; the Kronecker sums are added in another
order than one process adds them (equal to fp64 rounding). Every process gets the same state:
the same tensors, ids, ``state_id`` and ``prepare_seconds`` (the slowest process's).

**Saving**: a data-parallel state is written by rank 0 only; on the other ranks ``save`` writes
nothing and returns the path (:func:`writes_state`), so every rank may call it. Call it while
the process group is up (after ``destroy_process_group`` every process would write).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from unlearnkit.curvature.kfac.distributed import comm_device, is_distributed
from unlearnkit.curvature.matrix import GradientMatrix
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.io import model_fingerprint
from unlearnkit.ssse.config import ErasureConfig

#: key of the state's notes that records a data-parallel preparation
NOTE = "data_parallel"


@dataclass(frozen=True)
class ShardPlan:
    """Every process's shard ids (as given) and the facts all processes share."""

    world: int
    rank: int
    shard_ids: tuple[Tensor, ...]  # (n_r,) int64 per rank, in that shard's order
    state_id: str  # rank 0's

    @property
    def ids(self) -> Tensor:
        """All ids, ascending (the state's order)."""
        return torch.sort(torch.cat(self.shard_ids)).values

    @property
    def n(self) -> int:
        return sum(int(s.numel()) for s in self.shard_ids)

    def note(self) -> dict[str, Any]:
        """What the state's notes record: world size and shard sizes."""
        return {"world_size": self.world, "shard_sizes": [int(s.numel()) for s in self.shard_ids]}


def plan_shards(model: nn.Module, data: Any, cfg: ErasureConfig) -> ShardPlan | None:
    """``None`` without an initialised process group (of more than one process); otherwise one
    ``all_gather_object`` of every shard's ids, config, model fingerprint, task and classes,
    checked alike on every process (ConfigError / DataError on all of them)."""
    if not is_distributed():
        return None
    world, rank = dist.get_world_size(), dist.get_rank()
    facts = {
        "config": cfg.model_dump(mode="json"),
        "model": model_fingerprint(model),
        "task": data.task,
        "classes": tuple(data.classes),
    }
    local = torch.as_tensor(data.ids, dtype=torch.int64).reshape(-1).cpu()
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, (facts, local.tolist(), uuid.uuid4().hex))
    for what in ("model", "config", "task", "classes"):
        differ = [r for r, g in enumerate(gathered) if g[0][what] != gathered[0][0][what]]
        if differ:
            raise ConfigError(
                f"the processes prepare with different {what}s (rank(s) {differ} differ from "
                "rank 0): every process must pass the same model (same parameters), the same "
                "config and data of the same task and classes"
            )
    shards = tuple(torch.tensor(g[1], dtype=torch.int64) for g in gathered)
    empty = [r for r, s in enumerate(shards) if s.numel() == 0]
    if empty:
        raise DataError(
            f"rank(s) {empty} hold no samples; give every process a non-empty shard (at most as "
            "many processes as samples)"
        )
    _check_disjoint(shards)
    return ShardPlan(world, rank, shards, str(gathered[0][2]))


def _check_disjoint(shards: tuple[Tensor, ...]) -> None:
    every = torch.cat(shards)
    owner = torch.cat([torch.full((s.numel(),), r) for r, s in enumerate(shards)])
    values, counts = torch.unique(every, return_counts=True)
    dup = values[counts > 1]
    if dup.numel() == 0:
        return
    where = {int(i): sorted({int(r) for r in owner[every == i].tolist()}) for i in dup[:5].tolist()}
    shown = ", ".join(f"id {i} on rank(s) {r}" for i, r in where.items())
    raise DataError(
        f"the shards overlap: {dup.numel()} sample id(s) appear more than once ({shown}). Each "
        "process must hold a disjoint part of the training data: a DistributedSampler pads "
        "uneven shards by repeating samples (use drop_last=True or split the data yourself, "
        "e.g. shard(data)), and data without ids numbers every shard 0, 1, ... (give ids)"
    )


def shard(data: Any, rank: int | None = None, world: int | None = None) -> Any:
    """This process's part of ``data`` (a dataset with ``ids`` and ``subset``): the samples at
    positions rank, rank + w, rank + 2w, … — like a ``DistributedSampler`` without shuffling,
    but without padding, so the shards are disjoint (their sizes differ by at most one)."""
    ready = dist.is_available() and dist.is_initialized()
    if rank is None:
        rank = dist.get_rank() if ready else 0
    if world is None:
        world = dist.get_world_size() if ready else 1
    if not 0 <= rank < world:
        raise ConfigError(f"rank must be in [0, {world}), got {rank}")
    ids = torch.as_tensor(data.ids, dtype=torch.int64).reshape(-1)
    return data.subset(ids[rank::world].contiguous())


def check_rows(cfg: ErasureConfig) -> None:
    """The exact rows are data-parallel for one row group per sample and a deterministic
    curvature only (module docstring); ConfigError otherwise."""
    if cfg.group_size != 1:
        raise ConfigError(
            f"group_size={cfg.group_size} is not supported in distributed mode: the groups are "
            "drawn from a permutation of the whole dataset's positions, which a shard does not "
            "know. Pass group_size=1 (one row per sample), or structure='kfac'/'ekfac'"
        )
    if cfg.curvature == "true":
        raise ConfigError(
            "curvature='true' rows are not supported in distributed mode: the label draws are "
            "indexed by the sample's position in the whole dataset. Use curvature='empirical' or "
            "'ggn', or structure='kfac'/'ekfac' (their draws are keyed by sample id)"
        )


def gather_rows(plan: ShardPlan, gm: GradientMatrix) -> GradientMatrix:
    """Every shard's rows (one group per sample, r rows each) on every process, ordered by
    ascending id: one ``all_gather`` of the rows padded to the largest shard."""
    local = plan.shard_ids[plan.rank]
    n_r, d = int(local.numel()), int(gm.G.shape[1])
    if gm.group_size != 1 or gm.G.shape[0] % max(n_r, 1) or gm.group_members.shape[0] != n_r:
        raise ConfigError("gather_rows needs one row group per sample (group_size=1)")
    if not torch.equal(gm.group_members[:, 0].cpu(), local):
        raise DataError("the shard's rows are not in the order of its ids")
    r = int(gm.G.shape[0]) // n_r
    sizes = [int(s.numel()) for s in plan.shard_ids]
    dev = comm_device()
    buf = torch.zeros(max(sizes) * r, d, dtype=gm.G.dtype, device=dev)
    buf[: n_r * r] = gm.G.to(dev)
    parts = [torch.empty_like(buf) for _ in range(plan.world)]
    dist.all_gather(parts, buf)
    every = torch.cat([p[: s * r].reshape(s, r, d) for p, s in zip(parts, sizes, strict=True)])
    ids, order = torch.sort(torch.cat(plan.shard_ids))
    G = every[order.to(dev)].reshape(-1, d).to(gm.G.device)
    n = int(ids.numel())
    return GradientMatrix(
        G=G,
        row_group=torch.arange(n).repeat_interleave(r),
        row_output=torch.arange(r).repeat(n),
        group_members=ids.reshape(n, 1).clone(),
        group_sizes=torch.ones(n, dtype=torch.int64),
        sample_ids=ids,
        layout=gm.layout,
        kind=gm.kind,
        group_size=1,
        seed=gm.seed,
    )


def slowest(seconds: float) -> float:
    """The largest of every process's ``seconds`` (one all-reduce; identity without a group)."""
    if not is_distributed():
        return seconds
    t = torch.tensor([seconds], dtype=torch.float64, device=comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def total_samples(data: Any) -> int:
    """Samples of all shards: ``len(data)`` summed over the processes (one all-reduce)."""
    if not is_distributed():
        return len(data)
    t = torch.tensor([len(data)], dtype=torch.int64, device=comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return int(t.item())


def rank0_choice(choice: dict[str, Any]) -> dict[str, Any]:
    """Rank 0's ``choice`` on every process (``broadcast_object_list``; identity without a
    group), so that all processes prepare the same structure."""
    if not is_distributed():
        return choice
    box: list[Any] = [choice]
    dist.broadcast_object_list(box, src=0)
    return dict(box[0])


def writes_state(notes: dict[str, Any]) -> bool:
    """Whether this process writes a state with these notes: always, except for a
    data-parallel state on a rank other than 0 while the process group is up."""
    return not (NOTE in notes and is_distributed() and dist.get_rank() != 0)


__all__ = [
    "NOTE",
    "ShardPlan",
    "check_rows",
    "gather_rows",
    "plan_shards",
    "rank0_choice",
    "shard",
    "slowest",
    "total_samples",
    "writes_state",
]
