import numpy as np
import pytest
import torch
from torch import nn

from unlearnkit.bench.evaluate import evaluate_model, search_metrics
from unlearnkit.data import ArrayDataset
from unlearnkit.data.plan import Split
from unlearnkit.evaluation.suite import model_outputs
from unlearnkit.metrics import LOSS_CAP
from unlearnkit.metrics.mia import population_mia


def _ds(name, n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    ids = torch.arange(n, dtype=torch.int64) + 1000 * seed
    return ArrayDataset(name, x, y, ids, "multiclass", ("a", "b", "c"))


@pytest.fixture
def split():
    parts = {p: _ds(p, 40, i) for i, p in enumerate(("train", "val", "test", "retain", "forget"))}
    return Split(**parts)


def _linear(seed):
    torch.manual_seed(seed)
    return nn.Linear(5, 3)


def test_accuracies_and_mias_match_a_loop(split):
    model = _linear(0)
    m = evaluate_model(model, split, ["accuracy", "mia"])
    for part, name in (("retain", "RA"), ("forget", "FA"), ("val", "VA"), ("test", "TA")):
        ds = split.part(part)
        with torch.no_grad():
            correct = sum(
                int(model(ds.x[i : i + 1]).argmax()) == int(ds.y[i]) for i in range(len(ds))
            )
        assert m[name] == correct / len(ds)
    with torch.no_grad():
        losses = {
            p: np.array(
                [
                    float(
                        nn.functional.cross_entropy(
                            model(ds.x[i : i + 1]).double(), ds.y[i : i + 1]
                        )
                    )
                    for i in range(len(ds))
                ]
            )
            for p, ds in (("forget", split.forget), ("val", split.val), ("test", split.test))
        }
    assert m["val_mia"] == pytest.approx(population_mia(losses["forget"], losses["val"]))
    assert m["test_mia"] == pytest.approx(population_mia(losses["forget"], losses["test"]))
    assert m["nonfinite"] == 0.0


class _NaNOnFirstFeature(nn.Module):
    """Outputs NaN for samples whose first feature is positive."""

    def __init__(self):
        super().__init__()
        self.lin = _linear(1)

    def forward(self, x):
        z = self.lin(x)
        return torch.where(x[:, :1] > 0, torch.full_like(z, float("nan")), z)


def test_non_finite_outputs_count_as_wrong_and_losses_are_capped(split):
    model = _NaNOnFirstFeature()
    m = evaluate_model(model, split, ["accuracy", "mia"])
    ds = split.retain
    ok = ds.x[:, 0] <= 0
    pred = model.lin(ds.x).argmax(1)
    assert m["RA"] == pytest.approx(float(((pred == ds.y) & ok).double().mean()))
    bad = sum(int((split.part(p).x[:, 0] > 0).sum()) for p in ("retain", "forget", "val", "test"))
    assert m["nonfinite"] == pytest.approx(bad / 160)
    assert 0.0 <= m["val_mia"] <= 1.0
    losses = model_outputs(model, {"forget": split.forget}).losses("forget")
    assert np.all(losses[(split.forget.x[:, 0] > 0).numpy()] == LOSS_CAP)


def test_distance_to_retrain(split):
    o, r = _linear(0), _linear(1)
    d_r = evaluate_model(r, split, ["distance"], original=o, retrain=r)
    d_o = evaluate_model(o, split, ["distance"], original=o, retrain=r)
    assert d_r == {"l2_to_retrain": 0.0, "dist_to_retrain": 0.0}
    assert d_o["dist_to_retrain"] == pytest.approx(1.0)
    flat = torch.cat(
        [(p1 - p2).flatten() for p1, p2 in zip(o.parameters(), r.parameters(), strict=True)]
    )
    assert d_o["l2_to_retrain"] == pytest.approx(float(flat.detach().norm()))
    assert evaluate_model(o, split, ["distance"]) == {}  # no references, nothing to compare


def test_search_metrics_are_the_validation_subset_of_the_full_evaluation(split):
    model = _linear(2)
    full = evaluate_model(model, split, ["accuracy", "mia"])
    sub = search_metrics(model, split)
    assert sub == {k: full[k] for k in ("RA", "FA", "VA", "val_mia")}
