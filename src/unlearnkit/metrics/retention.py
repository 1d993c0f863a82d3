"""Accuracy retention RR / FR / TR and the retention deviation RetDev (Deep Unlearn).

Source: docs/evaluation.md, "Deep Unlearn's own evaluation" §3.2:
    RR = RA_U / RA_R,  FR = FA_U / FA_R,  TR = TA_U / TA_R,
    RetDev = |RR − 1| + |FR − 1| + |TR − 1|.
Direction: retention *closer to 1 is better*; RetDev *lower is better* (0 = same accuracies
as retrain). Methods are ranked by RetDev ascending, then by indiscernibility.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from unlearnkit.errors import DataError, NumericalError
from unlearnkit.metrics.accuracy import outputs_accuracy
from unlearnkit.metrics.inputs import MetricInputs
from unlearnkit.metrics.registry import Direction, metric

#: retention name -> the accuracy it is the ratio of.
RETENTION_OF: dict[str, str] = {"RR": "RA", "FR": "FA", "TR": "TA"}


def retention(
    value: float, reference: float, *, on_zero: Literal["raise", "nan"] = "raise"
) -> float:
    """Retention X_U / X_R of a metric relative to the retrained model (1 = same).

    A zero reference (e.g. retrain's forget accuracy under whole-class forgetting) makes the
    ratio undefined: ``on_zero="raise"`` gives a :class:`NumericalError`, ``"nan"`` returns NaN.
    """
    value, reference = float(value), float(reference)
    if reference == 0.0:
        if on_zero == "nan":
            return float("nan")
        raise NumericalError(
            "retention is undefined when the retrained model's value is 0 (e.g. its forget "
            "accuracy after class forgetting); report the gap |X_u − X_r| instead"
        )
    return value / reference


def retentions(
    unlearned: Mapping[str, float],
    retrained: Mapping[str, float],
    *,
    on_zero: Literal["raise", "nan"] = "raise",
) -> dict[str, float]:
    """{RR, FR, TR} from accuracy dicts with keys RA, FA, TA (fractions or percent alike)."""
    missing = [k for k in RETENTION_OF.values() if k not in unlearned or k not in retrained]
    if missing:
        raise DataError(f"retention needs accuracies {missing} for both models")
    return {
        r: retention(unlearned[a], retrained[a], on_zero=on_zero) for r, a in RETENTION_OF.items()
    }


def retention_deviation(
    unlearned: Mapping[str, float],
    retrained: Mapping[str, float],
    *,
    on_zero: Literal["raise", "nan"] = "raise",
) -> float:
    """RetDev = |RR − 1| + |FR − 1| + |TR − 1| (Deep Unlearn fork's main table). Lower is better."""
    ret = retentions(unlearned, retrained, on_zero=on_zero)
    return float(sum(abs(v - 1.0) for v in ret.values()))


def _accuracies(x: MetricInputs, role: str) -> dict[str, float]:
    out = x.outputs(role)
    parts = {"RA": "retain", "FA": "forget", "TA": "test"}
    return {k: outputs_accuracy(out, p) for k, p in parts.items()}


def _retention_metric(name: str, acc: str) -> None:
    part = {"RA": "retain", "FA": "forget", "TA": "test"}[acc]

    def fn(x: MetricInputs) -> float:
        return retention(
            outputs_accuracy(x.model, part),
            outputs_accuracy(x.outputs("retrain"), part),
            on_zero="nan",
        )

    fn.__doc__ = (
        f"{name} = {acc}_u / {acc}_r (Deep Unlearn §3.2; NaN if retrain's is 0). Closer to 1."
    )
    metric(
        name,
        label=name,
        direction=Direction.CLOSER_TO_ONE,
        needs=(f"model:{part}", f"retrain:{part}"),
        group="retention",
    )(fn)


for _name, _acc in RETENTION_OF.items():
    _retention_metric(_name, _acc)


_ACC_NEEDS = ("model:retain", "model:forget", "model:test")


@metric(
    "RetDev",
    label="RetDev",
    direction=Direction.LOWER,
    needs=(*_ACC_NEEDS, *(n.replace("model", "retrain") for n in _ACC_NEEDS)),
    group="retention",
)
def retdev_metric(x: MetricInputs) -> float:
    """RetDev = |RR − 1| + |FR − 1| + |TR − 1| (Deep Unlearn §3.2; NaN terms propagate).
    Lower is better."""
    return retention_deviation(_accuracies(x, "model"), _accuracies(x, "retrain"), on_zero="nan")
