"""Mean and confidence interval over seeds (Student's t).

For n finite values x_1..x_n with sample mean x̄ and sample standard deviation
s = sqrt(Σ (x_i − x̄)² / (n − 1)), the two-sided level-``level`` interval is

    x̄ ± t_{(1 + level)/2, n − 1} · s / √n

(the t-distribution with n − 1 degrees of freedom; seeds are the replicates). With one value
the half-width is undefined (NaN); non-finite values are left out and counted in ``dropped``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
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

    @property
    def low(self) -> float:
        return self.mean - self.half

    @property
    def high(self) -> float:
        return self.mean + self.half

    def fmt(self, digits: int = 3) -> str:
        """``"0.912 ± 0.004"``; ``"0.912"`` for one value; ``"n/a"`` for none."""
        if self.n == 0:
            return "n/a"
        if self.n == 1 or not math.isfinite(self.half):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half:.{digits}f}"


def mean_ci(values: Iterable[float], level: float = 0.95) -> Estimate:
    """Mean and t-interval half-width of the finite ``values`` (module docstring)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    n, dropped = int(finite.size), int(arr.size - finite.size)
    if n == 0:
        return Estimate(math.nan, math.nan, 0, dropped)
    mean = float(finite.mean())
    if n == 1:
        return Estimate(mean, math.nan, 1, dropped)
    sd = float(finite.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * sd / math.sqrt(n)
    return Estimate(mean, half, n, dropped)
