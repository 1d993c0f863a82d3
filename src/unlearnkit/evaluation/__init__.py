"""Evaluation metrics: pure functions over predictions, signals and parameters.

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
"""

from unlearnkit.evaluation.accuracy import accuracy, multilabel_accuracy, split_accuracies
from unlearnkit.evaluation.distance import (
    flatten_parameters,
    normalized_parameter_distance,
    parameter_distance,
)
from unlearnkit.evaluation.efficiency import rte, timed
from unlearnkit.evaluation.epsilon_score import (
    challenge_score,
    forget_score,
    forget_score_from_confidences,
    per_example_epsilons,
)
from unlearnkit.evaluation.gaps import avg_gap, deep_unlearn_objectives, delta_acc, gap, sape
from unlearnkit.evaluation.mia import (
    entropy_lr_member_rate,
    indiscernibility,
    population_mia,
    svc_mia_efficacy,
    val_test_mia,
)
from unlearnkit.evaluation.retention import retention, retention_deviation, retentions
from unlearnkit.evaluation.roc import attack_metrics, plot_roc_loglog, roc, tpr_at_fpr
from unlearnkit.evaluation.signals import (
    challenge_confidence,
    cross_entropy,
    logit_scaled_confidence,
)
from unlearnkit.evaluation.similarity import (
    attribute_aucs,
    similarity_ratio,
    similarity_ratio_grid,
)
from unlearnkit.evaluation.ulira import (
    LiraFitConfig,
    evaluate_ulira,
    fit_gaussians,
    lira_scores,
)

__all__ = [
    "LiraFitConfig",
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
    "lira_scores",
    "logit_scaled_confidence",
    "multilabel_accuracy",
    "normalized_parameter_distance",
    "parameter_distance",
    "per_example_epsilons",
    "plot_roc_loglog",
    "population_mia",
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
