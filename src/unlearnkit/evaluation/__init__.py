"""Evaluation: the one per-model suite and the U-LiRA audit (these may run and train models).

* :mod:`.suite`: :func:`evaluate_models`, every registered metric (:mod:`unlearnkit.metrics`)
  that its inputs allow, as one :class:`EvaluationReport`.
* :mod:`.audit`: :class:`Auditor` / :class:`AuditConfig` / :func:`run_audit`, the U-LiRA audit
  with shadow and retrain pools that run as jobs (:mod:`unlearnkit.jobs`).

The pure metric functions live in :mod:`unlearnkit.metrics`.
"""

from unlearnkit.evaluation.audit import Auditor, run_audit
from unlearnkit.evaluation.audit_config import AuditConfig, AuditResult
from unlearnkit.evaluation.suite import EvaluationReport, evaluate_models, model_outputs

__all__ = [
    "AuditConfig",
    "AuditResult",
    "Auditor",
    "EvaluationReport",
    "evaluate_models",
    "model_outputs",
    "run_audit",
]
