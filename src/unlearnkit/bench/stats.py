"""Mean and confidence interval over seeds (Student's t).

For n finite values x_1..x_n with sample mean x̄ and sample standard deviation
s = sqrt(Σ (x_i − x̄)² / (n − 1)), the two-sided level-``level`` interval is

    x̄ ± t_{(1 + level)/2, n − 1} · s / √n

(the t-distribution with n − 1 degrees of freedom; seeds are the replicates). With one value
the half-width is undefined (NaN); non-finite values are left out and counted in ``dropped``.

Range: a metric with a known range [a, b] (:data:`RANGES`: accuracies, MIA accuracies and
indiscernibility in [0, 1]; retentions, RetDev, times and distances ≥ 0) gets the t-interval
*clipped* to it, [max(a, x̄ − h), min(b, x̄ + h)]. Clipping keeps the arithmetic mean the paper
reports (a logit or Wilson interval would move the centre, and a logit is undefined at the
0 and 1 that accuracies reach) and never lowers coverage: the true mean lies in [a, b], so
every excluded value is impossible.

Ranks (:func:`average_ranks`): within one setting, 1 = best; ties share the mean of the
ranks they span (fractional ranking). The paper's aggregate is the mean rank over settings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Estimate:
    """``mean ± half`` from ``n`` values (``dropped`` non-finite ones were left out)."""

    mean: float
    half: float
    n: int
    dropped: int = 0
    bounds: tuple[float, float] = (-math.inf, math.inf)

    @property
    def low(self) -> float:
        return max(self.mean - self.half, self.bounds[0])

    @property
    def high(self) -> float:
        return min(self.mean + self.half, self.bounds[1])

    @property
    def clipped(self) -> bool:
        """Whether the range cut the symmetric interval."""
        return self.mean - self.half < self.bounds[0] or self.mean + self.half > self.bounds[1]

    def fmt(self, digits: int = 3) -> str:
        """``"0.912 ± 0.004"``; ``"0.998 [0.990, 1.000]"`` when clipped to the range;
        ``"0.912"`` for one value; ``"n/a"`` for none."""
        if self.n == 0:
            return "n/a"
        if self.n == 1 or not math.isfinite(self.half):
            return f"{self.mean:.{digits}f}"
        if self.clipped:
            return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"
        return f"{self.mean:.{digits}f} ± {self.half:.{digits}f}"


_UNIT = (0.0, 1.0)
_POSITIVE = (0.0, math.inf)
#: Known ranges of the report's metrics; others are unbounded.
RANGES: dict[str, tuple[float, float]] = {
    **dict.fromkeys(
        ("RA", "FA", "VA", "TA", "UA", "val_mia", "test_mia", "Indisc", "val_indisc"), _UNIT
    ),
    "svc_mia_efficacy": _UNIT,
    **dict.fromkeys(("RR", "FR", "TR", "RetDev", "seconds"), _POSITIVE),
    **dict.fromkeys(("l2_to_retrain", "l2_to_original", "dist_to_retrain"), _POSITIVE),
}


def average_ranks(scores: Mapping[str, float | Sequence[float]]) -> dict[str, float]:
    """Fractional ranks (1 = smallest key) of ``scores``' values, compared as tuples
    (lexicographic: a tuple breaks ties of its first entry by the next); equal keys share
    the mean of their ranks; entries with a non-finite first value get NaN."""

    def key(v: float | Sequence[float]) -> tuple[float, ...]:
        t = tuple(float(x) for x in (v if isinstance(v, Sequence) else (v,)))
        return tuple(x if math.isfinite(x) else math.inf for x in t)

    finite = {k: key(v) for k, v in scores.items() if math.isfinite(key(v)[0])}
    out = {k: math.nan for k in scores}
    ordered = sorted(finite.items(), key=lambda kv: kv[1])
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1][1] == ordered[i][1]:
            j += 1
        for k, _ in ordered[i : j + 1]:
            out[k] = (i + 1 + j + 1) / 2.0
        i = j + 1
    return out


def mean_ci(
    values: Iterable[float],
    level: float = 0.95,
    bounds: tuple[float, float] = (-math.inf, math.inf),
) -> Estimate:
    """Mean and t-interval half-width of the finite ``values``, clipped to ``bounds``
    (module docstring)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    n, dropped = int(finite.size), int(arr.size - finite.size)
    if n == 0:
        return Estimate(math.nan, math.nan, 0, dropped, bounds)
    mean = float(finite.mean())
    if n == 1:
        return Estimate(mean, math.nan, 1, dropped, bounds)
    sd = float(finite.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * sd / math.sqrt(n)
    return Estimate(mean, half, n, dropped, bounds)
