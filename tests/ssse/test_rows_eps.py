"""The closed-form rows of the linear multilabel model against torch.func, and the ε rules
against their definitions."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from unlearnkit.curvature.blocks import make_blocks
from unlearnkit.curvature.gradients import per_sample_gradients
from unlearnkit.curvature.rows import curvature_rows
from unlearnkit.data.base import ArrayDataset
from unlearnkit.models import build_model
from unlearnkit.ssse import ErasureConfig, ErasureState
from unlearnkit.ssse.eps import accuracy_gap_rule, gamma_rule, loss_matching_rule
from unlearnkit.ssse.rows import has_closed_form_rows, linear_head_rows
from unlearnkit.tasks import per_sample_loss
from unlearnkit.training import predict_logits


@pytest.fixture
def attrs() -> ArrayDataset:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 1, 2, 3, generator=g)
    w = torch.randn(4, 6, generator=g)
    y = ((x.flatten(1) @ w.T + 0.5 * torch.randn(40, 4, generator=g)) > 0).float()
    return ArrayDataset(
        "attrs", x, y, torch.arange(40, dtype=torch.int64) * 3, "multilabel", tuple("abcd")
    )


@pytest.fixture
def linear(attrs):
    m = build_model("linear", attrs.input_shape, attrs.num_outputs, seed=0).double().eval()
    with torch.no_grad():
        m.fc.weight.mul_(3)
    return m


def test_closed_form_empirical_rows_are_the_per_sample_gradients(attrs, linear):
    cfg = ErasureConfig(
        task="multilabel", blocks="per_output_head", group_size=1, mode="paper", damping=1e-4
    )
    assert has_closed_form_rows(linear, cfg)
    fast = linear_head_rows(
        linear, attrs.x.double(), attrs.y, attrs.ids, "empirical", "multilabel"
    ).G.double()
    ref = per_sample_gradients(
        linear,
        attrs.x.double(),
        attrs.y.double(),
        "multilabel",
        compute_dtype=torch.float64,
        out_dtype=torch.float64,
    ).G
    assert torch.allclose(fast, ref, atol=1e-6)


def test_closed_form_ggn_rows_give_the_same_block_grams(attrs, linear):
    fast = linear_head_rows(
        linear, attrs.x.double(), attrs.y, attrs.ids, "ggn", "multilabel"
    ).G.double()
    ref = curvature_rows(
        "ggn",
        linear,
        attrs.x.double(),
        attrs.y.double(),
        "multilabel",
        compute_dtype=torch.float64,
        out_dtype=torch.float64,
    ).G
    for b in make_blocks("per_output_head", linear):
        assert torch.allclose(b.take(fast).T @ b.take(fast), b.take(ref).T @ b.take(ref), atol=1e-6)


def test_exact_ggn_step_at_eps_1_is_a_newton_step_on_the_retained_objective(attrs, linear):
    """Known answer: at the optimum θ* of L_D = mean_D ℓ + (l2/2)‖θ‖², with the GGN (= the
    Hessian for a linear model), exact mode, λ = l2 and the regularised step,
    θ̂_1 = θ* − H_R⁻¹ ∇L_R(θ*): one Newton step on the retained objective."""
    from unlearnkit.reproduce.convex import newton_refit

    l2 = 0.05
    # θ* by Newton's method in fp64 (quadratic convergence to ‖∇L_D‖ ≤ 1e-12), so the step's
    # deviation from the Newton step, n/(n−k)·‖H_R⁻¹∇L_D(θ*)‖ ≤ (40/35)·1e-12/l2 ≈ 2.3e-11, is
    # negligible. The curvature rows are stored in float32 (the state's default; relative
    # rounding 6e-8), which bounds the agreement: 1e-7 on weights of order 1 (seen: 1.3e-8).
    start = copy.deepcopy(linear)
    with torch.no_grad():
        start.fc.weight.zero_()  # plain Newton on a logistic loss converges from 0
    opt, gnorm = newton_refit(start, attrs, l2, tol=1e-12)
    assert gnorm <= 1e-12
    cfg = ErasureConfig(
        task="multilabel",
        curvature="ggn",
        mode="exact",
        blocks="per_output_head",
        damping=l2,
        l2=l2,
        regularized_step=True,
        solver="dense",
    )
    state = ErasureState.prepare(opt, attrs, cfg)
    forget = attrs.subset(attrs.ids[:5])
    retain = attrs.subset(attrs.ids[5:])
    new, _ = state.erase(opt, forget, eps=1.0)
    theta = opt.fc.weight.detach().double().reshape(-1).clone().requires_grad_(True)

    def objective(t):
        logits = retain.x.double().flatten(1) @ t.reshape(4, 6).T
        return (
            per_sample_loss("multilabel", logits, retain.y.double()).mean() + l2 / 2 * (t**2).sum()
        )

    g = torch.autograd.grad(objective(theta), theta)[0]
    H = torch.autograd.functional.hessian(objective, theta.detach())
    want = theta.detach() - torch.linalg.solve(H, g)
    got = new.fc.weight.detach().double().reshape(-1)
    assert torch.allclose(got, want, rtol=0, atol=1e-7)


def test_gamma_and_gap_rules_find_the_eps_that_reproduces_the_reference(attrs, linear):
    state = ErasureState.prepare(
        linear,
        attrs,
        ErasureConfig(
            task="multilabel", blocks="per_output_head", damping=0.1, group_size=1, mode="paper"
        ),
    )
    forget = attrs.subset(attrs.ids[attrs.y[:, 0] > 0][:8])
    req = state.request(linear, forget)
    grid = [0.1, 1.0, 10.0, 100.0]
    reference = req.apply(10.0)  # a "retrained" model that SSSE reaches exactly at ε = 10
    choice = gamma_rule(req, forget, linear, reference, grid)
    assert choice.eps == 10.0 and choice.scores[2] == pytest.approx(1.0)
    gap = accuracy_gap_rule(req, {"forget": forget, "all": attrs}, reference, grid)
    assert gap.eps == 10.0 and gap.scores[2] == 0.0


def test_loss_matching_scores_are_ks_statistics(attrs, linear):
    state = ErasureState.prepare(
        linear,
        attrs,
        ErasureConfig(
            task="multilabel", blocks="per_output_head", damping=0.1, group_size=1, mode="paper"
        ),
    )
    forget, holdout = attrs.subset(attrs.ids[:10]), attrs.subset(attrs.ids[20:])
    req = state.request(linear, forget)
    grid = [0.5, 5.0, 50.0]
    choice = loss_matching_rule(req, forget, holdout, grid)
    for e, s in zip(grid, choice.scores, strict=True):
        m = req.apply(e)
        lf = per_sample_loss("multilabel", predict_logits(m, forget), forget.y).numpy()
        lh = per_sample_loss("multilabel", predict_logits(m, holdout), holdout.y).numpy()
        assert s == pytest.approx(ks_2samp(lf, lh).statistic)
    assert choice.eps == grid[int(np.argmin(choice.scores))]


def test_utility_guard_excludes_exactly_the_grid_points_that_damage_retained_accuracy(
    attrs, linear
):
    from unlearnkit.training import evaluate_accuracy

    state = ErasureState.prepare(
        linear,
        attrs,
        ErasureConfig(
            task="multilabel", blocks="per_output_head", damping=0.01, group_size=1, mode="paper"
        ),
    )
    forget, holdout, retain = (
        attrs.subset(attrs.ids[:10]),
        attrs.subset(attrs.ids[20:]),
        attrs.subset(attrs.ids[10:]),
    )
    req = state.request(linear, forget)
    grid = [0.1, 10.0, 1e3, 1e5]
    choice = loss_matching_rule(req, forget, holdout, grid, retain=retain, max_retain_drop=0.02)
    base = evaluate_accuracy(req.apply(0.0), retain)
    for e, s in zip(grid, choice.scores, strict=True):
        acc = evaluate_accuracy(req.apply(e), retain)
        assert np.isnan(s) == (acc < base - 0.02)
    assert any(np.isnan(choice.scores)), "the largest steps should break the model"
    assert not np.isnan(choice.scores[grid.index(choice.eps)])
