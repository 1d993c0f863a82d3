"""The metric registry: every suite metric registered once, with its facts.

A metric is a function of :class:`~unlearnkit.metrics.inputs.MetricInputs` returning a float,
registered where it is defined with :func:`metric`::

    @metric("FA", label="forget acc", direction=Direction.CLOSER_TO_RETRAIN,
            needs=("model:forget",), group="accuracy")
    def forget_accuracy(x: MetricInputs) -> float:
        "Formula, source, direction."

The suite (:func:`unlearnkit.evaluation.suite.evaluate_models`) computes every registered
metric whose ``needs`` the inputs satisfy. Adding a metric touches two files: the module that
defines it (any module of :mod:`unlearnkit.metrics`, all are imported by the package) and its
test. Order of registration is the order of the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

from unlearnkit.errors import ConfigError
from unlearnkit.metrics.inputs import MetricInputs
from unlearnkit.registry import Registry


class Direction(str, Enum):
    """Which values are better."""

    HIGHER = "higher is better"
    LOWER = "lower is better"
    CLOSER_TO_RETRAIN = "closer to retrain is better"
    CLOSER_TO_HALF = "closer to 0.5 is better"
    CLOSER_TO_ONE = "closer to 1 is better"
    NONE = "descriptive"


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: its key, printed label, direction, inputs, group and formula."""

    name: str
    label: str
    direction: Direction
    needs: frozenset[str]
    group: str
    compute: Callable[[MetricInputs], float]
    order: int = 0

    @property
    def doc(self) -> str:
        """The formula / source / direction docstring of the function."""
        return (self.compute.__doc__ or "").strip()


#: Every suite metric, in report order.
METRICS: Registry[MetricSpec] = Registry("metric")


def metric(
    name: str, *, label: str, direction: Direction, needs: Iterable[str], group: str
) -> Callable[[Callable[[MetricInputs], float]], Callable[[MetricInputs], float]]:
    """Register ``fn`` as the metric ``name`` (see the module docstring)."""

    def deco(fn: Callable[[MetricInputs], float]) -> Callable[[MetricInputs], float]:
        if not fn.__doc__:
            raise ConfigError(f"metric {name!r} needs a docstring with its formula and source")
        spec = MetricSpec(name, label, direction, frozenset(needs), group, fn, len(METRICS))
        METRICS.register(name)(spec)
        return fn

    return deco


#: Report order of the groups; within a group, registration order. ``derived`` holds values
#: computed from other metrics (UA = 1 − FA, indiscernibility), ``movement`` ‖θ − θ_O‖.
GROUP_ORDER = (
    "accuracy",
    "retention",
    "mia",
    "mia_svc",
    "derived",
    "distance",
    "movement",
    "similarity",
    "time",
)


def ordered() -> list[MetricSpec]:
    """Every registered metric in report order (:data:`GROUP_ORDER`, then registration)."""

    def key(s: MetricSpec) -> tuple[int, int]:
        g = GROUP_ORDER.index(s.group) if s.group in GROUP_ORDER else len(GROUP_ORDER)
        return (g, s.order)

    return sorted((spec for _, spec in METRICS.items()), key=key)


def groups() -> dict[str, list[str]]:
    """``{group: [metric names]}`` in registration order."""
    out: dict[str, list[str]] = {}
    for spec in ordered():
        name = spec.name
        out.setdefault(spec.group, []).append(name)
    return out


def resolve(selection: Iterable[str] | None) -> list[MetricSpec]:
    """The specs named by metric or group names (``None``: all), in registration order."""
    if selection is None:
        return ordered()
    grp = groups()
    wanted: set[str] = set()
    for item in selection:
        if item in grp:
            wanted.update(grp[item])
        elif item in METRICS:
            wanted.add(item)
        else:
            known = ", ".join([*grp, *METRICS.names()])
            raise ConfigError(f"unknown metric {item!r}; known metrics and groups: {known}")
    return [spec for spec in ordered() if spec.name in wanted]
