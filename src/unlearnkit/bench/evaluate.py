"""The bench's evaluation stage: the one suite (:mod:`unlearnkit.evaluation.suite`) on a split.

The metrics are those of :data:`unlearnkit.metrics.METRICS`, selected by metric or group name
(the bench's defaults are the groups ``accuracy`` and ``mia``; ``distance`` needs O and R).
Derived numbers that need the retrain row of the same seed over seeds (RTE, mean retention)
are computed by the report (:mod:`unlearnkit.bench.results`). A metric that is undefined on
the split is stored as NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from unlearnkit.data.plan import Split
from unlearnkit.evaluation.suite import evaluate_models

#: What a search trial reads: validation data only (no test split).
SEARCH_METRICS = ("RA", "FA", "VA", "val_mia")


def evaluate_model(
    model: nn.Module,
    split: Split,
    metrics: Sequence[str],
    *,
    original: nn.Module | None = None,
    retrain: nn.Module | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    """The suite's ``metrics`` for ``model`` on the split's retain/forget/val/test parts."""
    parts = {p: split.part(p) for p in ("retain", "forget", "val", "test")}
    rep = evaluate_models(model, parts, original, retrain, metrics, device=device)
    return {k: float("nan") if v is None else v for k, v in rep.metrics.items()}


def search_metrics(model: nn.Module, split: Split, device: str = "cpu") -> dict[str, float]:
    """:data:`SEARCH_METRICS` of ``model``, from the retain, forget and val parts only."""
    parts = {p: split.part(p) for p in ("retain", "forget", "val")}
    rep = evaluate_models(model, parts, metrics=SEARCH_METRICS, device=device)
    return {k: float("nan") if v is None else v for k, v in rep.metrics.items()}
