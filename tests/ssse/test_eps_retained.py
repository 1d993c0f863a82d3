"""The retained-loss ε rule: on an fp64 logistic regression its ε is the brute-force minimiser
of the retained objective along Δ (within the golden-section tolerance), the held-out guard
refuses ε that raise the held-out loss, and the ledger records the rule's diagnostics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import ConfigError, UtilityBudgetError
from unlearnkit.ssse import ErasureConfig, ErasureState
from unlearnkit.ssse.eps import EPS_RULES, retained_loss_rule

L2 = 1e-2
TOL = 0.005  # decades
GRID = [float(x) for x in np.logspace(-3, 2, 11)]


def _data(n: int, seed: int) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    x[:, :3] += 1.5 * nn.functional.one_hot(y, 3).double()
    ids = torch.arange(seed * 1000, seed * 1000 + n, dtype=torch.int64)
    return ArrayDataset("lr", x, y, ids, "multiclass", ("a", "b", "c"))


@pytest.fixture(scope="module")
def problem() -> dict:
    """θ* of J(θ) = mean CE + (L2/2)‖θ‖² (fp64 L-BFGS), S = 12 samples of class 0."""
    train, holdout = _data(120, 0), _data(60, 1)
    torch.manual_seed(0)
    model = nn.Linear(4, 3).double()
    opt = torch.optim.LBFGS(model.parameters(), max_iter=500, tolerance_grad=1e-12,
                            line_search_fn="strong_wolfe")  # fmt: skip

    def closure() -> torch.Tensor:
        opt.zero_grad()
        reg = sum((p * p).sum() for p in model.parameters())
        loss = nn.functional.cross_entropy(model(train.x), train.y) + 0.5 * L2 * reg
        loss.backward()
        return loss

    opt.step(closure)
    model.eval()
    cfg = ErasureConfig(
        blocks="full", solver="dense", damping=L2, group_size=1, mode="paper", l2=L2
    )
    state = ErasureState.prepare(model, train, cfg)
    forget = train.subset(train.ids[train.y == 0][:12])
    retain = train.subset(train.ids[~torch.isin(train.ids, forget.ids)])
    return {
        "model": model,
        "state": state,
        "req": state.request(model, forget),
        "forget": forget,
        "retain": retain,
        "holdout": holdout,
    }


def _line(req, data: ArrayDataset, l2: float):
    """J(ε) = mean CE on ``data`` + (l2/2)‖θ + εΔ‖², from the two end points of the (linear
    in ε) parameter path θ + ε·scale·Δ."""
    m0, m1 = req.apply(0.0), req.apply(1.0)
    w0, b0 = m0.weight.detach(), m0.bias.detach()
    dw, db = m1.weight.detach() - w0, m1.bias.detach() - b0

    def value(eps: np.ndarray) -> np.ndarray:
        e = torch.as_tensor(np.atleast_1d(eps), dtype=torch.float64)[:, None, None]
        logits = data.x @ w0.T + b0 + e * (data.x @ dw.T + db)  # (E, n, C)
        ce = -(logits.log_softmax(-1).gather(-1, data.y.expand(len(e), -1)[..., None]))
        reg = ((w0 + e * dw) ** 2).sum((1, 2)) + ((b0 + e[:, 0] * db) ** 2).sum(-1)
        return (ce.mean((1, 2)) + 0.5 * l2 * reg).numpy()

    return value


def test_registered_with_its_direction():
    assert EPS_RULES.get("retained_loss") is retained_loss_rule
    assert "argmin" in retained_loss_rule.__doc__


def test_eps_is_the_brute_force_line_minimiser(problem):
    req, retain = problem["req"], problem["retain"]
    choice = retained_loss_rule(req, retain, None, GRID, tol=TOL, l2=L2)
    f = _line(req, retain, L2)
    u = np.linspace(-3, 2, 50001)
    j = f(10.0**u)
    i = int(np.argmin(j))
    assert 0 < i < u.size - 1, "the minimiser must be inside the range for this check"
    fine = minimize_scalar(
        lambda t: float(f(10.0**t)[0]),
        bounds=(u[i - 1], u[i + 1]),
        method="bounded",
        options={"xatol": 1e-10},
    )
    assert abs(math.log10(choice.eps) - fine.x) <= TOL
    # its scores are J_R itself (fp64), and it beats every coarse grid point
    assert choice.scores == pytest.approx(list(f(np.array(choice.grid))), rel=1e-10)
    assert f(choice.eps)[0] <= f(np.array(GRID)).min()
    assert choice.extra["retain_loss"]["chosen"] == pytest.approx(f(choice.eps)[0], rel=1e-10)
    assert choice.extra["retain_loss"]["eps0"] == pytest.approx(f(0.0)[0], rel=1e-10)


def test_guard_refuses_eps_that_raise_the_held_out_loss(problem):
    """Constructed case: the 'held-out' set is S itself, whose loss rises along Δ (SSSE
    unlearns it). With a 5 % budget the rule must stop where L_S = 1.05·L_S(0), short of the
    unguarded minimiser; with a 0 budget every ε > 0 is refused."""
    req, retain, forget = problem["req"], problem["retain"], problem["forget"]
    free = retained_loss_rule(req, retain, None, GRID, tol=TOL, l2=L2)
    guarded = retained_loss_rule(req, retain, forget, GRID, 0.05, tol=TOL, l2=L2)
    h = _line(req, forget, 0.0)
    limit = 1.05 * h(0.0)[0]
    assert h(free.eps)[0] > limit, "the construction needs the unguarded choice to be refused"
    assert h(guarded.eps)[0] <= limit
    assert guarded.eps < free.eps
    # refused points score NaN; every finite-scored point respects the limit
    for e, s in zip(guarded.grid, guarded.scores, strict=True):
        assert (h(e)[0] <= limit) == np.isfinite(s)
    # the constrained optimum is the boundary L_S(ε_b) = limit (J_R decreases up to there)
    lo_u = math.log10(guarded.eps) - 1
    ub = minimize_scalar(
        lambda t: abs(h(10.0**t)[0] - limit), bounds=(lo_u, math.log10(free.eps)),
        method="bounded", options={"xatol": 1e-10},
    )  # fmt: skip
    assert abs(math.log10(guarded.eps) - ub.x) <= TOL
    assert guarded.extra["refused"] >= 1
    assert guarded.extra["holdout_loss"]["limit"] == pytest.approx(limit, rel=1e-10)
    with pytest.raises(UtilityBudgetError, match="raises the held-out loss"):
        retained_loss_rule(req, retain, forget, GRID, 0.0, tol=TOL, l2=L2)


@pytest.mark.parametrize(
    "kwargs",
    [{"grid": [1.0, 0.1]}, {"grid": [0.0, 1.0]}, {"tol": 0.0}, {"max_holdout_rise": -1}],
)
def test_bad_settings_are_refused(problem, kwargs):
    with pytest.raises(ConfigError):
        retained_loss_rule(problem["req"], problem["retain"], **kwargs)


def test_ledger_records_the_rules_diagnostics(problem):
    req, retain, holdout = problem["req"], problem["retain"], problem["holdout"]
    _, st = req.commit(
        "auto", holdout=holdout, retain_sample=retain, grid=GRID, auto_rule="retained_loss"
    )
    entry = st.ledger[-1]
    other = holdout.subset(holdout.ids[holdout.y != 0])  # held-out samples not of S's class
    want = retained_loss_rule(req, retain, other, GRID, l2=L2)
    assert entry["eps_rule"] == "retained_loss" and entry["eps"] == want.eps
    search = entry["eps_search"]
    assert search["grid"] == want.grid and (search["grid_min"], search["grid_max"]) == (
        min(want.grid),
        max(want.grid),
    )
    diag = search["diagnostics"]
    assert diag["search_range"] == [GRID[0], GRID[-1]] and diag["l2"] == L2
    assert diag["n_retain"] == len(retain) and diag["n_holdout"] == len(other)
    assert diag["retain_loss"] == want.extra["retain_loss"]
    assert diag["holdout_loss"] == want.extra["holdout_loss"]
    assert "argmin" in diag["criterion"] and diag["direction"] == "minimise"
    with pytest.raises(ConfigError, match="auto_rule"):
        req.commit("auto", holdout=holdout, retain_sample=retain, auto_rule="nope")


def test_reproduction_judges_a_rule_choice_against_the_targets():
    """rule_outcome: gaps |acc − ref| at the rule's ε and the per-split tolerances (hand values)."""
    from unlearnkit.reproduce.search import TOLERANCE, rule_outcome
    from unlearnkit.ssse.eps import EpsChoice

    acc = {0.5: {"retain": 0.95, "forget": 0.04, "test": 0.90}}
    ref = {"retain": 0.97, "forget": 0.0, "test": 0.93}
    out = rule_outcome(
        acc.__getitem__, ref, TOLERANCE["class"], EpsChoice("r", 0.5, [0.5], [1.0], False)
    )
    assert out["gap"] == pytest.approx({"retain": 0.02, "forget": 0.04, "test": 0.03})
    assert out["targets_met"] == {"retain": True, "forget": True, "test": False}
    assert not out["all_targets_met"] and out["eps"] == 0.5
