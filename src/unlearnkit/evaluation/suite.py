"""The one evaluation suite: every registered metric of one model, as one typed report.

:func:`evaluate_models` is what ``unlearnkit evaluate``, the bench and the demo print. For a
model θ, optional references θ_O (original) and θ_R (retrain) and the splits
``retain`` / ``forget`` / ``val`` / ``test`` (any subset), it computes every metric of
:data:`unlearnkit.metrics.METRICS` whose inputs are present (or those named in ``metrics``,
by metric or group name): accuracies per split, retention and RetDev against θ_R, population
MIAs and indiscernibility, SVC MIA-efficacy, parameter distances, γ_S and timing.

Input convention (one for every metric; :mod:`unlearnkit.metrics.inputs`): float64 logits
computed once per model and split in eval mode; non-finite logit rows count as wrong and their
per-sample task loss is capped at ``LOSS_CAP``; every MIA attacks those losses.

A metric that its inputs allow but that is undefined on these splits (fewer than 5 forget
samples for the population MIA, …) is reported as ``None`` with the reason in ``notes``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import DataError, UnlearnkitError
from unlearnkit.metrics import METRICS, MetricInputs, ModelOutputs, resolve
from unlearnkit.metrics.inputs import SPLITS
from unlearnkit.training import predict_logits


@dataclass
class EvaluationReport:
    """Metric values keyed by metric name (``None``: undefined here, see ``notes``)."""

    metrics: dict[str, float | None]
    sizes: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> float | None:
        return self.metrics[name]

    def numbers(self) -> dict[str, float]:
        """The metrics that were computed (no ``None``)."""
        return {k: v for k, v in self.metrics.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"metrics": {name: value}, "sizes": ..., "notes": [...]}``."""
        return {"metrics": dict(self.metrics), "sizes": dict(self.sizes), "notes": list(self.notes)}

    def rows(self) -> list[tuple[str, str, str]]:
        """``(label, value, direction)`` per metric, in report order, for printing."""
        out = []
        for name, value in self.metrics.items():
            spec = METRICS.get(name)
            shown = "n/a" if value is None else f"{value:.4f}"
            out.append((spec.label, shown, spec.direction.value))
        return out


def model_outputs(
    model: nn.Module | ModelOutputs,
    parts: Mapping[str, ArrayDataset],
    *,
    device: str | torch.device | None = None,
) -> ModelOutputs:
    """Float64 logits of ``model`` on every non-empty part (pass-through for outputs)."""
    if isinstance(model, ModelOutputs):
        return model
    unknown = set(parts) - set(SPLITS)
    if unknown:
        raise DataError(f"unknown split(s) {sorted(unknown)}; use {list(SPLITS)}")
    tasks = {d.task for d in parts.values()}
    if len(tasks) != 1:
        raise DataError(f"the splits must share one task type; got {sorted(tasks)}")
    logits = {
        k: predict_logits(model, d, device=device).double() for k, d in parts.items() if len(d)
    }
    labels = {k: d.y for k, d in parts.items() if len(d)}
    return ModelOutputs(logits, labels, tasks.pop(), parameters=model)


def evaluate_models(
    model: nn.Module | ModelOutputs,
    split_parts: Mapping[str, ArrayDataset],
    original: nn.Module | ModelOutputs | None = None,
    retrain: nn.Module | ModelOutputs | None = None,
    metrics: Iterable[str] | None = None,
    *,
    seconds: float | None = None,
    retrain_seconds: float | None = None,
    device: str | torch.device | None = None,
) -> EvaluationReport:
    """Every metric its inputs allow of ``model`` against ``original`` / ``retrain``.

    Args:
        model: the model under evaluation (an ``nn.Module``, or outputs already computed by
            :func:`model_outputs` to share logits between several evaluations).
        split_parts: ``{split: dataset}`` for ``retain``, ``forget``, ``val``, ``test`` (any
            subset; empty parts are skipped).
        original, retrain: the references, same types as ``model``.
        metrics: metric or group names (``None``: every registered metric). Metrics whose
            inputs are absent are left out of the report.
        seconds, retrain_seconds: wall-clock times of the method and of retraining.
        device: where the models run (default: each model's own device).

    No model is modified (evaluation runs in eval mode; train/eval mode is restored).
    """
    specs = resolve(metrics)
    x = MetricInputs(
        model_outputs(model, split_parts, device=device),
        None if original is None else model_outputs(original, split_parts, device=device),
        None if retrain is None else model_outputs(retrain, split_parts, device=device),
        seconds,
        retrain_seconds,
    )
    have = x.available()
    values: dict[str, float | None] = {}
    notes: list[str] = []
    for spec in specs:
        if not spec.needs <= have:
            continue
        try:
            values[spec.name] = float(spec.compute(x))
        except UnlearnkitError as e:
            values[spec.name] = None
            notes.append(f"{spec.name}: {e}")
    sizes = {k: len(d) for k, d in split_parts.items()}
    return EvaluationReport(values, sizes, notes)


__all__ = ["EvaluationReport", "evaluate_models", "model_outputs"]
