"""U-LiRA end to end: shadow pools, unlearning, per-example attack, held-out metrics.

Hayes et al. (2024) adapt LiRA (Carlini et al. 2022) to unlearning (spec/evaluation.md §3.4,
§3.5 and "Deep Unlearn's own evaluation" §3.8). For each target example x the question is:
"was x trained on and then unlearned by the method under test, or never seen?"

Procedure of :meth:`Auditor.audit` (``scheme="hayes"``, the default):

1. Load the dataset; its train split (:func:`~unlearnkit.data.train_val_test_split`) is the
   *population*. A split scheme (:mod:`.audit_splits`) draws the shadow splits: random halves
   H_k, and a fixed target set T; run k forgets F_k = H_k ∩ T.
2. Train one shadow original per split (pool ``original``) and, when needed, one retrain per
   run on H_k \\ F_k from the same initial weights and seed (pool ``retrain``). Both pools are
   cached on disk by content hash (:mod:`.pools`) and shared by every method audited.
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

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import ConfigError
from unlearnkit.evaluation.audit_attack import (
    AttackData,
    AttackOutcome,
    per_example_summary,
    run_attack,
)
from unlearnkit.evaluation.audit_splits import SPLIT_SCHEMES, SchemeOptions, SplitPlan
from unlearnkit.evaluation.pools import (
    PoolReport,
    PoolSpec,
    Progress,
    TrainJob,
    UnlearnJob,
    WorkerContext,
    dataset_fingerprint,
    run_pool,
    write_pool_manifest,
)
from unlearnkit.metrics.roc import DEFAULT_FPRS
from unlearnkit.metrics.signals import correctness, logit_scaled_confidence
from unlearnkit.metrics.ulira import DEEP_UNLEARN_COMPAT, LIRA_SCORES, LiraFitConfig
from unlearnkit.registry import Registry

#: statistic name -> f(logits (n, C), labels (n,)) -> (n,)
STATISTICS: Registry[Callable[[Any, Any], np.ndarray]] = Registry("U-LiRA statistic")
STATISTICS.register("phi")(logit_scaled_confidence)
STATISTICS.register("correctness")(correctness)

#: Defaults each scheme gives the options left as ``None`` in :class:`AuditConfig`.
SCHEME_DEFAULTS: dict[str, dict[str, Any]] = {
    "hayes": {
        "statistic": "phi",
        "fit": LiraFitConfig(),
        "held_out": True,
        "out_source": "retrain",
    },
    "deepunlearn": {
        "statistic": "correctness",
        "fit": DEEP_UNLEARN_COMPAT,
        "held_out": False,
        "out_source": "unlearned",
    },
}

#: Methods that need no unlearning run: they are read from a training pool.
POOL_METHODS = ("original", "retrain")


class AuditConfig(BaseModel):
    """Everything that defines a U-LiRA audit (except the method under test).

    Options left ``None`` take the scheme's defaults (:data:`SCHEME_DEFAULTS`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = "mnist1d"
    dataset_params: dict[str, Any] = Field(default_factory=dict)
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    split_seed: int = 0
    model: str = "mlp"
    model_options: dict[str, Any] = Field(default_factory=dict)
    recipe: dict[str, Any] = Field(
        default_factory=lambda: {"name": "sgd", "epochs": 30, "batch_size": 64, "lr": 0.05}
    )
    scheme: str = "hayes"
    shadows: int = Field(32, ge=2, description="shadow splits (originals)")
    seed: int = 0
    target_fraction: float = Field(0.1, gt=0.0, le=1.0, description="hayes: |T| / |population|")
    forget_sets: int = Field(1, ge=1, description="deepunlearn: forget sets per split")
    forget_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="deepunlearn")
    out_source: Literal["retrain", "unlearned"] | None = None
    statistic: str | None = None
    fit: LiraFitConfig | None = None
    score: str = "online"
    held_out: bool | None = None
    folds: int | None = Field(None, ge=2)
    unlearn_seed: int = 123
    workers: int = Field(1, ge=1)
    threads: int = Field(1, ge=1, description="torch threads per worker process")
    fprs: tuple[float, ...] = DEFAULT_FPRS

    @field_validator("scheme")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        SPLIT_SCHEMES.get(v)
        return v

    @field_validator("statistic")
    @classmethod
    def _known_statistic(cls, v: str | None) -> str | None:
        if v is not None:
            STATISTICS.get(v)
        return v

    @field_validator("score")
    @classmethod
    def _known_score(cls, v: str) -> str:
        LIRA_SCORES.get(v)
        return v

    def resolved(self, name: str) -> Any:
        """The effective value of a scheme-dependent option."""
        value = getattr(self, name)
        return SCHEME_DEFAULTS[self.scheme][name] if value is None else value


@dataclass
class AuditResult:
    """One method's audit: metrics, per-example results, pools used, timings."""

    method: str
    method_config: dict[str, Any]
    config: AuditConfig
    outcome: AttackOutcome
    target_ids: np.ndarray
    target_labels: np.ndarray
    per_example: dict[str, np.ndarray]
    pools: list[PoolReport]
    accuracy: dict[str, float]
    unlearn_seconds: float | None
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: method, attack metrics, accuracies, pools, timings."""
        m = self.outcome.metrics
        return {
            "method": self.method,
            "method_config": self.method_config,
            "scheme": self.config.scheme,
            "statistic": self.config.resolved("statistic"),
            "out_source": self.config.resolved("out_source"),
            "held_out": self.outcome.held_out,
            "score": self.outcome.score,
            "shadows": self.config.shadows,
            "targets": int(self.target_ids.size),
            "per_example_variance": self.outcome.fit.per_example_variance,
            "skipped_trials": self.outcome.n_skipped,
            "metrics": m.as_dict(),
            "accuracy": self.accuracy,
            "unlearn_seconds_mean": self.unlearn_seconds,
            "seconds": self.seconds,
            "pools": [p.as_dict() for p in self.pools],
            **self.extra,
        }


def _accuracy(logits: torch.Tensor, labels: torch.Tensor, positions: np.ndarray) -> float:
    if positions.size == 0:
        return float("nan")
    pred = logits[positions].argmax(1)
    return float((pred == labels[positions]).double().mean())


class Auditor:
    """Runs U-LiRA audits that share one dataset, plan and set of pools.

    >>> auditor = Auditor(AuditConfig(shadows=32), cache="~/.cache/unlearnkit")  # doctest: +SKIP
    >>> result = auditor.audit("ft", {"num_epochs": 2})                           # doctest: +SKIP
    """

    def __init__(
        self, config: AuditConfig, cache: str | Path, progress: Progress | None = None
    ) -> None:
        from unlearnkit.data import load_dataset, train_val_test_split
        from unlearnkit.training import make_recipe

        self.config = config
        self.cache = Path(cache).expanduser()
        self.progress = progress
        dataset = load_dataset(config.dataset, **config.dataset_params)
        if dataset.task != "multiclass":
            raise ConfigError("U-LiRA audits need a multi-class dataset (the statistic uses p_y)")
        splits = train_val_test_split(
            dataset, config.val_fraction, config.test_fraction, config.split_seed
        )
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
        self._base = {
            "dataset": {
                "name": config.dataset,
                "params": config.dataset_params,
                "split": [config.val_fraction, config.test_fraction, config.split_seed],
                "population": dataset_fingerprint(self.population),
            },
            "model": {"name": config.model, "options": config.model_options},
            "recipe": self.recipe,
        }
        scheme = {"scheme": config.scheme, "seed": config.seed}
        self.original_spec = PoolSpec("original", {**self._base, "split_scheme": scheme})
        # the shadow count is left out of every pool key: a larger audit reuses the members
        scheme_opts = {k: v for k, v in vars(options).items() if k != "shadows"}
        self.retrain_spec = PoolSpec(
            "retrain", {**self._base, "split_scheme": {**scheme, **scheme_opts}}
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
        folder = self.original_spec.folder(self.cache)
        return [
            TrainJob(
                folder,
                s.index,
                self.original_spec.key,
                self.config.model,
                self.config.model_options,
                self.recipe,
                s.train_ids,
                s.init_seed,
                s.train_seed,
            )
            for s in self.plan.splits
        ]

    @cached_property
    def retrain_jobs(self) -> list[TrainJob]:
        folder = self.retrain_spec.folder(self.cache)
        jobs = []
        for r in self.plan.runs:
            s = self.plan.splits[r.split]
            jobs.append(
                TrainJob(
                    folder,
                    r.index,
                    self.retrain_spec.key,
                    self.config.model,
                    self.config.model_options,
                    self.recipe,
                    self.plan.retain_ids(r),
                    s.init_seed,
                    s.train_seed,
                )
            )
        return jobs

    def _train_pool(self, name: str, spec: PoolSpec, jobs: list[TrainJob]) -> PoolReport:
        if name in self._reports:
            return self._reports[name]
        write_pool_manifest(spec, self.cache, {"members": len(jobs)})
        report = run_pool(
            name,
            jobs,
            self.context,
            workers=self.config.workers,
            threads=self.config.threads,
            progress=self.progress,
        )
        logits, accs, secs = [], [], []
        test = self.context.test
        from unlearnkit.training import evaluate_accuracy, predict_logits

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
        spec = PoolSpec(
            f"unlearned-{method}",
            {
                **self.retrain_spec.definition,
                "method": method,
                "config": config,
                "unlearn_seed": self.config.unlearn_seed,
                "val": dataset_fingerprint(self.context.val) if self.context.val else None,
                "test": dataset_fingerprint(self.context.test) if self.context.test else None,
            },
        )
        folder = spec.folder(self.cache)
        jobs = [
            UnlearnJob(
                folder,
                r.index,
                self.original_jobs[r.split],
                method,
                config,
                self.config.unlearn_seed,
                self.plan.retain_ids(r),
                r.forget_ids,
            )
            for r in self.plan.runs
        ]
        write_pool_manifest(spec, self.cache, {"members": len(jobs)})
        reports.append(
            run_pool(
                f"unlearn {method}",
                jobs,
                self.context,
                workers=self.config.workers,
                threads=self.config.threads,
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
        import unlearnkit.methods.catalog  # noqa: F401  (registers the methods)
        from unlearnkit.methods import METHODS

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
            from scipy.special import expit

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
    import json

    return dict(json.loads(path.read_text()))


def run_audit(
    config: AuditConfig,
    methods: dict[str, dict[str, Any] | None],
    cache: str | Path,
    progress: Progress | None = None,
) -> list[AuditResult]:
    """Audit several methods against shared pools; results in the order given."""
    auditor = Auditor(config, cache, progress)
    return [auditor.audit(m, c) for m, c in methods.items()]
