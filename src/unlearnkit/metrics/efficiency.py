"""Run-time efficiency: RTE = T_retrain / T_method, and a CUDA-synchronised timer.

Source: docs/evaluation.md and "Deep Unlearn's own evaluation" §3.5. RTE is a
speed-up: *higher is better*, and Retrain itself has RTE = 1. Over seeds, the Deep Unlearn
fork divides the *mean* retrain time by the *mean* method time.
Timing rules: synchronise CUDA before reading the clock, and leave evaluation, logging and
checkpoint I/O out of the timed region. Deep Unlearn's own times include them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from unlearnkit.errors import DataError, NumericalError
from unlearnkit.metrics._arrays import as_float
from unlearnkit.metrics.inputs import MetricInputs
from unlearnkit.metrics.registry import Direction, metric


def rte(t_retrain: float | Sequence[float], t_method: float | Sequence[float]) -> float:
    """RTE = mean(T_retrain) / mean(T_method) (seconds, any common unit). Higher is better."""
    tr = float(np.mean(as_float(t_retrain, "t_retrain")))
    tm = float(np.mean(as_float(t_method, "t_method")))
    if tr < 0 or tm < 0:
        raise DataError("times must be non-negative")
    if tm == 0.0:
        raise NumericalError("the method's time is 0; RTE is undefined (time a larger region)")
    return tr / tm


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for queued CUDA work (a no-op on CPU or without CUDA)."""
    dev = torch.device(device) if device is not None else None
    if torch.cuda.is_available() and (dev is None or dev.type == "cuda"):
        torch.cuda.synchronize(dev)


@dataclass
class Elapsed:
    """Holds the measured wall-clock seconds once the ``timed`` block has exited."""

    seconds: float = float("nan")


@contextmanager
def timed(device: torch.device | str | None = None) -> Iterator[Elapsed]:
    """Time a block with ``time.perf_counter``, synchronising CUDA at both ends.

    >>> with timed() as t:
    ...     _ = sum(range(10))
    >>> t.seconds >= 0
    True
    """
    out = Elapsed()
    synchronize(device)
    start = time.perf_counter()
    try:
        yield out
    finally:
        synchronize(device)
        out.seconds = time.perf_counter() - start


@metric("seconds", label="time (s)", direction=Direction.LOWER, needs=("seconds",), group="time")
def seconds_metric(x: MetricInputs) -> float:
    """Wall-clock seconds of the method, as given (timing rules above). Lower is better."""
    return float(x.seconds)  # type: ignore[arg-type]


@metric(
    "rte",
    label="RTE",
    direction=Direction.HIGHER,
    needs=("seconds", "retrain_seconds"),
    group="time",
)
def rte_metric(x: MetricInputs) -> float:
    """RTE = T_retrain / T_method (:func:`rte`). Higher is better."""
    return rte(x.retrain_seconds, x.seconds)  # type: ignore[arg-type]
