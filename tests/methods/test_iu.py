"""IU: θ ← θ + α·H⁻¹v with a WoodFisher H, checked by dense fp64 algebra."""

from __future__ import annotations

import torch
from blob_mlp_fixtures import flat_params, original, per_sample_grads, tiny_data

from unlearnkit.methods.iu import InfluenceUnlearning, influence_direction, released_woodfisher


def _direction(model, data):
    """v = Σ_F g/n − Σ_R g·n_f/(n·n_r) from single-sample gradients."""
    g_f = per_sample_grads(model, data.forget.x, data.forget.y)
    g_r = per_sample_grads(model, data.retain.x, data.retain.y)
    n_f, n_r = len(g_f), len(g_r)
    n = n_f + n_r
    return g_f.sum(0) / n - g_r.sum(0) * n_f / (n * n_r), g_r


def test_direction_matches_single_sample_gradients():
    data, model = tiny_data(), original()
    model.eval()
    v, _ = _direction(model, data)
    torch.testing.assert_close(
        influence_direction(model, data, 7).double(), v, rtol=1e-4, atol=1e-7
    )


def test_corrected_step_is_the_dense_woodfisher_solve():
    """θ_new − θ = α·(λI + (1/m)·Σ g gᵀ)⁻¹ v over all retain samples (m = n_r)."""
    data, model = tiny_data(), original()
    alpha, lam = 0.4, 0.05
    out = (
        InfluenceUnlearning()
        .unlearn(model, data, {"alpha": alpha, "damping": lam, "batch_size": 10, "cg_tol": 1e-9})
        .model
    )
    v, g_r = _direction(model, data)
    h = lam * torch.eye(len(v), dtype=torch.float64) + g_r.T @ g_r / len(g_r)
    step = alpha * torch.linalg.solve(h, v)
    got = (flat_params(out) - flat_params(model)).double()
    assert (got - step).norm() <= 1e-4 * step.norm()
    # the Fisher matters: the plain gradient step α·v/λ is far off
    assert (got - alpha * v / lam).norm() > 0.1 * step.norm()


def test_faithful_step_is_the_released_recursion():
    data, model = tiny_data(), original()
    out = InfluenceUnlearning().unlearn(model, data, {"alpha": 0.3, "faithful": True}).model
    v, g_r = _direction(model, data)  # n_r = 45 < 1002: all retain samples, in dataset order
    k, o, big_n = v.clone(), g_r[0].clone(), 1000.0
    for g in g_r[1:]:
        tau = o @ g
        k = k - (k @ g) / (big_n + tau) * o
        o = o - tau / (big_n + tau) * o
    got = (flat_params(out) - flat_params(model)).double()
    torch.testing.assert_close(got, 0.3 * k, rtol=1e-4, atol=1e-8)
    # and the library function agrees on the same inputs
    torch.testing.assert_close(released_woodfisher(v, list(g_r), 1000.0), k)
