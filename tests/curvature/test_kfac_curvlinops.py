"""Products with K-FAC / EK-FAC agree with curvlinops' operators (the reference implementation).

curvlinops (``curvlinops-for-pytorch``) is a test-only dependency. Conventions matched:

* ``kfac_approx="expand"`` and ``separate_weight_and_bias=False`` (bias as an appended 1 in ã);
* ``loss_func=CrossEntropyLoss(reduction="mean")`` (the "loss average"): A averaged over
  samples and positions, G over samples — exactly our normalisation. With ``reduction="sum"``
  curvlinops' G is a sum over samples, so its operator is n times ours (checked below);
* ``fisher_type``: "empirical" ↔ our ``empirical``, "type-2" ↔ our ``ggn`` (curvlinops backs
  up the columns of the logit-Hessian square root too), "mc" ↔ our ``true``. The Monte-Carlo
  labels come from different generators (curvlinops: ``multinomial`` with its own seed; ours:
  uniforms keyed by ``(seed, sample id)``), so for "mc" the test feeds OUR drawn labels to
  curvlinops' "empirical" operator: that is what an MC Fisher with those draws is.
"""

from __future__ import annotations

import pytest
import torch
from kfac_reference import sampled_labels
from torch import nn

from unlearnkit.curvature.kfac import KroneckerCurvature, accumulate, eigenbases, scale_sums

curvlinops = pytest.importorskip("curvlinops")

TOL = dict(rtol=1e-10, atol=1e-12)


def _linear_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3, bias=False)).double().eval()


def _conv_model() -> nn.Sequential:
    torch.manual_seed(1)
    return (
        nn.Sequential(
            nn.Conv2d(2, 3, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(3, 2, 2, bias=False),
            nn.Flatten(),
            nn.Linear(8, 3),
        )
        .double()
        .eval()
    )


CASES = {"linear": (_linear_model, (7, 5)), "conv": (_conv_model, (7, 2, 6, 6))}


def _data(shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (shape[0],), generator=g
    )


def _operator(
    cls: type,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    fisher_type: str,
    reduction: str = "mean",
):  # noqa: ANN202
    batches = [
        (x[:4], y[:4]),
        (x[4:], y[4:]),
    ]  # two batches: the normalisation must not depend on them
    return cls(
        model,
        nn.CrossEntropyLoss(reduction=reduction),
        list(model.parameters()),
        batches,
        fisher_type=fisher_type,
        kfac_approx="expand",
        separate_weight_and_bias=False,
        check_deterministic=False,
    )


def _compare(
    ours: dict[str, torch.Tensor], theirs: list[torch.Tensor], names: list[str], scale: float = 1.0
) -> None:
    for name, t in zip(names, theirs, strict=True):
        torch.testing.assert_close(ours[name] * scale, t, **TOL)


@pytest.mark.parametrize("fisher_type", ["empirical", "type-2", "mc"])
@pytest.mark.parametrize("case", list(CASES))
def test_kfac_and_ekfac_products_match_curvlinops(case: str, fisher_type: str) -> None:
    make, shape = CASES[case]
    model = make()
    x, y = _data(shape)
    mode = {"empirical": "empirical", "type-2": "ggn", "mc": "true"}[fisher_type]
    if fisher_type == "mc":  # our draws, given to curvlinops as labels (see module docstring)
        y_theirs, ft = sampled_labels(x, model, torch.arange(x.shape[0]), 11, 1)[:, 0], "empirical"
    else:
        y_theirs, ft = y, fisher_type
    names = [n for n, _ in model.named_parameters()]
    g = torch.Generator().manual_seed(5)
    v = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in model.parameters()]
    vd = dict(zip(names, v, strict=True))

    sums = accumulate(model, x, y, "multiclass", mode=mode, seed=11, batch_size=3)
    kfac = KroneckerCurvature.build(sums.factors())
    _compare(
        kfac.matvec(vd), _operator(curvlinops.KFACLinearOperator, model, x, y_theirs, ft) @ v, names
    )

    bases = eigenbases(sums.factors())
    s = scale_sums(model, x, y, "multiclass", bases, mode=mode, seed=11)
    ekfac = KroneckerCurvature.build(sums.factors(), s.scales(), bases)
    _compare(
        ekfac.matvec(vd),
        _operator(curvlinops.EKFACLinearOperator, model, x, y_theirs, ft) @ v,
        names,
    )


def test_sum_reduction_is_n_times_ours_and_damped_inverse_matches() -> None:
    model = _conv_model()
    x, y = _data((7, 2, 6, 6))
    names = [n for n, _ in model.named_parameters()]
    v = [
        torch.randn(p.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
        for p in model.parameters()
    ]
    vd = dict(zip(names, v, strict=True))
    kfac = KroneckerCurvature.build(accumulate(model, x, y, "multiclass").factors())
    summed = _operator(curvlinops.KFACLinearOperator, model, x, y, "empirical", reduction="sum")
    _compare(kfac.matvec(vd), summed @ v, names, scale=float(x.shape[0]))  # G summed, not averaged

    lam = 1e-2  # use_exact_damping: (A ⊗ G + λI)⁻¹, our damping convention
    op = _operator(curvlinops.KFACLinearOperator, model, x, y, "empirical")
    inv = curvlinops.KFACInverseLinearOperator(op, damping=lam, use_exact_damping=True)
    _compare(kfac.solve(vd, lam), inv @ v, names)
