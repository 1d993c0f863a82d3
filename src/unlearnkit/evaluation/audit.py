"""U-LiRA end to end: shadow pools, unlearning, per-example attack, held-out metrics.

Hayes et al. (2024) adapt LiRA (Carlini et al. 2022) to unlearning (docs/evaluation.md,
§3.5 and "Deep Unlearn's own evaluation" §3.8). For each target example x the question is:
"was x trained on and then unlearned by the method under test, or never seen?"

Procedure of :meth:`Auditor.audit` (``scheme="hayes"``, the default):

1. Materialise the data plan (:meth:`AuditConfig.data_plan`); its train split is the
   *population*. A split scheme (:mod:`.audit_splits`) draws the shadow splits: random halves
   H_k, and a fixed target set T; run k forgets F_k = H_k ∩ T.
2. Train one shadow original per split (pool ``original``) and, when needed, one retrain per
   run on H_k \\ F_k from the same initial weights and seed (pool ``retrain``). Both pools are
   cached on disk by content hash (:mod:`unlearnkit.jobs.pools`) and shared by every method audited.
3. Unlearn F_k from original k with the method (pool ``unlearned/<method>``). ``original``
   uses the originals as they are; ``retrain`` uses the retrain pool (no second training).
4. Statistic per (model, target): LiRA's φ = log(p_y / (1 − p_y))
   (:func:`~unlearnkit.metrics.signals.logit_scaled_confidence`).
5. IN = φ under unlearned models whose forget set held x. OUT = φ under models that never saw
   x: the retrain pool (``out_source="retrain"``, default: every target is unseen by every
   retrain model) or the method's own unlearned models of splits that left x out
   (``out_source="unlearned"``).
6. Per-example Gaussians (medians; per-example σ from 32 models per side, else a global σ;
   floor 1e-3: :class:`~unlearnkit.metrics.ulira.LiraFitConfig`) fitted on the other
   splits and scored on held-out splits (leave-one-split-out, :mod:`.audit_attack`); the
   online likelihood ratio with threshold 0 decides "unlearned". Held-out trials: split k's
   unlearned model on F_k (label 1) and its retrain model on T \\ H_k (label 0), or, with
   ``out_source="unlearned"``, split k's unlearned model on T \\ H_k.
7. Report the pooled ROC: balanced accuracy, AUC, TPR at 1 % / 0.1 % / 0.01 % FPR
   (``supported`` says whether the negatives can resolve the rate), per-example scores.

``scheme="deepunlearn"`` reproduces Deep Unlearn's released ``munl/lira`` for comparison:
their split scheme, 0/1 correctness as the statistic, mean and per-example std (plus the
variance floor they lack), "never" = unlearned models of splits that held x out, and fitting
and scoring on the *same* models (no held-out targets). Its membership probability
p = N_in / (N_in + N_out) = sigmoid(online score) is reported as ``mean_membership_probability``.

Direction: balanced accuracy and AUC *closer to 0.5 are better*, TPR@α closer to α. The
Retrain row is the reference (≈ chance by construction); the Original row is the ceiling.
"""

from __future__ import annotations

import json
import time
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import expit

import unlearnkit.methods  # noqa: F401  (registers the methods)
from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import ConfigError
from unlearnkit.evaluation.audit_attack import AttackData, per_example_summary, run_attack
from unlearnkit.evaluation.audit_config import (
    POOL_METHODS,
    STATISTICS,
    AuditConfig,
    AuditResult,
)
from unlearnkit.evaluation.audit_pools import (
    original_jobs,
    retrain_jobs,
    training_specs,
    unlearned_jobs,
)
from unlearnkit.evaluation.audit_splits import SPLIT_SCHEMES, SchemeOptions, SplitPlan
from unlearnkit.jobs.executors import Executor
from unlearnkit.jobs.members import TrainJob
from unlearnkit.jobs.pools import (
    JobTracking,
    PoolReport,
    PoolSpec,
    Progress,
    WorkerContext,
    run_pool,
    write_pool_manifest,
)
from unlearnkit.methods import METHODS
from unlearnkit.training import evaluate_accuracy, make_recipe, predict_logits


def _accuracy(logits: torch.Tensor, labels: torch.Tensor, positions: np.ndarray) -> float:
    if positions.size == 0:
        return float("nan")
    pred = logits[positions].argmax(1)
    return float((pred == labels[positions]).double().mean())


class Auditor:
    """Runs U-LiRA audits that share one dataset, plan and set of pools.

    Pool members (shadow originals, retrains, unlearned models) are jobs of
    :mod:`unlearnkit.jobs`: they run on ``executor`` (default: in this process, or a local
    pool of ``config.workers`` processes) and, with ``tracking``, are recorded as runs of a
    results store, so a benchmark schedules (also on Ray), tracks and resumes them.

    >>> auditor = Auditor(AuditConfig(shadows=32), cache="~/.cache/unlearnkit")  # doctest: +SKIP
    >>> result = auditor.audit("ft", {"num_epochs": 2})                           # doctest: +SKIP
    """

    def __init__(
        self,
        config: AuditConfig,
        cache: str | Path,
        progress: Progress | None = None,
        *,
        executor: Executor | None = None,
        tracking: JobTracking | None = None,
    ) -> None:
        self.config = config
        self.cache = Path(cache).expanduser()
        self.progress = progress
        self.executor = executor
        self.tracking = tracking
        splits = config.data_plan().materialise()
        if splits.train.task != "multiclass":
            raise ConfigError("U-LiRA audits need a multi-class dataset (the statistic uses p_y)")
        self.population: ArrayDataset = splits.train
        self.context = WorkerContext(
            splits.train,
            splits.val if len(splits.val) else None,
            splits.test if len(splits.test) else None,
        )
        self.recipe = make_recipe(config.recipe).model_dump(mode="json")
        options = SchemeOptions(
            config.shadows,
            config.seed,
            config.target_fraction,
            config.forget_sets,
            config.forget_fraction,
        )
        self.plan: SplitPlan = SPLIT_SCHEMES.get(config.scheme)(
            self.population.ids.numpy(), options
        )
        self.masks = self.plan.masks()
        self.target_pos = self.population.positions(self.plan.targets).numpy()
        self.original_spec, self.retrain_spec = training_specs(
            config, self.context, self.recipe, options
        )
        # per training pool ("original", "retrain"): logits on the population, test accuracy
        # and training seconds of every member; per audited method: test accuracy / seconds
        self._pool_logits: dict[str, list[torch.Tensor]] = {}
        self._pool_acc: dict[str, list[float]] = {}
        self._pool_secs: dict[str, list[float]] = {}
        self._reports: dict[str, PoolReport] = {}
        self._test_acc: dict[str, list[float]] = {}
        self._seconds: dict[str, list[float]] = {}

    # ------------------------------------------------------------------ pools

    @cached_property
    def original_jobs(self) -> list[TrainJob]:
        return original_jobs(self.original_spec, self.cache, self.config, self.recipe, self.plan)

    @cached_property
    def retrain_jobs(self) -> list[TrainJob]:
        return retrain_jobs(self.retrain_spec, self.cache, self.config, self.recipe, self.plan)

    def _train_pool(self, name: str, spec: PoolSpec, jobs: list[TrainJob]) -> PoolReport:
        if name in self._reports:
            return self._reports[name]
        write_pool_manifest(spec, self.cache, {"members": len(jobs)})
        report = run_pool(
            name,
            jobs,
            self.context,
            executor=self.executor,
            workers=self.config.workers,
            threads=self.config.threads,
            tracking=self.tracking,
            progress=self.progress,
        )
        logits, accs, secs = [], [], []
        test = self.context.test
        for job in jobs:
            model = job.load()
            logits.append(predict_logits(model, self.population).float())
            accs.append(evaluate_accuracy(model, test) if test is not None else float("nan"))
            secs.append(float(_read_json(job.manifest_path).get("seconds", float("nan"))))
        self._pool_logits[name], self._pool_acc[name], self._pool_secs[name] = logits, accs, secs
        self._reports[name] = report
        return report

    def originals(self) -> PoolReport:
        """Train (or reuse) the shadow originals."""
        return self._train_pool("original", self.original_spec, self.original_jobs)

    def retrains(self) -> PoolReport:
        """Train (or reuse) one retrain model per unlearning run."""
        return self._train_pool("retrain", self.retrain_spec, self.retrain_jobs)

    def _unlearned(
        self, method: str, config: dict[str, Any]
    ) -> tuple[list[torch.Tensor], list[PoolReport]]:
        """Logits of the method's unlearned models, one per run (row order = runs)."""
        if method == "original":
            rep = self.originals()
            logits = self._pool_logits["original"]
            self._test_acc[method] = [self._pool_acc["original"][r.split] for r in self.plan.runs]
            self._seconds[method] = [0.0 for _ in self.plan.runs]
            return [logits[r.split] for r in self.plan.runs], [rep]
        if method == "retrain":
            rep = self.retrains()
            self._test_acc[method] = self._pool_acc["retrain"]
            self._seconds[method] = self._pool_secs["retrain"]
            return self._pool_logits["retrain"], [rep]
        reports = [self.originals()]
        spec, jobs = unlearned_jobs(
            self.retrain_spec,
            self.cache,
            self.config,
            self.context,
            self.plan,
            self.original_jobs,
            method,
            config,
        )
        write_pool_manifest(spec, self.cache, {"members": len(jobs)})
        reports.append(
            run_pool(
                f"unlearn {method}",
                jobs,
                self.context,
                executor=self.executor,
                workers=self.config.workers,
                threads=self.config.threads,
                tracking=self.tracking,
                label=method,
                progress=self.progress,
            )
        )
        manifests = [j.manifest() for j in jobs]
        self._test_acc[method] = [
            float("nan") if m.get("test_accuracy") is None else float(m["test_accuracy"])
            for m in manifests
        ]
        self._seconds[method] = [float(m["seconds"]) for m in manifests]
        return [j.load_logits() for j in jobs], reports

    # ------------------------------------------------------------------ attack

    def _stat(self, logits: list[torch.Tensor]) -> np.ndarray:
        fn = STATISTICS.get(self.config.resolved("statistic"))
        y = self.population.y[self.target_pos]
        return np.stack([fn(z[self.target_pos].double(), y) for z in logits])

    def _attack_data(self, stat_u: np.ndarray) -> AttackData:
        forgotten, unseen = self.masks["forgotten"], self.masks["unseen"]
        groups = np.array([r.split for r in self.plan.runs])
        if self.config.resolved("out_source") == "unlearned":
            return AttackData(stat_u, forgotten, unseen, forgotten, unseen, groups)
        self.retrains()
        stat_r = self._stat(self._pool_logits["retrain"])
        none = np.zeros_like(forgotten)
        return AttackData(
            stat=np.vstack([stat_u, stat_r]),
            fit_in=np.vstack([forgotten, none]),
            fit_out=np.vstack([none, forgotten | unseen]),
            trial_in=np.vstack([forgotten, none]),
            trial_out=np.vstack([none, unseen]),
            groups=np.concatenate([groups, groups]),
        )

    def _model_accuracy(self, logits: list[torch.Tensor], method: str) -> dict[str, float]:
        y = self.population.y
        fa, ra = [], []
        for r, z in zip(self.plan.runs, logits, strict=True):
            fa.append(_accuracy(z, y, self.population.positions(r.forget_ids).numpy()))
            ra.append(_accuracy(z, y, self.population.positions(self.plan.retain_ids(r)).numpy()))
        return {
            "forget": float(np.mean(fa)),
            "retain": float(np.mean(ra)),
            "test": float(np.nanmean(self._test_acc[method]))
            if self._test_acc.get(method)
            else float("nan"),
        }

    def audit(self, method: str, config: dict[str, Any] | None = None) -> AuditResult:
        """Audit one method (a :data:`~unlearnkit.methods.METHODS` key); see the module doc."""
        t0 = time.perf_counter()
        unlearner = METHODS.get(method)()
        if method in POOL_METHODS:
            if config:
                raise ConfigError(
                    f"{method!r} is read from the shadow pools; it takes no configuration "
                    "(set the training recipe of the audit instead)"
                )
            cfg: dict[str, Any] = {}
        else:
            cfg = unlearner.make_config(config or {}).model_dump(mode="json")
        logits, reports = self._unlearned(method, cfg)
        data = self._attack_data(self._stat(logits))
        if self.config.resolved("out_source") == "retrain" and "retrain" not in [
            p.name for p in reports
        ]:
            reports.append(self._reports["retrain"])
        outcome = run_attack(
            data,
            self.config.resolved("fit"),
            score=self.config.score,
            held_out=self.config.resolved("held_out"),
            folds=self.config.folds,
            fprs=self.config.fprs,
        )
        n_runs = len(self.plan.runs)  # the method's rows come first
        per_example = per_example_summary(outcome)
        extra: dict[str, Any] = {}
        if self.config.score == "online":
            p = expit(outcome.scores[:n_runs][outcome.trials[:n_runs] & outcome.labels[:n_runs]])
            extra["mean_membership_probability"] = float(p.mean()) if p.size else float("nan")
        secs = self._seconds.get(method, [])
        return AuditResult(
            method=method,
            method_config=cfg,
            config=self.config,
            outcome=outcome,
            target_ids=self.plan.targets,
            target_labels=self.population.y[self.target_pos].numpy(),
            per_example=per_example,
            pools=reports,
            accuracy=self._model_accuracy(logits, method),
            unlearn_seconds=float(np.mean(secs)) if secs else None,
            seconds=time.perf_counter() - t0,
            extra=extra,
        )


def _read_json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def run_audit(
    config: AuditConfig,
    methods: dict[str, dict[str, Any] | None],
    cache: str | Path,
    progress: Progress | None = None,
    *,
    executor: Executor | None = None,
    tracking: JobTracking | None = None,
) -> list[AuditResult]:
    """Audit several methods against shared pools; results in the order given."""
    auditor = Auditor(config, cache, progress, executor=executor, tracking=tracking)
    return [auditor.audit(m, c) for m, c in methods.items()]
