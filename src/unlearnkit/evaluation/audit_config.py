"""What defines a U-LiRA audit (:class:`AuditConfig`) and what one audit returns
(:class:`AuditResult`); the procedure is in :mod:`unlearnkit.evaluation.audit`.

Options left ``None`` take the split scheme's defaults (:data:`SCHEME_DEFAULTS`): ``hayes``
(Hayes et al. 2024: φ statistic, held-out targets, OUT = retrain pool) or ``deepunlearn``
(Deep Unlearn's released ``munl/lira``: 0/1 correctness, fit and score on the same models).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from unlearnkit.data.plan import DataPlan
from unlearnkit.evaluation.audit_attack import AttackOutcome
from unlearnkit.evaluation.audit_splits import SPLIT_SCHEMES
from unlearnkit.jobs.pools import PoolReport
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

    def data_plan(self) -> DataPlan:
        """The population's plan: the audit's shadows train on halves of its train split."""
        return DataPlan(
            self.dataset,
            self.dataset_params,
            self.val_fraction,
            self.test_fraction,
            self.split_seed,
        )

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
