"""Curvature rows against brute force: J^T H J, exact Hessians, label enumeration."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.autograd.functional import hessian, jacobian
from torch.func import functional_call

from unlearnkit.curvature.gradients import per_sample_gradients
from unlearnkit.curvature.layout import ParamLayout
from unlearnkit.curvature.rows import ROW_KINDS, curvature_rows, true_fisher_rows
from unlearnkit.errors import ConfigError
from unlearnkit.tasks import get_task

F64 = {"compute_dtype": torch.float64, "out_dtype": torch.float64}


def _mlp(out: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, out)).double().eval()


class _Flat:
    """f(theta, x_i) for a model, with theta the flat trainable parameter vector."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.layout = ParamLayout.from_model(model)
        self.theta = self.layout.flatten({n: p.detach() for n, p in model.named_parameters()})

    def logits(self, theta: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, self.layout.unflatten(theta), (xi[None],))[0]

    def jac(self, xi: torch.Tensor) -> torch.Tensor:
        return jacobian(lambda t: self.logits(t, xi), self.theta)  # (C, d)

    def grad(self, xi: torch.Tensor, loss) -> torch.Tensor:
        return jacobian(lambda t: loss(self.logits(t, xi)), self.theta)


def _ce(c: int):
    return lambda z: nn.functional.cross_entropy(z[None], torch.tensor([c]))


def _bce(t: torch.Tensor):
    return lambda z: nn.functional.binary_cross_entropy_with_logits(z, t, reduction="sum")


def test_kinds_registered() -> None:
    assert ROW_KINDS.names() == ["empirical", "ggn", "true"]
    with pytest.raises(ConfigError, match="unknown curvature kind"):
        curvature_rows(
            "kfac", _mlp(), torch.zeros(1, 3), torch.zeros(1, dtype=torch.long), "multiclass"
        )


def test_ggn_multiclass_equals_brute_force_gauss_newton() -> None:
    model = _mlp()
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randint(0, 3, (5,))
    f = _Flat(model)
    gn = torch.zeros(f.layout.d, f.layout.d, dtype=torch.float64)
    for i in range(5):
        z = f.logits(f.theta, x[i]).detach()
        h = hessian(lambda zz, i=i: nn.functional.cross_entropy(zz[None], y[i : i + 1]), z)
        j = f.jac(x[i])
        gn += j.T @ h @ j
    gm = curvature_rows("ggn", model, x, y, "multiclass", chunk_size=2, **F64)
    assert gm.G.shape == (5 * 3, f.layout.d)
    assert gm.row_group.tolist() == [i for i in range(5) for _ in range(3)]
    assert gm.row_output.tolist() == [0, 1, 2] * 5
    assert gm.normalizer == 5
    torch.testing.assert_close(gm.G.T @ gm.G, gn, atol=1e-12, rtol=1e-10)
    # the same factor through a loss callable (Hessian by torch.func + eigh)
    loss = lambda z, t: nn.functional.cross_entropy(z[None], t[None])  # noqa: E731
    gen = curvature_rows("ggn", model, x, y, loss, **F64)
    torch.testing.assert_close(gen.G.T @ gen.G, gn, atol=1e-12, rtol=1e-10)


def test_ggn_linear_sigmoid_is_exact_hessian() -> None:
    torch.manual_seed(2)
    model = nn.Linear(4, 3, bias=False).double().eval()
    x = torch.randn(6, 4, dtype=torch.float64)
    y = (torch.rand(6, 3) < 0.4).double()

    def total(w: torch.Tensor) -> torch.Tensor:
        z = x @ w.reshape(3, 4).T
        return nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum")

    h = hessian(total, model.weight.detach().reshape(-1))
    gm = curvature_rows("ggn", model, x, y, "multilabel", **F64)
    assert gm.G.shape == (6 * 3, 12)
    torch.testing.assert_close(gm.G.T @ gm.G, h, atol=1e-12, rtol=1e-10)
    # the row of (sample i, head k) lives in head k's weight row only
    nz = gm.G.reshape(6, 3, 3, 4).abs().sum(-1) > 0  # (sample, row k, weight row)
    assert torch.equal(nz, torch.eye(3, dtype=torch.bool).expand(6, 3, 3))


def test_ggn_equals_true_fisher_by_label_enumeration() -> None:
    """For softmax-CE and sigmoid-BCE the GGN is the expectation over y ~ p(y|x) of g g^T."""
    x = torch.randn(3, 3, dtype=torch.float64)
    # multiclass: sum_c p_c g_c g_c^T
    model = _mlp(3, seed=4)
    f = _Flat(model)
    fisher = torch.zeros(f.layout.d, f.layout.d, dtype=torch.float64)
    for i in range(3):
        p = torch.softmax(f.logits(f.theta, x[i]).detach(), -1)
        for c in range(3):
            g = f.grad(x[i], _ce(c))
            fisher += p[c] * torch.outer(g, g)
    y = torch.randint(0, 3, (3,))
    gm = curvature_rows("ggn", model, x, y, "multiclass", **F64)
    torch.testing.assert_close(gm.G.T @ gm.G, fisher, atol=1e-12, rtol=1e-10)
    # multilabel with 2 attributes: enumerate the 4 label vectors
    model = _mlp(2, seed=5)
    f = _Flat(model)
    fisher = torch.zeros(f.layout.d, f.layout.d, dtype=torch.float64)
    for i in range(3):
        p = torch.sigmoid(f.logits(f.theta, x[i]).detach())
        for bits in itertools.product([0.0, 1.0], repeat=2):
            t = torch.tensor(bits, dtype=torch.float64)
            prob = torch.prod(torch.where(t > 0, p, 1 - p))
            g = f.grad(x[i], _bce(t))
            fisher += prob * torch.outer(g, g)
    y = (torch.rand(3, 2) < 0.5).double()
    gm = curvature_rows("ggn", model, x, y, "multilabel", **F64)
    torch.testing.assert_close(gm.G.T @ gm.G, fisher, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_true_fisher_rows_are_scaled_gradients_at_drawn_labels(task: str) -> None:
    model = _mlp(3, seed=6)
    n, s = 4, 5
    x = torch.randn(n, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (n,)) if task == "multiclass" else (torch.rand(n, 3) < 0.5).double()
    gm = curvature_rows(
        "true", model, x, y, task, seed=11, samples_per_input=s, chunk_size=3, **F64
    )
    assert gm.G.shape == (n * s, 16 + 15)
    assert gm.row_output.tolist() == list(range(s)) * n
    # the draws the program makes (same seed, chunk-independent) -> reference gradients
    program = true_fisher_rows(task, n=n, seed=11, samples_per_input=s)
    f = _Flat(model)
    logits = torch.stack([f.logits(f.theta, x[i]) for i in range(n)]).detach()
    drawn = program.prepare(logits, y, torch.arange(n))
    for i in range(n):
        for k in range(s):
            lab = drawn[i, k]
            loss = _ce(int(lab)) if task == "multiclass" else _bce(lab)
            want = f.grad(x[i], loss) / s**0.5
            torch.testing.assert_close(gm.G[i * s + k], want, atol=1e-12, rtol=1e-10)
    again = curvature_rows("true", model, x, y, task, seed=11, samples_per_input=s, **F64)
    assert torch.equal(again.G, gm.G)
    other = curvature_rows("true", model, x, y, task, seed=12, samples_per_input=s, **F64)
    assert not torch.equal(other.G, gm.G)


def test_label_samplers_follow_the_predictive_distribution() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    u = torch.rand(2, 20000, generator=gen)
    ys = get_task("multiclass").sample_labels(logits, u)
    freq = torch.stack([torch.bincount(row, minlength=3) for row in ys]).double() / 20000
    torch.testing.assert_close(freq, torch.softmax(logits.double(), -1), atol=0.015, rtol=0)
    u = torch.rand(2, 20000, 3, generator=gen)
    yb = get_task("multilabel").sample_labels(logits, u)
    torch.testing.assert_close(yb.mean(1), torch.sigmoid(logits), atol=0.015, rtol=0)


def test_empirical_rows_and_groups() -> None:
    model = _mlp()
    x, y = torch.randn(7, 3, dtype=torch.float64), torch.randint(0, 3, (7,))
    ids = torch.arange(7) + 50
    emp = curvature_rows("empirical", model, x, y, "multiclass", ids=ids, **F64)
    psg = per_sample_gradients(model, x, y, "multiclass", ids=ids, **F64)
    assert torch.equal(emp.G, psg.G) and emp.row_ids.tolist() == ids.tolist()
    # grouped GGN rows: mean over each group's members of their (C) rows, per output
    full = curvature_rows("ggn", model, x, y, "multiclass", ids=ids, **F64)
    grp = curvature_rows("ggn", model, x, y, "multiclass", ids=ids, group_size=3, seed=2, **F64)
    assert grp.G.shape == (3 * 3, full.d) and grp.normalizer == 3
    per = full.G.reshape(7, 3, -1)
    for b in range(3):
        members = grp.group_members[b, : grp.group_sizes[b]] - 50
        torch.testing.assert_close(grp.G[3 * b : 3 * b + 3], per[members].mean(0))
    rows = grp.rows_of([int(grp.group_members[1, 0])])
    assert rows.tolist() == [3, 4, 5]


def test_hooks_backend_for_multi_row_kinds() -> None:
    model = _mlp()
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randint(0, 3, (5,))
    for kind, s in (("ggn", 1), ("true", 2)):
        a = curvature_rows(kind, model, x, y, "multiclass", samples_per_input=s, **F64)
        b = curvature_rows(
            kind, model, x, y, "multiclass", samples_per_input=s, backend="hooks", **F64
        )
        torch.testing.assert_close(a.G, b.G, atol=1e-12, rtol=1e-10)


def test_row_kind_argument_errors() -> None:
    model = _mlp()
    x, y = torch.randn(2, 3, dtype=torch.float64), torch.randint(0, 3, (2,))
    with pytest.raises(ConfigError, match="task name"):
        curvature_rows("true", model, x, y, lambda z, t: z.sum())
    with pytest.raises(ConfigError, match="samples_per_input"):
        curvature_rows("ggn", model, x, y, "multiclass", samples_per_input=3)
    with pytest.raises(ConfigError, match="samples_per_input"):
        curvature_rows("true", model, x, y, "multiclass", samples_per_input=0)
    dense = curvature_rows("empirical", model, x, y, "multiclass", **F64).dense_curvature(0.5)
    assert torch.linalg.eigvalsh(dense).min() >= 0.5 - 1e-12
