"""The class_erased ε rule against a closed-form answer: a linear model whose step lowers the
removed class's bias by ε. A held-out sample of that class stops being predicted as it at
ε_i = logit_0 − max_{j≠0} logit_j, so the smallest ε with held-out accuracy ≤ level is an
order statistic of the ε_i; the rule's bisection must land within ``tol`` decades above it."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import ConfigError
from unlearnkit.ssse.eps import EPS_RULES, class_erased_rule

GRID = [float(x) for x in np.logspace(-3, 2, 11)]
TOL = 0.01


def _data(n: int, seed: int) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    x[:, :3] += 2.0 * nn.functional.one_hot(y, 3).double()
    ids = torch.arange(seed * 1000, seed * 1000 + n, dtype=torch.int64)
    return ArrayDataset("lr", x, y, ids, "multiclass", ("a", "b", "c"))


class BiasStep:
    """A request whose step of size ε lowers class 0's bias by ε (fp64)."""

    def __init__(self, model: nn.Linear) -> None:
        self.model = model

    def apply(self, eps: float) -> nn.Module:
        m = copy.deepcopy(self.model)
        with torch.no_grad():
            m.bias[0] -= eps
        return m.eval()


@pytest.fixture(scope="module")
def setup() -> tuple[BiasStep, ArrayDataset, np.ndarray]:
    torch.manual_seed(0)
    model = nn.Linear(4, 3).double()
    with torch.no_grad():
        model.weight.copy_(torch.eye(3, 4, dtype=torch.float64) * 1.5)
        model.bias.zero_()
    held = _data(300, 1)
    held0 = held.subset(held.ids[held.y == 0])
    with torch.no_grad():
        z = model(held0.x)
    margin = (z[:, 0] - z[:, 1:].max(dim=1).values).numpy()  # > 0: predicted as class 0
    return BiasStep(model), held0, margin


def _boundary(margin: np.ndarray, level: float) -> float:
    """Smallest ε with (1/n)·#{i: margin_i > ε} ≤ level (accuracy falls at each margin)."""
    n = margin.size
    for e in np.sort(margin[margin > 0]):
        if (margin > e).sum() / n <= level:
            return float(e)
    return 0.0


@pytest.mark.parametrize("level", [0.0, 0.25, 0.5])
def test_the_smallest_step_that_reaches_the_level(setup, level):
    req, held0, margin = setup
    want = _boundary(margin, level)
    assert want > GRID[0]
    ch = class_erased_rule(req, held0, GRID, level=level, tol=TOL)
    assert ch.rule == "class_erased" and ch.extra["reached"]
    assert ch.eps >= want and math.log10(ch.eps / want) <= TOL + 1e-12
    lo, hi = ch.extra["bracket"]
    assert hi == ch.eps and lo < want <= hi
    assert ch.extra["coarse_eps"] in GRID and ch.extra["coarse_eps"] >= ch.eps
    assert EPS_RULES.get("class_erased") is class_erased_rule


def test_the_guard_refuses_and_the_rule_says_the_level_was_not_reached(setup):
    req, held0, margin = setup
    # the retained set is class 0 too: its accuracy falls as the level is approached,
    # so with a 1-point budget no eligible ε reaches level 0
    retain = held0
    ch = class_erased_rule(req, held0, GRID, retain=retain, max_retain_drop=0.01)
    assert ch.extra["reached"] is False
    finite = [(e, s) for e, s in zip(ch.grid, ch.scores, strict=True) if math.isfinite(s)]
    assert ch.eps == min(finite, key=lambda t: (t[1], t[0]))[0]
    refused = [e for e, s in zip(ch.grid, ch.scores, strict=True) if not math.isfinite(s)]
    assert refused and min(refused) > ch.eps


def test_bad_input_is_a_config_error(setup):
    req, held0, _ = setup
    with pytest.raises(ConfigError, match="held-out samples"):
        class_erased_rule(req, held0.subset(held0.ids[:0]), GRID)
    with pytest.raises(ConfigError, match="increasing grid"):
        class_erased_rule(req, held0, [1.0, 0.1])


def test_accuracy_matching_stops_where_the_erased_samples_fall_to_held_out_accuracy(setup):
    """Acc(S) − Acc(H) against ε is a step function of both sets' margins; the first ε where
    it is ≤ 0 is the brute-force answer over the sorted margins. S: confident class-0
    samples (as memorised training samples are); H: samples labelled 0 of which only some are
    predicted 0 at ε = 0."""
    from unlearnkit.ssse.eps import accuracy_matching_rule

    req, held0, _ = setup
    mixed = _data(90, 2)
    holdout = ArrayDataset("h", mixed.x, torch.zeros_like(mixed.y), mixed.ids, "multiclass",
                           mixed.classes)  # fmt: skip
    forget = ArrayDataset("s", held0.x[:40] * 1.6, held0.y[:40], held0.ids[:40] + 10**6,
                          "multiclass", held0.classes)  # fmt: skip

    def margins(data: ArrayDataset) -> np.ndarray:
        with torch.no_grad():
            z = req.model(data.x)
        return (z[:, 0] - z[:, 1:].max(dim=1).values).numpy()

    m_s, m_h = margins(forget), margins(holdout)

    def gap(e: float) -> float:
        return float((m_s > e).mean() - (m_h > e).mean())

    cuts = np.sort(np.concatenate([m_s, m_h]))
    want = next(float(c) for c in cuts if c > 0 and gap(c) <= 0)
    assert gap(0.0) > 0.3 and want > GRID[0]
    ch = accuracy_matching_rule(req, forget, holdout, GRID, tol=TOL)
    assert ch.rule == "accuracy_matching" and ch.extra["reached"]
    assert ch.eps >= want and math.log10(ch.eps / want) <= TOL + 1e-12
