"""``audit``: U-LiRA (Hayes et al. 2024) of an unlearning method, on the user's model and data.

Two forms:

* ``audit(AuditConfig(...), methods={"ft": {...}}, cache=...)``: registered dataset and model,
  shadow pools cached on disk and trained in worker processes
  (:class:`unlearnkit.evaluation.audit.Auditor`); returns one ``AuditResult`` per method.
* ``audit(data, train_fn=..., model_factory=..., method=...)``: the user's own model, data and
  training function, in this process. The ``hayes`` split scheme
  (:func:`~unlearnkit.evaluation.audit_splits.hayes_plan`) draws targets T and random halves
  H_k of the training data; shadow k is ``train_fn(model_factory, H_k, seed + k)``; the
  method unlearns F_k = H_k ∩ T from it; the retrain is ``train_fn`` on H_k \\ F_k. The
  statistic is LiRA's φ = log(p_y / (1 − p_y)) on T; IN = φ of unlearned models on their
  F_k, OUT = φ of retrains; per-example Gaussians are fitted on the other splits and scored
  on the held-out split (:func:`~unlearnkit.evaluation.audit_attack.run_attack`).

Direction: balanced accuracy and AUC closer to 0.5 are better, TPR@α closer to α.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from unlearnkit.api.inputs import as_split, ids_spec, resolve_device
from unlearnkit.api.models import ModelFactory
from unlearnkit.api.training import fit, unlearn
from unlearnkit.data.plan import Split
from unlearnkit.errors import ConfigError
from unlearnkit.evaluation.audit import AuditConfig, AuditResult, run_audit
from unlearnkit.evaluation.audit_attack import AttackData, AttackOutcome, run_attack
from unlearnkit.evaluation.audit_report import write_audit_results
from unlearnkit.evaluation.audit_splits import SchemeOptions, hayes_plan
from unlearnkit.metrics.roc import DEFAULT_FPRS
from unlearnkit.metrics.signals import logit_scaled_confidence
from unlearnkit.training import TrainFn, predict_logits


@dataclass
class UserAudit:
    """U-LiRA of one method on the user's model: attack outcome, targets, accuracies."""

    method: str
    outcome: AttackOutcome
    target_ids: np.ndarray
    shadows: int
    accuracy: dict[str, float]
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "shadows": self.shadows,
            "targets": int(self.target_ids.size),
            "metrics": self.outcome.metrics.as_dict(),
            "accuracy": self.accuracy,
            "seconds": self.seconds,
        }


def _phi(model: nn.Module, split: Split, targets: np.ndarray) -> np.ndarray:
    sub = split.train.subset(targets)
    return logit_scaled_confidence(predict_logits(model, sub).double(), sub.y)


def _user_audit(
    data: Split | Any,
    *,
    train_fn: TrainFn,
    model_factory: ModelFactory,
    method: str,
    config: dict[str, Any] | None,
    shadows: int,
    target_fraction: float,
    seed: int,
    device: str,
    fprs: tuple[float, ...],
) -> UserAudit:
    t0 = time.perf_counter()
    split = as_split(data)
    dev = resolve_device(device)
    population = split.train.ids.numpy()
    plan = hayes_plan(population, SchemeOptions(shadows, seed, target_fraction))
    stat_u, stat_r, fa = [], [], []
    for run in plan.runs:
        s = plan.splits[run.split]
        half = Split.from_datasets(split.train.subset(s.train_ids), val=split.val, test=split.test)
        original, _, _ = fit(model_factory, half.train, train_fn, s.train_seed, dev)
        if run.forget_ids.size == 0:
            raise ConfigError("a shadow split holds no target; raise target_fraction or shadows")
        part = half.with_forget(ids_spec(run.forget_ids))
        if method == "retrain":
            res = unlearn(original, part, "retrain", seed=s.train_seed, train_fn=train_fn,
                          model_factory=model_factory, device=device)  # fmt: skip
        else:
            res = unlearn(original, part, method, config, seed=s.train_seed, device=device)
        retrain, _, _ = fit(model_factory, part.retain, train_fn, s.train_seed, dev)
        stat_u.append(_phi(res.model, split, plan.targets))
        stat_r.append(_phi(retrain, split, plan.targets))
        fa.append(res.accuracy.get("forget", float("nan")))
    masks = plan.masks()
    forgotten, unseen = masks["forgotten"], masks["unseen"]
    none = np.zeros_like(forgotten)
    groups = np.array([r.split for r in plan.runs])
    attack = AttackData(
        stat=np.vstack([np.stack(stat_u), np.stack(stat_r)]),
        fit_in=np.vstack([forgotten, none]),
        fit_out=np.vstack([none, forgotten | unseen]),
        trial_in=np.vstack([forgotten, none]),
        trial_out=np.vstack([none, unseen]),
        groups=np.concatenate([groups, groups]),
    )
    outcome = run_attack(attack, fprs=fprs)
    return UserAudit(
        method,
        outcome,
        plan.targets,
        shadows,
        {"forget": float(np.nanmean(fa))},
        time.perf_counter() - t0,
    )


def audit(
    data: Split | AuditConfig | Any,
    *,
    method: str = "ssse",
    config: dict[str, Any] | None = None,
    train_fn: TrainFn | None = None,
    model_factory: ModelFactory | None = None,
    shadows: int = 4,
    target_fraction: float = 0.2,
    seed: int = 0,
    device: str = "cpu",
    fprs: tuple[float, ...] = DEFAULT_FPRS,
    methods: dict[str, dict[str, Any] | None] | None = None,
    cache: str | Path = "~/.cache/unlearnkit/pools",
    progress: Callable[[str, int, int], None] | None = None,
) -> UserAudit | list[AuditResult]:
    """U-LiRA audit (see the module docstring for the two forms)."""
    if isinstance(data, AuditConfig):
        return run_audit(data, methods or {method: config}, cache, progress)
    if train_fn is None or model_factory is None:
        raise ConfigError(
            "auditing your own model needs train_fn=(model_factory, dataset, seed) -> model and "
            "model_factory= (shadow models are trained the way you train yours)"
        )
    if shadows < 2:
        raise ConfigError("an audit needs at least 2 shadow models")
    return _user_audit(
        data,
        train_fn=train_fn,
        model_factory=model_factory,
        method=method,
        config=config,
        shadows=shadows,
        target_fraction=target_fraction,
        seed=seed,
        device=device,
        fprs=fprs,
    )


def write_audit(
    results: list[AuditResult], out: str | Path, extra: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write the audit's table, results JSON, per-example files and ROC plot into ``out``."""
    return write_audit_results(results, Path(out), extra=extra)
