import numpy as np
import pytest
import torch
from torch import nn

from unlearnkit.data import ArrayDataset
from unlearnkit.evaluation.suite import evaluate_models, model_outputs
from unlearnkit.metrics import LOSS_CAP
from unlearnkit.metrics.mia import indiscernibility, population_mia


def _ds(n, seed, task="multiclass"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    if task == "multiclass":
        y = torch.randint(0, 3, (n,), generator=g)
    else:
        y = torch.randint(0, 2, (n, 3), generator=g).float()
    return ArrayDataset("d", x, y, torch.arange(n) + 1000 * seed, task, ("a", "b", "c"))


def _parts(task="multiclass", n=40):
    return {p: _ds(n, i, task) for i, p in enumerate(("retain", "forget", "val", "test"))}


def _linear(seed):
    torch.manual_seed(seed)
    return nn.Linear(5, 3)


def _loop_accuracy(model, ds):
    with torch.no_grad():
        return sum(int(model(ds.x[i]).argmax()) == int(ds.y[i]) for i in range(len(ds))) / len(ds)


def test_accuracies_retention_and_mia_match_hand_computation():
    parts = _parts()
    m, o, r = _linear(0), _linear(1), _linear(2)
    rep = evaluate_models(m, parts, o, r)
    acc = {
        k: _loop_accuracy(m, parts[p])
        for k, p in (("RA", "retain"), ("FA", "forget"), ("VA", "val"), ("TA", "test"))
    }
    racc = {
        k: _loop_accuracy(r, parts[p])
        for k, p in (("RA", "retain"), ("FA", "forget"), ("TA", "test"))
    }
    for k, v in acc.items():
        assert rep[k] == v
    assert rep["UA"] == pytest.approx(1 - acc["FA"])
    assert rep["RR"] == pytest.approx(acc["RA"] / racc["RA"])
    assert rep["RetDev"] == pytest.approx(sum(abs(acc[k] / racc[k] - 1) for k in racc))
    with torch.no_grad():
        loss = {
            p: nn.functional.cross_entropy(
                m(parts[p].x).double(), parts[p].y, reduction="none"
            ).numpy()
            for p in ("forget", "test")
        }
    assert rep["test_mia"] == pytest.approx(population_mia(loss["forget"], loss["test"]))
    assert rep["test_indisc"] == pytest.approx(indiscernibility(rep["test_mia"]))
    assert rep.notes == []


def test_identities_of_the_references():
    parts = _parts()
    o, r = _linear(1), _linear(2)
    of_r = evaluate_models(r, parts, o, r, seconds=2.0, retrain_seconds=10.0)
    assert {k: of_r[k] for k in ("RR", "FR", "TR", "RetDev")} == pytest.approx(
        {"RR": 1.0, "FR": 1.0, "TR": 1.0, "RetDev": 0.0}
    )
    assert of_r["l2_to_retrain"] == 0.0 and of_r["dist_to_retrain"] == 0.0
    assert of_r["rte"] == pytest.approx(5.0) and of_r["seconds"] == 2.0
    of_o = evaluate_models(o, parts, o, r)
    assert of_o["dist_to_retrain"] == pytest.approx(1.0) and of_o["l2_to_original"] == 0.0
    flat = torch.cat(
        [(a - b).flatten() for a, b in zip(o.parameters(), r.parameters(), strict=True)]
    )
    assert of_o["l2_to_retrain"] == pytest.approx(float(flat.detach().norm()))


def test_only_metrics_whose_inputs_are_present_are_reported():
    parts = _parts()
    rep = evaluate_models(_linear(0), {"retain": parts["retain"], "forget": parts["forget"]})
    assert set(rep.metrics) == {"RA", "FA", "UA", "nonfinite"}
    sel = evaluate_models(_linear(0), parts, metrics=["distance", "RA"])
    assert set(sel.metrics) == {"RA"}


def test_undefined_metric_is_none_with_a_note():
    parts = _parts()
    parts["forget"] = _ds(3, 9)  # population MIA needs at least 5 forget samples
    rep = evaluate_models(_linear(0), parts, metrics=["mia", "val_indisc"])
    assert rep["val_mia"] is None and rep["val_indisc"] is None
    assert any(n.startswith("val_mia:") for n in rep.notes)
    assert rep.to_dict()["metrics"]["test_mia"] is None
    assert ("val MIA", "n/a", "closer to retrain is better") in rep.rows()


def test_non_finite_outputs_are_wrong_and_their_losses_capped():
    class Half(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = _linear(3)

        def forward(self, x):
            z = self.lin(x)
            return torch.where(x[:, :1] > 0, torch.full_like(z, float("nan")), z)

    parts = _parts()
    model = Half()
    rep = evaluate_models(model, parts, metrics=["accuracy"])
    ds = parts["retain"]
    ok = ds.x[:, 0] <= 0
    assert rep["RA"] == pytest.approx(
        float(((model.lin(ds.x).argmax(1) == ds.y) & ok).double().mean())
    )
    bad = sum(int((parts[p].x[:, 0] > 0).sum()) for p in parts)
    assert rep["nonfinite"] == pytest.approx(bad / 160)
    losses = model_outputs(model, parts).losses("forget")
    assert np.all(losses[(parts["forget"].x[:, 0] > 0).numpy()] == LOSS_CAP)


def test_multilabel_accuracy_and_gamma_s():
    parts = _parts("multilabel")
    m, o, r = _linear(0), _linear(1), _linear(2)
    rep = evaluate_models(m, parts, o, r)
    ds = parts["test"]
    with torch.no_grad():
        assert rep["TA"] == pytest.approx(float(((m(ds.x) > 0).float() == ds.y).double().mean()))
    assert "svc_mia_efficacy" not in rep.metrics
    assert evaluate_models(r, parts, o, r)["gamma_S"] == 1.0
    assert evaluate_models(o, parts, o, r)["gamma_S"] == 0.0
