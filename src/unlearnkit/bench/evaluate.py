"""The evaluation stage: Deep Unlearn's per-model metrics (spec/evaluation.md, its §3.1–3.6).

Registry :data:`METRICS` (name -> function of an :class:`EvalContext`, returning numbers):

* ``accuracy``: RA, FA, VA, TA = top-1 accuracy on retain, forget, val, test
  (:func:`unlearnkit.evaluation.accuracy`), eval mode.
* ``mia``: ``val_mia`` and ``test_mia``, the loss-LR population MIA of the forget set against
  the validation / test set (:func:`unlearnkit.evaluation.population_mia`, Deep Unlearn §3.3).
* ``distance``: ``l2_to_retrain`` = ‖θ − θ_R‖₂ and ``dist_to_retrain`` =
  ‖θ − θ_R‖₂ / ‖θ_O − θ_R‖₂ (:mod:`unlearnkit.evaluation.distance`); needs O and R.

Derived numbers (RR, FR, TR, RetDev, Indisc, RTE) need the retrain row of the same seed and
are computed by the report (:mod:`unlearnkit.bench.results`).

Models whose outputs are not finite (a diverged method) still get metrics: their per-sample
losses are capped at ``LOSS_CAP`` before the attack, and ``nonfinite`` records the fraction
of samples with a non-finite logit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from unlearnkit.data.plan import Split
from unlearnkit.errors import NumericalError
from unlearnkit.evaluation import accuracy, normalized_parameter_distance, parameter_distance
from unlearnkit.evaluation.mia import population_mia
from unlearnkit.evaluation.signals import cross_entropy
from unlearnkit.registry import Registry
from unlearnkit.training import predict_logits

LOSS_CAP = 1e4
ACCURACY_NAMES = {"retain": "RA", "forget": "FA", "val": "VA", "test": "TA"}


@dataclass
class EvalContext:
    """A model, its split, and the O/R references; logits are computed once per part."""

    model: nn.Module
    split: Split
    original: nn.Module | None = None
    retrain: nn.Module | None = None
    device: str = "cpu"
    _logits: dict[str, torch.Tensor] = field(default_factory=dict)

    def logits(self, part: str) -> torch.Tensor:
        if part not in self._logits:
            data = self.split.part(part)
            self._logits[part] = predict_logits(self.model, data, device=self.device).double()
        return self._logits[part]

    def labels(self, part: str) -> torch.Tensor:
        return self.split.part(part).y

    def predictions(self, part: str) -> torch.Tensor:
        """Arg-max class; -1 (never correct) for samples with a non-finite logit."""
        z = self.logits(part)
        bad = ~torch.isfinite(z).all(dim=1)
        return torch.where(bad, -1, torch.nan_to_num(z).argmax(dim=1))

    def losses(self, part: str) -> np.ndarray:
        """Per-sample cross-entropy, non-finite values replaced by ``LOSS_CAP``."""
        z = self.logits(part)
        bad = ~torch.isfinite(z).all(dim=1)
        z = torch.where(torch.isfinite(z), z, torch.zeros_like(z))
        loss = cross_entropy(z, self.labels(part))
        loss[bad.numpy()] = LOSS_CAP
        return np.minimum(np.nan_to_num(loss, nan=LOSS_CAP, posinf=LOSS_CAP), LOSS_CAP)


Metric = Callable[[EvalContext], dict[str, float]]
METRICS: Registry[Metric] = Registry("benchmark metric")


@METRICS.register("accuracy")
def accuracy_metrics(ctx: EvalContext) -> dict[str, float]:
    """RA, FA, VA, TA and ``nonfinite`` (fraction of samples with a non-finite logit)."""
    out = {name: accuracy(ctx.predictions(p), ctx.labels(p)) for p, name in ACCURACY_NAMES.items()}
    total = sum(len(ctx.split.part(p)) for p in ACCURACY_NAMES)
    bad = sum(int((~torch.isfinite(ctx.logits(p)).all(dim=1)).sum()) for p in ACCURACY_NAMES)
    out["nonfinite"] = bad / total
    return out


@METRICS.register("mia")
def mia_metrics(ctx: EvalContext) -> dict[str, float]:
    """Val MIA and Test MIA: loss-LR population attack, forget vs val / test (ideal ≈ 0.5)."""
    forget = ctx.losses("forget")
    return {
        "val_mia": population_mia(forget, ctx.losses("val")),
        "test_mia": population_mia(forget, ctx.losses("test")),
    }


@METRICS.register("distance")
def distance_metrics(ctx: EvalContext) -> dict[str, float]:
    """‖θ − θ_R‖₂ and the normalised ‖θ − θ_R‖₂ / ‖θ_O − θ_R‖₂ (SSSE Fig. 1b)."""
    if ctx.retrain is None or ctx.original is None:
        return {}
    out = {"l2_to_retrain": parameter_distance(ctx.model, ctx.retrain)}
    try:
        out["dist_to_retrain"] = float(
            normalized_parameter_distance(ctx.model, ctx.retrain, ctx.original)
        )
    except NumericalError:
        out["dist_to_retrain"] = float("nan")
    return out


def search_metrics(ctx: EvalContext) -> dict[str, float]:
    """What a search trial needs, validation data only: RA, FA, VA and Val MIA."""
    out = {
        name: accuracy(ctx.predictions(p), ctx.labels(p))
        for p, name in ACCURACY_NAMES.items()
        if p != "test"
    }
    out["val_mia"] = population_mia(ctx.losses("forget"), ctx.losses("val"))
    return out


def evaluate_model(
    model: nn.Module,
    split: Split,
    metrics: list[str],
    *,
    original: nn.Module | None = None,
    retrain: nn.Module | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    """Every metric in ``metrics`` for ``model`` (names from :data:`METRICS`)."""
    ctx = EvalContext(model.to(device), split, original, retrain, device)
    out: dict[str, float] = {}
    for name in metrics:
        out.update(METRICS.get(name)(ctx))
    return out
