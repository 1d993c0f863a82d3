"""Small runs of the paper reproductions, with assertions that can fail."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import ConfigError
from unlearnkit.models import build_model
from unlearnkit.reproduce.convex import newton_refit, run_convex
from unlearnkit.reproduce.deep import run_deep
from unlearnkit.reproduce.search import (
    CRITERIA,
    SPLITS,
    TOLERANCE,
    free_search,
    met_interval,
    oracle_search,
    refine_points,
)
from unlearnkit.ssse.eps import EpsChoice


def test_newton_refit_is_the_regularised_logistic_optimum():
    """Known answer: scikit-learn's fp64 fit of the same objective. J(w) = (1/n)Σ BCE + (l2/2)‖w‖²
    is l2-strongly convex, so ‖w − w*‖ ≤ ‖∇J(w)‖ / l2 for any w; the tolerance is that bound
    for both fits, measured here in fp64, plus fp64 rounding. The reference is fitted on fp64
    inputs (scikit-learn keeps the input dtype), so its precision does not depend on its version."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g, dtype=torch.float64)
    y = (
        x @ torch.randn(5, 3, generator=g, dtype=torch.float64)
        + torch.randn(200, 3, generator=g, dtype=torch.float64)
        > 0
    ).double()
    ds = ArrayDataset(
        "t", x, y, torch.arange(200, dtype=torch.int64), "multilabel", ("a", "b", "c")
    )
    model = build_model("linear", (5,), 3, seed=0)
    l2 = 0.01
    fit, gnorm = newton_refit(model, ds, l2, tol=1e-12)
    assert gnorm <= 1e-12

    def grad_norm(w: np.ndarray, k: int) -> float:
        wt = torch.as_tensor(w, dtype=torch.float64)
        p = torch.sigmoid(x @ wt)
        return float((x.T @ (p - y[:, k]) / len(x) + l2 * wt).norm())

    for k in range(3):
        ref = LogisticRegression(C=1 / (200 * l2), fit_intercept=False, tol=1e-12, max_iter=10000)
        ref.fit(x.numpy(), y[:, k].numpy())
        assert ref.coef_.dtype == np.float64
        ours = fit.fc.weight[k].detach().double().numpy()
        bound = (grad_norm(ours, k) + grad_norm(ref.coef_[0], k)) / l2 + 1e-12
        assert np.linalg.norm(ours - ref.coef_[0]) <= bound
        assert bound < 1e-6  # the reference really converged: the check is tight


def test_convex_reproduction_small(tmp_path):
    res = run_convex(
        tmp_path,
        max_attributes=2,
        fractions=(0.1, 0.5),
        pool=4,
        eps_grid=(0.3, 1.0, 3.0),
        variants=("paper", "exact"),
    )
    assert res["train_grad_norm"] <= 1e-9 and res["max_retrain_grad_norm"] <= 1e-9
    exact = res["summary"]["exact"]
    for f in ("0.1", "0.5"):
        # one exact Newton step on the retained objective: near the retrained optimum
        i = res["eps_grid"].index(1.0)
        assert exact[f]["distance_mean"][i] < 0.25
        assert exact[f]["best_gamma_mean"] >= 0.9
    assert (tmp_path / "fig1_gamma.png").exists() and (tmp_path / "fig1_distance.png").exists()
    assert "| exact | 10% |" in (tmp_path / "README.md").read_text()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["records"]) == 2 * 2 * 2


def test_refine_points_are_log_spaced_strictly_inside_the_bracket():
    grid = (0.01, 0.1, 1.0, 10.0)
    # logspace(-2, 0, 5)[1:-1] = 10^-1.5, 10^-1, 10^-0.5; 10^-1 is a grid point and is dropped
    assert refine_points(grid, 1, 3) == [0.0316228, 0.316228]
    assert refine_points(grid, 1, 0) == []
    for i, (lo, hi) in ((0, (0.01, 0.1)), (2, (0.1, 10.0)), (3, (1.0, 10.0))):
        pts = refine_points(grid, i, 12)
        assert len(pts) == 12 and all(lo < p < hi for p in pts)
        assert np.allclose(np.diff(np.log10(pts)), np.log10(hi / lo) / 13, atol=1e-5)


def _bowl(centre: float) -> tuple[dict[str, float], object]:
    """Retrained accuracies and an SSSE accuracy curve whose retain gap is
    0.01·|log10(ε/centre)| (forget and test match retrain exactly)."""
    ref = {"retain": 0.9, "forget": 0.0, "test": 0.8}

    def acc(e: float) -> dict[str, float]:
        return {**ref, "retain": 0.9 - 0.01 * abs(np.log10(e / centre))}

    return ref, acc


def _union_argmin(rec: dict, crit: str) -> float:
    """Recompute a criterion's best ε from the stored coarse and refined arrays."""
    eps = list(rec["eps_grid"]) + rec["refined"]["eps"]
    gap = {k: np.array(rec["gap"][k] + rec["refined"]["gap"][k]) for k in SPLITS}
    score = CRITERIA.get(crit)(gap, rec["tolerance"])
    order = np.argsort(eps, kind="stable")
    return float(np.array(eps)[order][int(np.argmin(score[order]))])


def test_oracle_search_refines_to_the_known_optimum_and_refine_zero_is_the_coarse_argmin():
    grid = (0.01, 0.1, 1.0, 10.0)
    ref, acc = _bowl(0.3)  # log-distance to 0.1: 0.477, to 1: 0.523 → coarse best 0.1
    fine = oracle_search(acc, ref, grid, TOLERANCE["half"], refine=3)
    assert fine["coarse_best_eps"] == 0.1 and fine["best_eps"] == 0.316228
    assert fine["refined"]["eps"] == [0.0316228, 0.316228]
    assert fine["refined"]["brackets"] == {"sum": [0.01, 1.0], "worst_split": [0.01, 1.0]}
    assert fine["gap_at_best"]["retain"] == pytest.approx(0.01 * abs(np.log10(0.316228 / 0.3)))
    rec = {**fine, "eps_grid": list(grid)}
    for crit in ("sum", "worst_split"):
        assert fine["by_criterion"][crit]["eps"] == _union_argmin(rec, crit)
    coarse = oracle_search(acc, ref, grid, TOLERANCE["half"], refine=0, criterion="sum")
    old = grid[int(np.argmin(np.sum([coarse["gap"][k] for k in SPLITS], axis=0)))]  # the old rule
    assert coarse["refined"]["eps"] == [] and coarse["best_eps"] == old == 0.1
    assert coarse["accuracy"] == fine["accuracy"] and coarse["gap"] == fine["gap"]
    assert fine["met_interval"] == [0.01, 10.0]  # retain gap ≤ 3 points for ε within 10^±3 of 0.3


def test_worst_split_and_sum_pick_the_hand_computed_eps():
    # gaps (points) A = 2.6 / 0 / 1.9 at ε = 1, B = 1.9 / 3.0 / 1.5 at ε = 2; class tolerances 2 / 5 / 2
    ref = {"retain": 0.9, "forget": 0.0, "test": 0.8}
    table = {1.0: (0.026, 0.0, 0.019), 2.0: (0.019, 0.03, 0.015)}

    def acc(e: float) -> dict[str, float]:
        return {
            k: ref[k] - (-1) ** (k == "forget") * g for k, g in zip(SPLITS, table[e], strict=True)
        }

    res = oracle_search(acc, ref, (1.0, 2.0), TOLERANCE["class"], refine=0)
    assert res["by_criterion"]["sum"]["eps"] == 1.0  # Σ 4.5 < 6.4
    assert res["by_criterion"]["sum"]["score"] == pytest.approx(0.045)
    assert res["best_eps"] == 2.0 and res["score_at_best"] == pytest.approx(
        0.95
    )  # max(1.3, 0, .95) > .95
    assert res["all_targets_met"] and res["accuracy_at_best"]["forget"] == pytest.approx(0.03)
    as_sum = oracle_search(acc, ref, (1.0, 2.0), TOLERANCE["class"], refine=0, criterion="sum")
    assert as_sum["targets_met"] == {"retain": False, "forget": True, "test": True}
    assert res["met_interval"] == [2.0, 2.0] and as_sum["met_interval"] is None
    flat = oracle_search(lambda e: ref, ref, (0.1, 1.0, 10.0), TOLERANCE["class"], refine=4)
    assert flat["refined"]["brackets"]["sum"] == [0.1, 1.0]  # clamped at the grid's lower end
    assert flat["best_eps"] == 0.1 and all(
        e > 0.1 for e in flat["refined"]["eps"]
    )  # ties: smallest ε


def test_met_interval_is_the_consecutive_run_around_the_best():
    tol = {"retain": 0.02, "forget": 0.05, "test": 0.02}
    retain = [0.01, 0.03, 0.01, 0.02, 0.01, 0.025]  # ok, miss, ok, ok (at the tolerance), ok, miss
    gap = {"retain": retain, "forget": [0.0] * 6, "test": [0.0] * 6}
    eps = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert met_interval(eps, gap, tol, 4.0) == [3.0, 5.0]
    assert met_interval(eps, gap, tol, 1.0) == [1.0, 1.0]
    assert met_interval(eps, gap, tol, 6.0) is None


def test_oracle_search_rejects_bad_grids_and_options():
    ref, acc = _bowl(1.0)
    for grid, kw in (
        ((1.0, 0.1), {}),
        ((0.0, 1.0), {}),
        ((0.1, 1.0), {"refine": -1}),
        ((0.1, 1.0), {"criterion": "nope"}),
    ):
        with pytest.raises(ConfigError):
            oracle_search(acc, ref, grid, TOLERANCE["half"], **kw)


def test_free_search_refines_around_its_own_coarse_choice_only():
    calls: list[list[float]] = []

    def rule(grid):
        calls.append(list(grid))
        scores = [
            abs(np.log10(e / 3.0)) for e in grid
        ]  # best near 3; coarse choice 1 (0.477 < 0.523)
        i = int(np.argmin(scores))
        return EpsChoice("fake", grid[i], list(grid), scores, False)

    grid = (0.01, 0.1, 1.0, 10.0)
    choice = free_search(rule, grid, refine=3)
    assert calls[0] == list(grid) and calls[1] == [0.01, 0.1, 0.316228, 1.0, 3.16228, 10.0]
    assert choice.eps == 3.16228 and choice.extra["coarse_eps"] == 1.0
    calls.clear()
    assert free_search(rule, grid, refine=0).eps == 1.0 and len(calls) == 1


@pytest.mark.parametrize("model", ["cnn"])
def test_deep_reproduction_smoke(tmp_path, model):
    grid = (1e-3, 1e-2, 1e-1)
    res = run_deep(
        tmp_path,
        datasets=("digits",),
        model=model,
        classes=(0,),
        epochs=3,
        group_size=5,
        eps_grid=grid,
        refine=2,
    )
    scen = res["datasets"]["digits"]["scenarios"]
    assert {(s["variant"], s["kind"]) for s in scen} == {
        (v, k) for v in ("paper", "exact") for k in ("class", "half")
    }
    saved = json.loads((tmp_path / "results.json").read_text())
    for s in saved["datasets"]["digits"]["scenarios"]:
        assert s["gap_at_best"]["forget"] == pytest.approx(
            abs(s["accuracy_at_best"]["forget"] - s["retrain"]["forget"])
        )
        assert s["free_rule"] == ("class_forgetting" if s["kind"] == "class" else "loss_matching")
        assert all(len(s["gap"][k]) == len(grid) for k in SPLITS)  # Figure 2's coarse arrays
        brackets = s["refined"]["brackets"]
        assert s["refined"]["eps"] and all(
            any(lo < e < hi for lo, hi in brackets.values()) for e in s["refined"]["eps"]
        )
        rec = {**s, "eps_grid": saved["eps_grid"]}
        for crit, b in s["by_criterion"].items():
            assert b["eps"] == _union_argmin(rec, crit)
            # refine = 0 would have given the coarse argmin, around which the bracket lies
            i = grid.index(b["coarse_eps"])
            assert brackets[crit] == [grid[max(i - 1, 0)], grid[min(i + 1, 2)]]
            coarse = CRITERIA.get(crit)({k: np.array(s["gap"][k]) for k in SPLITS}, s["tolerance"])
            assert b["coarse_eps"] == grid[int(np.argmin(coarse))]
        assert s["best_eps"] == s["by_criterion"]["worst_split"]["eps"]
        assert s["free_eps"] in s["free_grid"] and s["free_coarse_eps"] in grid
    assert (tmp_path / "fig2_digits.png").exists()
    assert "| paper | class | 0 |" in (tmp_path / "README.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--refine", "-1"], "refine must be ≥ 0"),
        (["--criterion", "median"], "unknown oracle ε criterion"),
    ],
)
def test_cli_ssse_deep_rejects_bad_refinement_options_before_training(tmp_path, args, message):
    from typer.testing import CliRunner

    from unlearnkit.cli.app import app

    res = CliRunner().invoke(
        app, ["reproduce", "ssse-deep", "--out", str(tmp_path / "o"), "--dataset", "digits", *args]
    )
    assert res.exit_code == 2 and message in res.output
    assert not (tmp_path / "o").exists()
