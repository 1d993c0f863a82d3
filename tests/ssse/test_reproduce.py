"""Small runs of the paper reproductions, with assertions that can fail."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from unlearnkit.data.base import ArrayDataset
from unlearnkit.models import build_model
from unlearnkit.ssse.reproduce_convex import newton_refit, run_convex
from unlearnkit.ssse.reproduce_deep import run_deep


def test_newton_refit_is_the_regularised_logistic_optimum():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g)
    y = (x @ torch.randn(5, 3, generator=g) + torch.randn(200, 3, generator=g) > 0).float()
    ds = ArrayDataset("t", x, y, torch.arange(200, dtype=torch.int64), "multilabel", ("a", "b", "c"))
    model = build_model("linear", (5,), 3, seed=0)
    l2 = 0.01
    fit, gnorm = newton_refit(model, ds, l2, tol=1e-12)
    assert gnorm <= 1e-12
    for k in range(3):
        ref = LogisticRegression(C=1 / (200 * l2), fit_intercept=False, tol=1e-12, max_iter=10000)
        ref.fit(x.numpy(), y[:, k].numpy())
        assert np.allclose(fit.fc.weight[k].detach().numpy(), ref.coef_[0], atol=1e-5)


def test_convex_reproduction_small(tmp_path):
    res = run_convex(tmp_path, max_attributes=2, fractions=(0.1, 0.5), pool=4,
                     eps_grid=(0.3, 1.0, 3.0), variants=("paper", "exact"))
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


@pytest.mark.parametrize("model", ["cnn"])
def test_deep_reproduction_smoke(tmp_path, model):
    res = run_deep(tmp_path, datasets=("digits",), model=model, classes=(0,), epochs=3, group_size=5,
                   eps_grid=(1e-3, 1e-2, 1e-1))
    scen = res["datasets"]["digits"]["scenarios"]
    assert {(s["variant"], s["kind"]) for s in scen} == {(v, k) for v in ("paper", "exact") for k in ("class", "half")}
    for s in scen:
        assert s["gap_at_best"]["forget"] == pytest.approx(abs(s["accuracy_at_best"]["forget"] - s["retrain"]["forget"]))
        assert s["free_rule"] == ("class_forgetting" if s["kind"] == "class" else "loss_matching")
    assert (tmp_path / "fig2_digits.png").exists()
    assert "| paper | class | 0 |" in (tmp_path / "README.md").read_text()
