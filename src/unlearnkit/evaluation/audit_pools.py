"""The audit's pools as jobs: which shadow originals, retrains and unlearned models an audit
needs, with the content keys that let every later audit reuse them.

* originals: one per shadow split (pool key: dataset + population fingerprint, model,
  recipe, split scheme and seed);
* retrains: one per unlearning run on H_k \\ F_k, same initial weights and seed as its
  original (the key adds the scheme's options except the shadow count, so a larger audit
  reuses every member);
* unlearned models of a method: one per run (the key adds method, configuration, seed and
  the val/test fingerprints).

The members are :class:`~unlearnkit.jobs.pools.TrainJob` / :class:`~unlearnkit.jobs.pools.UnlearnJob`
jobs run by :func:`unlearnkit.jobs.pools.run_pool`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unlearnkit.evaluation.audit_config import AuditConfig
from unlearnkit.evaluation.audit_splits import SchemeOptions, SplitPlan
from unlearnkit.jobs.members import TrainJob, UnlearnJob
from unlearnkit.jobs.pools import PoolSpec, WorkerContext, dataset_fingerprint


def training_specs(
    config: AuditConfig, context: WorkerContext, recipe: dict[str, Any], options: SchemeOptions
) -> tuple[PoolSpec, PoolSpec]:
    """The (originals, retrains) pool specs of an audit."""
    base = {
        "dataset": {
            "name": config.dataset,
            "params": config.dataset_params,
            "split": [config.val_fraction, config.test_fraction, config.split_seed],
            "population": dataset_fingerprint(context.population),
        },
        "model": {"name": config.model, "options": config.model_options},
        "recipe": recipe,
    }
    scheme = {"scheme": config.scheme, "seed": config.seed}
    # the shadow count is left out of every pool key: a larger audit reuses the members
    opts = {k: v for k, v in vars(options).items() if k != "shadows"}
    return (
        PoolSpec("original", {**base, "split_scheme": scheme}),
        PoolSpec("retrain", {**base, "split_scheme": {**scheme, **opts}}),
    )


def original_jobs(
    spec: PoolSpec, cache: Path, config: AuditConfig, recipe: dict[str, Any], plan: SplitPlan
) -> list[TrainJob]:
    """One shadow original per split, on the split's training ids."""
    folder = spec.folder(cache)
    return [
        TrainJob(
            folder,
            s.index,
            spec.key,
            config.model,
            config.model_options,
            recipe,
            s.train_ids,
            s.init_seed,
            s.train_seed,
        )
        for s in plan.splits
    ]


def retrain_jobs(
    spec: PoolSpec, cache: Path, config: AuditConfig, recipe: dict[str, Any], plan: SplitPlan
) -> list[TrainJob]:
    """One retrain per unlearning run, on its retain ids, with its split's seeds."""
    folder = spec.folder(cache)
    jobs = []
    for r in plan.runs:
        s = plan.splits[r.split]
        jobs.append(
            TrainJob(
                folder,
                r.index,
                spec.key,
                config.model,
                config.model_options,
                recipe,
                plan.retain_ids(r),
                s.init_seed,
                s.train_seed,
            )
        )
    return jobs


def unlearned_jobs(
    retrain_spec: PoolSpec,
    cache: Path,
    config: AuditConfig,
    context: WorkerContext,
    plan: SplitPlan,
    originals: list[TrainJob],
    method: str,
    method_config: dict[str, Any],
) -> tuple[PoolSpec, list[UnlearnJob]]:
    """The pool of ``method``'s unlearned models: one per run, from its split's original."""
    spec = PoolSpec(
        f"unlearned-{method}",
        {
            **retrain_spec.definition,
            "method": method,
            "config": method_config,
            "unlearn_seed": config.unlearn_seed,
            "val": dataset_fingerprint(context.val) if context.val else None,
            "test": dataset_fingerprint(context.test) if context.test else None,
        },
    )
    folder = spec.folder(cache)
    jobs = [
        UnlearnJob(
            folder,
            r.index,
            originals[r.split],
            method,
            method_config,
            config.unlearn_seed,
            plan.retain_ids(r),
            r.forget_ids,
        )
        for r in plan.runs
    ]
    return spec, jobs
