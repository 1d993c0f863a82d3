"""Metrics: pure functions over predictions, signals and parameters (nothing trains here).

Every metric the suite reports is registered once in :data:`METRICS` (:mod:`.registry`) by the
module that defines it, with its name, label, direction and inputs; importing this package
imports every module of it, so a new module registers itself.

Each metric states its formula, its source, and its direction. Usually the direction is
"closer to retrain is better".

* :mod:`.accuracy`: RA / FA / UA / VA / TA.
* :mod:`.gaps`: Δ to retrain, Avg. Gap, ΔAcc, SAPE, Deep Unlearn's HPO objectives.
* :mod:`.retention`: RR / FR / TR and RetDev.
* :mod:`.distance`: raw and normalised parameter distance.
* :mod:`.similarity`: SSSE's AUC similarity ratio γ_S.
* :mod:`.signals`: cross-entropy, logit-scaled confidence φ, entropy, and more.
* :mod:`.mia`: population loss-LR MIA, indiscernibility, SVC MIA-efficacy, entropy-LR MIA.
* :mod:`.epsilon_score`: the NeurIPS 2023 challenge's per-example ε, forget score and final
  score.
* :mod:`.ulira`: U-LiRA per-example Gaussian fits and likelihood-ratio scores.
* :mod:`.roc`: ROC, AUC, TPR at low FPR, balanced accuracy, log-log ROC plot.
* :mod:`.efficiency`: RTE and a CUDA-synchronised timer.
* :mod:`.klom`: KLoM, per-example KL divergence of margins against an oracle (retrain)
  ensemble, and its summaries (pool-level: not in the per-model suite).
* :mod:`.memorisation`: leave-out memorisation scores from a shadow pool, top-k selection.
* :mod:`.inputs`, :mod:`.registry`: what a registered metric reads; the registry.
"""

import importlib
import pkgutil

from unlearnkit.metrics.accuracy import accuracy, multilabel_accuracy, split_accuracies
from unlearnkit.metrics.distance import (
    flatten_parameters,
    normalized_parameter_distance,
    parameter_distance,
)
from unlearnkit.metrics.efficiency import rte, timed
from unlearnkit.metrics.epsilon_score import (
    challenge_score,
    forget_score,
    forget_score_from_confidences,
    per_example_epsilons,
)
from unlearnkit.metrics.gaps import avg_gap, deep_unlearn_objectives, delta_acc, gap, sape
from unlearnkit.metrics.inputs import LOSS_CAP, MetricInputs, ModelOutputs
from unlearnkit.metrics.mia import (
    entropy_lr_member_rate,
    indiscernibility,
    population_mia,
    svc_mia_efficacy,
    val_test_mia,
)
from unlearnkit.metrics.registry import METRICS, Direction, MetricSpec, metric, resolve
from unlearnkit.metrics.retention import retention, retention_deviation, retentions
from unlearnkit.metrics.roc import attack_metrics, plot_roc_loglog, roc, tpr_at_fpr
from unlearnkit.metrics.signals import (
    challenge_confidence,
    cross_entropy,
    logit_scaled_confidence,
)
from unlearnkit.metrics.similarity import (
    attribute_aucs,
    similarity_ratio,
    similarity_ratio_grid,
)
from unlearnkit.metrics.ulira import (
    LiraFitConfig,
    evaluate_ulira,
    fit_gaussians,
    lira_scores,
)

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = [
    "LOSS_CAP",
    "METRICS",
    "Direction",
    "LiraFitConfig",
    "MetricInputs",
    "MetricSpec",
    "ModelOutputs",
    "accuracy",
    "attack_metrics",
    "attribute_aucs",
    "avg_gap",
    "challenge_confidence",
    "challenge_score",
    "cross_entropy",
    "deep_unlearn_objectives",
    "delta_acc",
    "entropy_lr_member_rate",
    "evaluate_ulira",
    "fit_gaussians",
    "flatten_parameters",
    "forget_score",
    "forget_score_from_confidences",
    "gap",
    "indiscernibility",
    "metric",
    "lira_scores",
    "logit_scaled_confidence",
    "multilabel_accuracy",
    "normalized_parameter_distance",
    "parameter_distance",
    "per_example_epsilons",
    "plot_roc_loglog",
    "population_mia",
    "resolve",
    "retention",
    "retention_deviation",
    "retentions",
    "roc",
    "rte",
    "sape",
    "similarity_ratio",
    "similarity_ratio_grid",
    "split_accuracies",
    "svc_mia_efficacy",
    "timed",
    "tpr_at_fpr",
    "val_test_mia",
]
