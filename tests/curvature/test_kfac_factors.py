"""K-FAC factor sums against brute-force loops over single samples (fp64, exact)."""

from __future__ import annotations

import pytest
import torch
from kfac_reference import brute_factors
from torch import nn

from unlearnkit.curvature.kfac import accumulate, plan_layers
from unlearnkit.errors import ConfigError, DataError

TOL = dict(rtol=1e-12, atol=1e-13)


def _linear(bias: bool) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5, bias=bias), nn.Tanh(), nn.Linear(5, 3, bias=bias))


def _conv() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=1),  # stride, padding, bias
        nn.ReLU(inplace=True),  # in place on the conv's output: the capture must not see it
        nn.Conv2d(3, 2, 2, stride=1, padding=1, dilation=2, bias=False),
        nn.Flatten(),
        nn.LayerNorm(18),  # no factorisation: diagonal block
        nn.Linear(18, 3),
    )


MODELS = {
    "linear_bias": (lambda: _linear(True), (7, 4)),
    "linear_nobias": (lambda: _linear(False), (7, 4)),
    "conv": (_conv, (7, 2, 6, 6)),
}


def _data(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (shape[0],), generator=g
    )


@pytest.mark.parametrize("mode", ["empirical", "true", "ggn"])
@pytest.mark.parametrize("name", list(MODELS))
def test_sums_equal_brute_force(name: str, mode: str) -> None:
    make, shape = MODELS[name]
    model = make().double().eval()
    x, y = _data(shape)
    samples = 3 if mode == "true" else 1
    got = accumulate(model, x, y, "multiclass", mode=mode, seed=5, samples=samples, batch_size=3)
    ref = brute_factors(model, x, y, mode, seed=5, samples=samples)
    assert got.n == ref["count"] == x.shape[0]
    assert set(got.layers) == set(ref["layers"])
    for k, (A, G, P) in ref["layers"].items():
        torch.testing.assert_close(got.layers[k].a_sum, A, **TOL)
        torch.testing.assert_close(got.layers[k].g_sum, G, **TOL)
        assert float(got.layers[k].positions) == P
    assert set(got.diag) == set(ref["diag"])
    for k, d in ref["diag"].items():
        torch.testing.assert_close(got.diag[k], d, **TOL)
    f = got.factors()  # A averaged over sample-positions, G and D over samples
    for k, (A, G, P) in ref["layers"].items():
        torch.testing.assert_close(f.layers[k].A, A / P, **TOL)
        torch.testing.assert_close(f.layers[k].G, G / x.shape[0], **TOL)


def test_conv_positions_and_sizes() -> None:
    layers, diag = plan_layers(_conv())
    # conv1: 2·3·3 + bias = 19 inputs, 3x3 outputs from 6x6 with stride 2, padding 1
    assert [(s.name, s.kind, s.d_in, s.d_out) for s in layers] == [
        ("0", "conv2d", 19, 3),
        ("2", "conv2d", 12, 2),
        ("5", "linear", 19, 3),
    ]
    assert diag == ("4.weight", "4.bias")
    x, y = _data((2, 2, 6, 6))
    s = accumulate(_conv().double().eval(), x, y, "multiclass")
    # conv2 on its 3x3 input, padding 1 (5x5), dilation 2 · (kernel 2 − 1) + 1 = 3: 3x3 outputs
    assert float(s.layers["0"].positions) == 2 * 9
    assert float(s.layers["2"].positions) == 2 * 9
    assert float(s.layers["5"].positions) == 2


@pytest.mark.parametrize("bias", [True, False])
def test_one_sample_kfac_is_exact_fisher(bias: bool) -> None:
    """n = 1, one position: ``A ⊗ G = (ã ãᵀ) ⊗ (g gᵀ) = vec(g ãᵀ) vec(g ãᵀ)ᵀ`` exactly."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 3, bias=bias)).double().eval()
    x, y = _data((1, 4), seed=3)
    f = accumulate(model, x, y, "multiclass").factors().layers["0"]
    loss = nn.functional.cross_entropy(model(x), y)
    params = [model[0].weight] + ([model[0].bias] if bias else [])
    grads = torch.autograd.grad(loss, params)
    W = grads[0] if not bias else torch.cat([grads[0], grads[1][:, None]], dim=1)
    r = W.reshape(-1)  # row-major, the layout of the parameter vector: operator G ⊗ A
    torch.testing.assert_close(torch.kron(f.G, f.A), torch.outer(r, r), **TOL)


def test_batching_and_order_do_not_change_sampled_labels() -> None:
    """True-Fisher draws are keyed by (seed, sample id): any batch size or order, same sums."""
    model = _conv().double().eval()
    x, y = _data((6, 2, 6, 6))
    a = accumulate(model, x, y, "multiclass", mode="true", seed=9, samples=2, batch_size=6)
    perm = torch.tensor([4, 1, 5, 0, 3, 2])
    b = accumulate(
        model,
        x[perm],
        y[perm],
        "multiclass",
        mode="true",
        ids=perm,
        seed=9,
        samples=2,
        batch_size=1,
    )
    c = accumulate(model, x, y, "multiclass", mode="true", seed=10, samples=2, batch_size=6)
    for k in a.layers:
        torch.testing.assert_close(a.layers[k].g_sum, b.layers[k].g_sum, **TOL)
    assert not torch.allclose(a.layers["5"].g_sum, c.layers["5"].g_sum)


def test_bad_inputs_raise() -> None:
    model = _linear(True).double().eval()
    x, y = _data((4, 4))
    with pytest.raises(ConfigError, match="unknown curvature"):
        accumulate(model, x, y, "multiclass", mode="hessian")
    with pytest.raises(ConfigError, match="samples"):
        accumulate(model, x, y, "multiclass", mode="empirical", samples=2)
    with pytest.raises(DataError, match="disagree"):
        accumulate(model, x, y[:3], "multiclass")
    with pytest.raises(DataError, match="unique"):
        accumulate(model, x, y, "multiclass", ids=torch.tensor([0, 0, 1, 2]))
    with pytest.raises(ConfigError, match="eval mode"):
        accumulate(model.train(), x, y, "multiclass")


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_ggn_of_last_layer_is_the_summed_logit_hessian(task: str) -> None:
    """For the last Linear layer J_s = I, so ``G_sum = Σ_i Λ_i``: ``diag(p) − p pᵀ``
    (softmax) or ``diag(σ(1 − σ))`` (sigmoid, summed BCE), computed here by hand."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double().eval()
    x, y = _data((6, 4), seed=6)
    if task == "multilabel":
        y = torch.randint(0, 2, (6, 3), generator=torch.Generator().manual_seed(1)).double()
    s = accumulate(model, x, y, task, mode="ggn", batch_size=4)
    with torch.no_grad():
        z = model(x)
    if task == "multiclass":
        p = torch.softmax(z, dim=1)
        want = sum(torch.diag(pi) - torch.outer(pi, pi) for pi in p)
    else:
        q = torch.sigmoid(z)
        want = torch.diag((q * (1 - q)).sum(0))
    torch.testing.assert_close(s.layers["2"].g_sum, want, **TOL)
