"""The ``oracles`` stage: per setting, a pool of retrained models and one of originals.

Member ``k`` of a pool is exactly a benchmark reference of model seed ``s_k = oracles.seed +
k``: initial weights from ``s_k`` (``build_model``), data order from ``train_seed + s_k``
(:meth:`~unlearnkit.bench.config.Experiment.train_seed_for`), the setting's recipe, and the
retain split (retrain pool) or the whole training split (original pool) of the benchmark's
split. The benchmark's own Retrain models (seeds ``exp.seeds``, disjoint from the pool's) are
therefore held-out draws of the pool's distribution: the calibration row of the audits
(:mod:`unlearnkit.bench.oracle_audit`).

Members are :class:`~unlearnkit.jobs.members.TrainJob` s of the one job system, trained in
chunks of ``oracles.chunk`` by :class:`~unlearnkit.jobs.members.BatchTrainJob`
(:func:`~unlearnkit.training.batched.train_many`, one by one where it does not apply) on the
driver's executor, recorded as ``oracles`` runs of the store and cached by content under
``DIR/pools/<pool key>/`` (:mod:`unlearnkit.jobs.pools`): a re-run, a larger pool or another
method reuses every member already trained.

A member that did not train (:mod:`unlearnkit.bench.vetting`) is rejected and replaced by the
next seed (``s_K, s_{K+1}, ...``) before any metric uses the pool; at most
``oracles.max_rejected`` rejections per pool, else the stage fails. The stage stores the
accepted members' margins m = z_y − logsumexp_{j≠y} z_j on forget / retain / val
(``oracles/<key>.safetensors``, (M, n) per part), which KLoM and U-LiRA read.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from unlearnkit.bench.config import DatasetConfig, ModelConfig
from unlearnkit.bench.context import Context
from unlearnkit.bench.oracle_audit import PARTS
from unlearnkit.bench.splits import read_split
from unlearnkit.bench.tasks import Output, Task
from unlearnkit.bench.vetting import chance_accuracy, threshold, verdict
from unlearnkit.io import save_tensors
from unlearnkit.jobs.keys import content_key
from unlearnkit.jobs.members import BatchTrainJob, TrainJob
from unlearnkit.jobs.pools import (
    JobTracking,
    PoolSpec,
    WorkerContext,
    dataset_fingerprint,
    run_pool,
    write_pool_manifest,
)
from unlearnkit.metrics.klom import margins
from unlearnkit.training import predict_logits

#: the split part each pool trains on
ROLE_PARTS = {"retrain": "retain", "original": "train"}


def oracles_key(ctx: Context, d: Any, m: Any) -> str:
    """Content key of one setting's pools: split, model, recipe, sizes, seeds, vetting."""
    o, seed0 = ctx.exp.oracles, ctx.exp.seeds[0]
    return content_key(
        "oracles",
        split=ctx.split_key(d, seed0),
        model={"name": m.name, "options": m.options},
        recipe=ctx.exp.recipe_for(d),
        device=ctx.exp.device,
        size=o.size,
        originals=o.n_originals(),
        seed=o.seed,
        train_seed=ctx.exp.train_seed,
        min_gain=ctx.exp.references.min_gain,
        max_rejected=o.max_rejected,
    )


def plan_oracles(ctx: Context) -> list[Task]:
    """One task per setting (none when ``oracles.size`` is 0)."""
    o = ctx.exp.oracles
    if o.size == 0:
        return []
    tasks = []
    for d, m in ctx.settings():
        split = ctx.split_key(d, ctx.exp.seeds[0])
        payload = {
            "split": f"splits/{split}",
            "model": m.model_dump(mode="json"),
            "recipe": {**ctx.exp.recipe_for(d), "device": ctx.exp.device},
            "sizes": {"retrain": o.size, "original": o.n_originals()},
            "seed": o.seed,
            "train_seed": ctx.exp.train_seed,
            "chunk": o.chunk,
            "min_gain": ctx.exp.references.min_gain,
            "max_rejected": o.max_rejected,
        }
        labels = {"dataset": d.tag, "model": m.tag, "method": None, "seed": None}
        tasks.append(ctx.task("oracles", oracles_key(ctx, d, m), labels, payload, [split]))
    return tasks


def klom_key(ctx: Context, d: DatasetConfig, m: ModelConfig, row: str) -> str:
    return content_key(
        "klom",
        oracles=oracles_key(ctx, d, m),
        row=row,
        models=[ctx.model_key(d, m, row, s) for s in ctx.exp.seeds],
        bins=ctx.exp.oracles.bins,
    )


def plan_klom(ctx: Context) -> list[Task]:
    """One task per setting and row (none without oracle pools)."""
    if ctx.exp.oracles.size == 0:
        return []
    tasks = []
    for d, m in ctx.settings():
        pools = oracles_key(ctx, d, m)
        for row in ctx.rows():
            models = [ctx.model_key(d, m, row, s) for s in ctx.exp.seeds]
            split = ctx.split_key(d, ctx.exp.seeds[0])
            payload = {
                "oracles": f"oracles/{pools}.safetensors",
                "sha256": ctx.store.params(pools).get("sha256"),
                "models": [f"models/{k}" for k in models],
                "split": f"splits/{split}",
                "bins": ctx.exp.oracles.bins,
                "calibration": row == "retrain",
            }
            labels = {"dataset": d.tag, "model": m.tag, "method": row, "seed": None}
            key = klom_key(ctx, d, m, row)
            tasks.append(ctx.task("klom", key, labels, payload, [pools, *models]))
    return tasks


def _pool_jobs(spec: PoolSpec, root: str, p: dict[str, Any], ids: np.ndarray, ks: range):
    folder = spec.folder(root)
    return [
        TrainJob(
            folder,
            k,
            spec.key,
            p["model"]["name"],
            p["model"]["options"],
            p["recipe"],
            ids,
            init_seed=p["seed"] + k,
            train_seed=p["train_seed"] + p["seed"] + k,
            keep_diverged=True,
        )
        for k in ks
    ]


def build_pool(
    role: str,
    size: int,
    p: dict[str, Any],
    context: WorkerContext,
    ids: np.ndarray,
    bar: float | None,
    root: str,
    ctx: Context,
    labels: dict[str, Any],
) -> tuple[list[TrainJob], list[dict[str, Any]]]:
    """Train (or reuse) members until ``size`` are accepted; return them and the rejected."""
    spec = PoolSpec(
        f"oracle-{role}",
        {
            "population": dataset_fingerprint(context.population),
            "model": p["model"],
            "recipe": p["recipe"],
        },
    )
    write_pool_manifest(spec, root, {"role": role, "size": size})
    accepted: list[TrainJob] = []
    rejected: list[dict[str, Any]] = []
    start = 0
    tracking = JobTracking(ctx.store, "oracles", labels)
    while len(accepted) < size:
        want = size - len(accepted)
        if len(rejected) > p["max_rejected"]:
            raise RuntimeError(
                f"oracle pool {role}: {len(rejected)} members did not train "
                f"(last: {rejected[-1]['reason']}); fix the recipe or raise oracles.max_rejected"
            )
        members = _pool_jobs(spec, root, p, ids, range(start, start + want))
        chunk = int(p["chunk"])
        jobs = [
            BatchTrainJob(spec.folder(root), i, members[i : i + chunk])
            for i in range(0, len(members), chunk)
        ]
        run_pool(f"oracle-{role}", jobs, context, executor=ctx.executor, tracking=tracking)
        for job in members:
            info = job.manifest()
            reason = verdict(info.get("test_accuracy"), bar, diverged="diverged" in info)
            if reason is None:
                accepted.append(job)
            else:
                rejected.append(
                    {
                        "seed": job.init_seed,
                        "test_accuracy": info.get("test_accuracy"),
                        "reason": reason,
                    }
                )
        start += want
    return accepted, rejected


def pool_margins(jobs: list[TrainJob], parts: dict[str, Any]) -> dict[str, torch.Tensor]:
    """(M, n) margins of the members on each part (float64)."""
    out: dict[str, list[torch.Tensor]] = {name: [] for name in parts}
    for job in jobs:
        model = job.load()
        for name, data in parts.items():
            logits = predict_logits(model, data).double()
            out[name].append(margins(logits, data.targets_for_class().long()))
    return {name: torch.stack(rows) for name, rows in out.items()}


def oracles_inline(task: Task, ctx: Context) -> Output:
    """Build both pools of one setting, vet them, store their margins (module docstring)."""
    p = task.payload
    t0 = time.perf_counter()
    split = read_split(str(task.path(p["split"])))
    context = WorkerContext(split.train, split.val, split.test)
    bar = threshold(chance_accuracy(split.test), float(p["min_gain"]))
    parts = {name: split.part(name) for name in PARTS if len(split.part(name))}
    labels = {k: task.labels.get(k) for k in ("dataset", "model")}
    root = str(task.path("pools"))
    # own copies: the split's tensors may view a mapped file that pickling outlives
    ids = {r: np.array(split.part(p).ids.numpy(), copy=True) for r, p in ROLE_PARTS.items()}
    tensors: dict[str, torch.Tensor] = {}
    params: dict[str, Any] = {"threshold": bar, "parts": sorted(parts)}
    metrics: dict[str, float] = {}
    for role in ("retrain", "original"):
        size = int(p["sizes"][role])
        if size == 0:
            continue
        members, rejected = build_pool(role, size, p, context, ids[role], bar, root, ctx, labels)
        for name, block in pool_margins(members, parts).items():
            tensors[f"{role}.{name}"] = block.contiguous()
        accs = [float(j.manifest()["test_accuracy"]) for j in members]
        params[role] = {
            "seeds": [j.init_seed for j in members],
            "members": [j.key for j in members],
            "folder": str(members[0].folder),
            "trainers": sorted({str(j.manifest().get("trainer", "train")) for j in members}),
            "rejected": rejected,
        }
        metrics[f"{role}.size"] = float(len(members))
        metrics[f"{role}.rejected"] = float(len(rejected))
        metrics[f"{role}.test_accuracy"] = float(np.mean(accs))
    rel = f"oracles/{task.key}.safetensors"
    params["sha256"] = save_tensors(task.path(rel), tensors)
    return Output(
        params=params, metrics=metrics, timings={"pools": time.perf_counter() - t0}, artifact=rel
    )
