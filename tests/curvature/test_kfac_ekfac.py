"""EK-FAC scales against brute-force projections; damped solves against dense fp64 solves."""

from __future__ import annotations

import pytest
import torch
from kfac_reference import (
    log_hessian,
    per_sample_layer_gradients,
    per_sample_logit_jacobians,
    sampled_labels,
)
from torch import nn

from unlearnkit.curvature.kfac import (
    KroneckerCurvature,
    accumulate,
    eigenbases,
    ekfac_matvec,
    ekfac_solve,
    flatten_like,
    kfac_matvec,
    kfac_solve,
    scale_sums,
    ssse_direction,
)
from unlearnkit.errors import ConfigError, NumericalError

TOL = dict(rtol=1e-10, atol=1e-12)


def _model() -> nn.Sequential:
    torch.manual_seed(2)
    return (
        nn.Sequential(
            nn.Conv2d(2, 3, 3, stride=2, padding=1),
            nn.Tanh(),
            nn.Flatten(),
            nn.LayerNorm(27),
            nn.Linear(27, 4, bias=False),
            nn.Tanh(),
            nn.Linear(4, 3),
        )
        .double()
        .eval()
    )


def _data(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 5, 5, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


@pytest.mark.parametrize("mode", ["empirical", "true", "ggn"])
def test_corrected_scales_equal_projected_per_sample_gradients(mode: str) -> None:
    """``s = (1/n) Σ_i Σ_c (U_Gᵀ Ĝ_ic U_A)²`` with Ĝ_ic the per-sample gradient of ``W̃``
    (summed over a convolution's positions), computed here by autograd per sample."""
    model, (x, y) = _model(), _data()
    samples = 2 if mode == "true" else 1
    sums = accumulate(model, x, y, "multiclass", mode=mode, seed=4, samples=samples)
    bases = eigenbases(sums.factors())
    got = scale_sums(
        model, x, y, "multiclass", bases, mode=mode, seed=4, samples=samples, batch_size=4
    )
    ref = {k: torch.zeros(e.spec.d_out, e.spec.d_in, dtype=torch.float64) for k, e in bases.items()}
    labels = sampled_labels(x, model, torch.arange(6), 4, samples) if mode == "true" else None
    for i in range(x.shape[0]):
        if mode == "ggn":  # Σ_cd Λ_cd R_c ⊙ R_d with R_c = U_Gᵀ (∂z_c/∂W̃) U_A
            z, jac = per_sample_logit_jacobians(model, x[i])
            lam = log_hessian(z)
            for k, e in bases.items():
                R = e.UG.T @ jac[k] @ e.UA
                ref[k] += torch.einsum("cjk,cd,djk->jk", R, lam, R)
            continue
        ys = [y[i]] if mode == "empirical" else [labels[i, s] for s in range(samples)]
        for yi in ys:
            for k, W in per_sample_layer_gradients(model, x[i], yi).items():
                ref[k] += (bases[k].UG.T @ W @ bases[k].UA).square() / len(ys)
    scales = got.scales()
    for k in bases:
        torch.testing.assert_close(scales[k], ref[k] / x.shape[0], **TOL)


def _random_layer(d_out: int, d_in: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d_in, 2 * d_in, generator=g, dtype=torch.float64)
    b = torch.randn(d_out, d_out + 1, generator=g, dtype=torch.float64)
    return a @ a.T / d_in, b @ b.T / d_out


def test_layer_solves_equal_dense_solves() -> None:
    model, (x, y) = _model(), _data()
    sums = accumulate(model, x, y, "multiclass", mode="ggn")
    f = sums.factors()
    bases = eigenbases(f)
    scales = scale_sums(model, x, y, "multiclass", bases, mode="ggn").scales()
    g = torch.Generator().manual_seed(7)
    lam = 1e-3
    for k, lf in f.layers.items():
        e = bases[k]
        V = torch.randn(lf.spec.d_out, lf.spec.d_in, generator=g, dtype=torch.float64)
        K = torch.kron(lf.G, lf.A)  # row-major vec: (A ⊗ G) vec_col V  ==  (G ⊗ A) vec_row V
        eye = torch.eye(K.shape[0], dtype=torch.float64)
        torch.testing.assert_close(kfac_matvec(V, lf.A, lf.G).reshape(-1), K @ V.reshape(-1), **TOL)
        want = torch.linalg.solve(K + lam * eye, V.reshape(-1))
        torch.testing.assert_close(kfac_solve(V, e, lam).reshape(-1), want, **TOL)
        U = torch.kron(e.UG, e.UA)
        E = U @ torch.diag(scales[k].reshape(-1)) @ U.T
        torch.testing.assert_close(
            ekfac_matvec(V, e, scales[k]).reshape(-1), E @ V.reshape(-1), **TOL
        )
        want = torch.linalg.solve(E + lam * eye, V.reshape(-1))
        torch.testing.assert_close(ekfac_solve(V, e, scales[k], lam).reshape(-1), want, **TOL)


def test_kfac_solve_on_synthetic_factors() -> None:
    """Well-conditioned random factors, λ = 0 and λ > 0."""
    from unlearnkit.curvature.kfac.capture import LayerSpec
    from unlearnkit.curvature.kfac.ekfac import LayerEigen

    A, G = _random_layer(3, 5, seed=1)
    alpha, UA = torch.linalg.eigh(A)
    gamma, UG = torch.linalg.eigh(G)
    e = LayerEigen(LayerSpec("l", "linear", "l.weight", None, 5, 3), UA, alpha, UG, gamma)
    V = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for lam in (0.0, 0.5):
        want = torch.linalg.solve(
            torch.kron(G, A) + lam * torch.eye(15, dtype=torch.float64), V.reshape(-1)
        )
        torch.testing.assert_close(kfac_solve(V, e, lam).reshape(-1), want, **TOL)


@pytest.mark.parametrize("variant", ["kfac", "ekfac"])
def test_ssse_direction_equals_dense_solve(variant: str) -> None:
    model, (x, y) = _model(), _data(8)
    sums = accumulate(model, x, y, "multiclass")
    f = sums.factors()
    if variant == "kfac":
        curv = KroneckerCurvature.build(f)
    else:
        bases = eigenbases(f)
        curv = KroneckerCurvature.build(
            f, scale_sums(model, x, y, "multiclass", bases).scales(), bases
        )
    assert curv.variant == variant
    assert [(b["block"], b["structure"]) for b in curv.blocks()] == [
        ("0", variant),
        ("4", variant),
        ("6", variant),
        ("3.weight", "diagonal"),
        ("3.bias", "diagonal"),
    ]
    lam = 1e-2
    v, delta = ssse_direction(model, curv, x[:3], y[:3], "multiclass", lam)
    # v = Σ_{i∈S} ∇ℓ_i by per-sample autograd
    for name, p in model.named_parameters():
        ref = sum(
            torch.autograd.grad(nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), p)[
                0
            ]
            for i in range(3)
        )
        torch.testing.assert_close(v[name], ref, **TOL)
    F = curv.dense()
    want = torch.linalg.solve(
        F + lam * torch.eye(F.shape[0], dtype=torch.float64), flatten_like(curv, v)
    )
    torch.testing.assert_close(flatten_like(curv, delta), want, **TOL)
    Fd = curv.matvec(delta)  # (F + λI) Δ = v, model-shaped
    for k in v:
        torch.testing.assert_close(Fd[k] + lam * delta[k], v[k], **TOL)


def test_solve_errors() -> None:
    model, (x, y) = _model(), _data(2)
    curv = KroneckerCurvature.build(accumulate(model, x, y, "multiclass").factors())
    grads = {k: torch.ones_like(p) for k, p in model.named_parameters()}
    with pytest.raises(NumericalError, match="damping > 0"):  # 2 samples: rank-deficient A
        curv.solve(grads, 0.0)
    with pytest.raises(ConfigError, match="missing"):
        curv.solve({k: v for k, v in grads.items() if k != "0.weight"}, 1e-3)
    with pytest.raises(ConfigError, match="damping"):
        curv.solve(grads, -1.0)
