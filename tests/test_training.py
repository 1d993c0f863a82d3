"""Training recipes: determinism, accuracy on digits, L-BFGS optimum vs scikit-learn."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import ConfigError, NumericalError, UnsupportedError
from unlearnkit.io import model_fingerprint
from unlearnkit.models import build_model
from unlearnkit.seeding import preserved_rng_state, seed_everything
from unlearnkit.training import (
    AUGMENTATIONS,
    LBFGSRecipe,
    SGDRecipe,
    evaluate_accuracy,
    make_recipe,
    objective_grad_norm,
    predict_logits,
    recipe_train_fn,
    retrain,
    run_train_fn,
    train,
)

CPU = {"device": "cpu"}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _digits(shape: tuple[int, ...], idx: torch.Tensor, task: str = "multiclass") -> ArrayDataset:
    x, y = load_digits(return_X_y=True)
    xt = torch.tensor(x / 16.0, dtype=torch.float32)[idx].reshape(len(idx), *shape)
    yt = torch.tensor(y)[idx]
    if task == "multilabel":  # attributes: "even digit", "digit >= 5"
        labels = torch.stack([(yt % 2 == 0), (yt >= 5)], dim=1).float()
        return ArrayDataset("digits-attr", xt, labels, idx, task, ("even", "ge5"))
    return ArrayDataset("digits", xt, yt, idx, "multiclass", tuple(str(i) for i in range(10)))


PERM = torch.randperm(1797, generator=torch.Generator().manual_seed(0))
TRAIN, TEST = PERM[:1400], PERM[1400:]


@pytest.mark.parametrize(
    "name,shape,options,epochs",
    [
        ("logreg", (64,), {}, 10),
        ("mlp", (64,), {"width": 64}, 8),
        ("cnn", (1, 8, 8), {"channels": (16, 32), "pool_output": 2}, 8),
    ],
)
def test_sgd_reaches_90_percent_on_digits(
    name: str, shape: tuple[int, ...], options: dict, epochs: int
) -> None:
    model = build_model(name, shape, 10, seed=0, **options)
    res = train(model, _digits(shape, TRAIN), SGDRecipe(epochs=epochs, batch_size=64, **CPU), 1)
    assert evaluate_accuracy(res.model, _digits(shape, TEST)) >= 0.9
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert res.seconds > 0 and res.converged is None


def test_sgd_is_deterministic_and_leaves_input_unchanged() -> None:
    data = _digits((64,), TRAIN[:300])
    model = build_model("mlp", (64,), 10, seed=0, width=16, depth=1)
    before = model_fingerprint(model)
    recipe = SGDRecipe(epochs=2, batch_size=32, augment=(), **CPU)
    a = train(model, data, recipe, seed=5).model
    b = train(model, data, recipe, seed=5).model
    c = train(model, data, recipe, seed=6).model
    assert model_fingerprint(model) == before
    assert model_fingerprint(a) == model_fingerprint(b)
    assert model_fingerprint(a) != model_fingerprint(c)  # another shuffling order
    r = retrain(model, data.subset(data.ids[:200]), recipe, seed=5).model
    assert model_fingerprint(r) == model_fingerprint(
        train(model, data.subset(data.ids[:200]), recipe, seed=5).model
    )


def test_cosine_schedule_follows_the_formula() -> None:
    data = _digits((64,), TRAIN[:64])
    res = train(
        build_model("logreg", (64,), 10, seed=0), data, SGDRecipe(epochs=4, lr=0.2, **CPU), 0
    )
    expected = [0.2 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert [h["lr"] for h in res.history] == pytest.approx(expected)
    const = train(
        build_model("logreg", (64,), 10, seed=0),
        data,
        SGDRecipe(epochs=2, lr=0.2, scheduler="constant", report_grad_norm=True, **CPU),
        0,
    )
    assert [h["lr"] for h in const.history] == [0.2, 0.2]
    assert const.grad_norm is not None and const.grad_norm > 0


def test_augmentations_match_a_brute_force_replay() -> None:
    x = torch.randn(6, 2, 5, 7)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    out = AUGMENTATIONS.get("crop4")(x, g1)
    oy = torch.randint(0, 9, (6,), generator=g2)
    ox = torch.randint(0, 9, (6,), generator=g2)
    padded = nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(6):
        ref = padded[i, :, oy[i] : oy[i] + 5, ox[i] : ox[i] + 7]
        torch.testing.assert_close(out[i], ref)
    out = AUGMENTATIONS.get("hflip")(x, g1)
    flips = torch.rand(6, generator=g2) < 0.5
    for i in range(6):
        torch.testing.assert_close(out[i], x[i].flip(-1) if flips[i] else x[i])


def test_recipe_configs_and_errors() -> None:
    assert make_recipe("sgd") == SGDRecipe()
    r = make_recipe({"name": "lbfgs", "l2": 0.5})
    assert isinstance(r, LBFGSRecipe) and r.l2 == 0.5
    d = SGDRecipe()
    assert (d.lr, d.momentum, d.weight_decay, d.batch_size) == (0.1, 0.9, 5e-4, 256)
    with pytest.raises(ConfigError, match="unknown training recipe"):
        make_recipe({"name": "adam"})
    with pytest.raises(ConfigError, match="bad 'sgd' recipe"):
        make_recipe({"name": "sgd", "learning_rate": 0.1})
    with pytest.raises(ConfigError, match="augmentation"):
        make_recipe({"name": "sgd", "augment": ["rotate"]})
    flat = _digits((64,), TRAIN[:32])
    with pytest.raises(UnsupportedError, match="image data"):
        train(build_model("mlp", (64,), 10, seed=0), flat, SGDRecipe(augment=("hflip",)), 0)
    with pytest.raises(UnsupportedError, match="10 classes"):
        train(build_model("mlp", (64,), 3, seed=0), flat, SGDRecipe(epochs=1), 0)
    with pytest.raises(UnsupportedError, match="BatchNorm"):
        bn = build_model("cnn", (1, 8, 8), 10, seed=0, batchnorm=True)
        train(bn, _digits((1, 8, 8), TRAIN[:32]), LBFGSRecipe(), 0)


def test_lbfgs_matches_sklearn_logistic_regression() -> None:
    """Bias-free multi-attribute logistic regression = one sklearn fit per attribute.

    ours: min (1/n) Σ_i Σ_a BCE(w_a·x_i, y_ia) + (λ/2)‖W‖²; sklearn: min C Σ_i logloss + ½‖w‖²,
    the same minimiser when C = 1/(n λ).
    """
    data = _digits((64,), TRAIN[:400], task="multilabel")
    l2 = 1e-2
    model = build_model("linear", (64,), 2, seed=0)
    res = train(model, data, LBFGSRecipe(l2=l2, tol=1e-6, output_dtype="float64", **CPU), 0)
    assert res.converged and res.grad_norm is not None and res.grad_norm <= 1e-6
    _, gnorm = objective_grad_norm(res.model, data, l2=l2)
    assert gnorm <= 1e-6
    n = len(data)
    x = data.x.double()
    for a in range(2):
        y = data.y[:, a].double()
        sk = LogisticRegression(C=1 / (n * l2), fit_intercept=False, tol=1e-12, max_iter=10_000)
        sk.fit(x.numpy(), y.numpy())
        assert sk.coef_.dtype == np.float64  # fp64 reference whatever scikit-learn's version
        ours = res.model.fc.weight[a].detach().double()

        def grad_norm(w: torch.Tensor, y: torch.Tensor = y) -> float:
            return float((x.T @ (torch.sigmoid(x @ w) - y) / n + l2 * w).norm())

        # J is l2-strongly convex: ‖w − w*‖ ≤ ‖∇J(w)‖/l2 for both fits (measured in fp64)
        ref = torch.as_tensor(sk.coef_[0])
        bound = (grad_norm(ours) + grad_norm(ref)) / l2 + 1e-12
        assert float((ours - ref).norm()) <= bound <= 2e-4


def test_lbfgs_failure_raises_or_warns_and_default_output_is_float32() -> None:
    data = _digits((64,), TRAIN[:200])
    model = build_model("logreg", (64,), 10, seed=0)
    before = model_fingerprint(model)
    with pytest.raises(NumericalError, match="raise max_iter"):
        train(model, data, LBFGSRecipe(l2=1e-3, max_iter=2, round_iter=1, **CPU), 0)
    assert model_fingerprint(model) == before
    with pytest.warns(RuntimeWarning, match="L-BFGS stopped"):
        res = train(
            model, data, LBFGSRecipe(l2=1e-3, max_iter=2, round_iter=1, on_fail="warn", **CPU), 0
        )
    assert res.converged is False and res.model.fc.weight.dtype == torch.float32
    assert res.grad_norm is not None and res.grad_norm > 1e-6


def test_predict_logits_and_accuracy_known_answers() -> None:
    lin = build_model("linear", (2,), 2, seed=0)
    with torch.no_grad():
        lin.fc.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, -1.0], [-1.0, -1.0], [1.0, 1.0]])
    y = torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 1.0]])
    ml = ArrayDataset("t", x, y, torch.arange(3), "multilabel", ("a", "b"))
    # predictions [[1,0],[0,0],[1,1]] vs y: 4 of 6 attribute labels right
    assert evaluate_accuracy(lin, ml, batch_size=2) == pytest.approx(4 / 6)
    mc = ArrayDataset("t", x, torch.tensor([0, 1, 1]), torch.arange(3), "multiclass", ("a", "b"))
    # argmax of x rows: 0, (tie -> 0), (tie -> 0): right on sample 0 only
    assert evaluate_accuracy(lin, mc) == pytest.approx(1 / 3)
    net = build_model("resnet20", (3, 8, 8), 4, seed=0).train()
    xs = torch.randn(5, 3, 8, 8)
    logits = predict_logits(net, xs, batch_size=2)
    assert net.training  # mode restored
    with torch.no_grad():
        torch.testing.assert_close(logits, net.eval()(xs))


def test_train_restores_the_callers_global_rng_state() -> None:
    torch.manual_seed(7)
    np.random.seed(7)
    want = (torch.rand(3), np.random.rand(2))
    torch.manual_seed(7)
    np.random.seed(7)
    data = _digits((64,), TRAIN[:50])
    train(build_model("mlp", (64,), 10, seed=0), data, SGDRecipe(epochs=1, **CPU), 5)
    assert torch.equal(torch.rand(3), want[0]) and np.array_equal(np.random.rand(2), want[1])


def test_recipe_train_fn_equals_train_and_checks_the_return_type() -> None:
    data = _digits((64,), TRAIN[:60])
    recipe = SGDRecipe(epochs=2, batch_size=16, **CPU)
    fn = recipe_train_fn(recipe)
    a = run_train_fn(fn, lambda: build_model("mlp", (64,), 10, seed=1), data, 3)
    b = train(build_model("mlp", (64,), 10, seed=1), data, recipe, 3).model
    assert model_fingerprint(a) == model_fingerprint(b)
    with pytest.raises(UnsupportedError, match="not a torch.nn.Module"):
        bad = lambda f, d, s: "oops"  # noqa: E731
        run_train_fn(bad, lambda: nn.Linear(2, 2), data, 0)  # type: ignore[arg-type]


def test_preserved_rng_state_restores_every_generator_even_after_an_error() -> None:
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    want = (random.random(), float(np.random.rand()), float(torch.rand(())))
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    with pytest.raises(RuntimeError), preserved_rng_state():
        seed_everything(99)
        random.random(), np.random.rand(), torch.rand(5)
        raise RuntimeError("boom")
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == want
