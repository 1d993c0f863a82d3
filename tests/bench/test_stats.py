import math

import pytest

from unlearnkit.bench.stats import mean_ci


def test_t_interval_known_answer():
    # x = 1, 2, 3, 4: mean 2.5, s = sqrt(5/3), t(0.975, 3) = 3.182446305284263
    est = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert est.mean == pytest.approx(2.5)
    assert est.half == pytest.approx(3.182446305284263 * math.sqrt(5.0 / 3.0) / 2.0, rel=1e-12)
    assert est.n == 4 and est.dropped == 0
    assert est.fmt(2) == f"2.50 ± {est.half:.2f}"


def test_level_and_two_values():
    # n = 2, level 0.9: t(0.95, 1) = 6.313751514675043, s = |a - b| / sqrt(2)
    est = mean_ci([0.0, 1.0], level=0.9)
    assert est.half == pytest.approx(6.313751514675043 * (1 / math.sqrt(2)) / math.sqrt(2))


def test_non_finite_values_are_dropped_and_small_samples():
    est = mean_ci([1.0, float("nan"), 3.0, float("inf")])
    assert (est.mean, est.n, est.dropped) == (2.0, 2, 2)
    one = mean_ci([5.0])
    assert one.mean == 5.0 and math.isnan(one.half) and one.fmt() == "5.000"
    assert mean_ci([]).fmt() == "n/a"
    with pytest.raises(ValueError):
        mean_ci([1.0, 2.0], level=1.0)
