"""``unlearnkit evaluate``'s nested report, built from the one suite (:mod:`.suite`).

:func:`evaluate_unlearned` evaluates θ_u (unlearned), θ_o (original) and θ_r (retrain) with
:func:`~unlearnkit.evaluation.suite.evaluate_models` (logits computed once per model) and
arranges the metric values as the CLI prints them:

* ``accuracy[model]``: RA, FA, VA, TA, UA of each of the three models;
* ``retention``: RR, FR, TR, RetDev of θ_u against θ_r;
* ``distance``: ‖θ_u − θ_r‖, ‖θ_o − θ_r‖, ‖θ_u − θ_o‖ and the normalised distance;
* ``mia[model]``: val/test population MIA and indiscernibility, SVC MIA-efficacy;
* ``rte``: T_retrain / T_method when both times are given.

Formulas, sources and directions are in the metric docstrings (:mod:`unlearnkit.metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import DataError
from unlearnkit.evaluation.suite import evaluate_models, model_outputs
from unlearnkit.metrics.inputs import SPLITS

ACCURACY_KEYS = ("RA", "FA", "VA", "TA", "UA")
MIA_KEYS = ("val_mia", "val_indisc", "test_mia", "test_indisc", "svc_mia_efficacy")
RETENTION_KEYS = ("RR", "FR", "TR", "RetDev")


def evaluate_unlearned(
    unlearned: nn.Module,
    original: nn.Module,
    retrain: nn.Module,
    parts: Mapping[str, ArrayDataset],
    *,
    method_seconds: float | None = None,
    retrain_seconds: float | None = None,
) -> dict[str, Any]:
    """The suite's metrics of θ_u vs θ_o and θ_r, nested as ``unlearnkit evaluate`` prints them.

    ``parts`` maps ``retain``, ``forget``, ``val``, ``test`` to datasets (``forget`` and
    ``retain`` are required). No model is modified.
    """
    missing = [k for k in ("retain", "forget") if k not in parts or not len(parts[k])]
    if missing:
        raise DataError(f"evaluation needs non-empty {missing} split(s)")
    unknown = set(parts) - set(SPLITS)
    if unknown:
        raise DataError(f"unknown split(s) {sorted(unknown)}; use {list(SPLITS)}")
    out = {
        "unlearned": model_outputs(unlearned, parts),
        "original": model_outputs(original, parts),
        "retrain": model_outputs(retrain, parts),
    }
    reports = {
        "unlearned": evaluate_models(
            out["unlearned"],
            parts,
            out["original"],
            out["retrain"],
            seconds=method_seconds,
            retrain_seconds=retrain_seconds,
        ),
        "original": evaluate_models(out["original"], parts, retrain=out["retrain"]),
        "retrain": evaluate_models(out["retrain"], parts),
    }
    u = reports["unlearned"]
    notes = [f"{name} {n}" for name, rep in reports.items() for n in rep.notes]
    return {
        "accuracy": {
            name: {k: rep.metrics.get(k) for k in ACCURACY_KEYS} for name, rep in reports.items()
        },
        "retention": {k: u.metrics.get(k) for k in RETENTION_KEYS},
        "distance": {
            "unlearned_to_retrain": u.metrics.get("l2_to_retrain"),
            "original_to_retrain": reports["original"].metrics.get("l2_to_retrain"),
            "unlearned_to_original": u.metrics.get("l2_to_original"),
            "normalized": u.metrics.get("dist_to_retrain"),
        },
        "mia": {name: {k: rep.metrics.get(k) for k in MIA_KEYS} for name, rep in reports.items()},
        "sizes": u.sizes,
        "rte": u.metrics.get("rte"),
        "seconds": {"method": method_seconds, "retrain": retrain_seconds},
        "notes": notes,
    }
