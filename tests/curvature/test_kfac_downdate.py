"""Leave-S-out: downdated K-FAC sums equal the sums rebuilt on D∖S (fp64)."""

from __future__ import annotations

import pytest
import torch
from kfac_reference import conv_norm_model, image_data
from torch import nn

from unlearnkit.curvature.kfac import (
    KroneckerCurvature,
    accumulate,
    eigenbases,
    leave_out,
    scale_sums,
    subtract,
)
from unlearnkit.errors import ConfigError, DataError

TOL = dict(rtol=1e-10, atol=1e-12)


def _model() -> nn.Sequential:
    return conv_norm_model()


def _data(n: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return image_data(n, 100)


FORGET = torch.tensor([1, 4, 7])


def _split() -> tuple[torch.Tensor, torch.Tensor]:
    keep = torch.ones(10, dtype=torch.bool)
    keep[FORGET] = False
    return keep, ~keep


@pytest.mark.parametrize("mode", ["empirical", "true", "ggn"])
def test_leave_out_equals_rebuild(mode: str) -> None:
    model = _model()
    x, y, ids = _data()
    keep, drop = _split()
    samples = 2 if mode == "true" else 1
    opts = dict(mode=mode, seed=3, samples=samples)
    full = accumulate(model, x, y, "multiclass", ids=ids, **opts)
    rebuilt = accumulate(model, x[keep], y[keep], "multiclass", ids=ids[keep], **opts)
    out = leave_out(model, full, x[drop], y[drop], "multiclass", ids=ids[drop])
    assert out.sums.n == 7 and out.scales_basis == "none"
    fr, fo = rebuilt.factors(), out.sums.factors()
    for k in fr.layers:
        torch.testing.assert_close(fo.layers[k].A, fr.layers[k].A, **TOL)
        torch.testing.assert_close(fo.layers[k].G, fr.layers[k].G, **TOL)
        torch.testing.assert_close(out.sums.layers[k].positions, rebuilt.layers[k].positions)
    for k in fr.diag:
        torch.testing.assert_close(fo.diag[k], fr.diag[k], **TOL)
    # the K-FAC of D∖S is re-diagonalised: its solves are those of the rebuilt factors
    v = {k: torch.ones_like(p) for k, p in model.named_parameters()}
    want = KroneckerCurvature.build(fr).solve(v, 1e-2)
    got = out.curvature.solve(v, 1e-2)
    for k in v:
        torch.testing.assert_close(got[k], want[k], **TOL)


def test_ekfac_scales_downdated_in_full_data_basis() -> None:
    """``s_R`` in D's eigenbasis equals the scales of D∖S computed in that same basis."""
    model = _model()
    x, y, ids = _data()
    keep, drop = _split()
    full = accumulate(model, x, y, "multiclass", ids=ids, mode="ggn")
    bases = eigenbases(full.factors())
    s_full = scale_sums(model, x, y, "multiclass", bases, ids=ids, mode="ggn")
    out = leave_out(model, full, x[drop], y[drop], "multiclass", ids=ids[drop], scales=s_full)
    assert out.scales_basis == "full-data" and out.curvature.variant == "ekfac"
    s_rebuilt = scale_sums(model, x[keep], y[keep], "multiclass", bases, ids=ids[keep], mode="ggn")
    assert out.scale_sums is not None and out.scale_sums.n == 7
    for k, s in s_rebuilt.scales().items():
        torch.testing.assert_close(out.scale_sums.scales()[k], s, **TOL)
        assert out.curvature.bases[k] is bases[k]


def test_downdate_errors() -> None:
    model = _model()
    x, y, ids = _data()
    full = accumulate(model, x, y, "multiclass", ids=ids)
    with pytest.raises(DataError, match="every sample"):
        leave_out(model, full, x, y, "multiclass", ids=ids)
    other = accumulate(model, x[:2], y[:2], "multiclass", mode="ggn")
    with pytest.raises(ConfigError, match="different curvatures"):
        subtract(full, other)
    with pytest.raises(DataError, match="ids"):
        leave_out(model, full, x[:2], y[:2], "multiclass", ids=ids[:3])
    # inputs unchanged by the failed calls
    again = accumulate(model, x, y, "multiclass", ids=ids)
    torch.testing.assert_close(full.layers["4"].g_sum, again.layers["4"].g_sum)
