"""Model registry: seeded init, forward shapes, input-shape checks, options, model_info."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from unlearnkit.errors import ConfigError, UnsupportedError
from unlearnkit.models import MODELS, ModelSpec, build_from_spec, build_model, model_info, spec_of
from unlearnkit.models.registry import build_on_meta

# (model, input shape) pairs that fit: digits flat/8x8, MNIST, CIFAR, MNIST-1D, CelebA features
FITS = [
    ("linear", (64,)),
    ("linear", (3, 32, 32)),
    ("logreg", (64,)),
    ("logreg", (1, 40)),
    ("mlp", (64,)),
    ("mlp", (1, 28, 28)),
    ("cnn", (1, 8, 8)),
    ("cnn", (1, 28, 28)),
    ("cnn", (3, 32, 32)),
    ("cnn", (1, 40)),
    ("resnet20", (3, 32, 32)),
    ("resnet20", (1, 28, 28)),
    ("resnet20", (1, 8, 8)),
    ("resnet18", (3, 32, 32)),
    ("resnet18", (1, 28, 28)),
]
MISFITS = [
    ("cnn", (64,)),
    ("cnn", (1, 2, 2)),
    ("cnn", (1, 3, 8, 8)),
    ("resnet20", (1, 40)),
    ("resnet20", (64,)),
    ("resnet20", (3, 4, 4)),
    ("resnet18", (1, 8, 8)),
    ("resnet18", (512,)),
]


def test_registered_names() -> None:
    assert MODELS.names() == ["cnn", "linear", "logreg", "mlp", "resnet18", "resnet20"]


@pytest.mark.parametrize("name,shape", FITS)
def test_forward_shape_and_fc(name: str, shape: tuple[int, ...]) -> None:
    model = build_model(name, shape, 7, seed=0)
    assert isinstance(model.fc, nn.Linear) and model.fc.out_features == 7
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(3, *shape))
    assert out.shape == (3, 7)
    assert spec_of(model) == ModelSpec(
        name=name, input_shape=shape, num_outputs=7, seed=0, options=spec_of(model).options
    )


@pytest.mark.parametrize("name,shape", MISFITS)
def test_unfit_shape_is_refused(name: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(UnsupportedError, match=name) as err:
        build_model(name, shape, 10, seed=0)
    assert str(shape) in str(err.value)


@pytest.mark.parametrize("name", ["linear", "mlp", "cnn", "resnet20"])
def test_seeded_init_is_reproducible_and_leaves_global_rng_alone(name: str) -> None:
    shape = (3, 8, 8)
    torch.manual_seed(1)
    before = torch.get_rng_state()
    a = build_model(name, shape, 5, seed=11)
    assert torch.equal(torch.get_rng_state(), before)  # global RNG untouched
    torch.manual_seed(2)  # a different global state must not matter
    b = build_model(name, shape, 5, seed=11)
    c = build_model(name, shape, 5, seed=12)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    d = build_from_spec(spec_of(a))
    assert all(torch.equal(sa[k], v) for k, v in d.state_dict().items())


def test_linear_has_no_bias_logreg_has_bias() -> None:
    lin = build_model("linear", (4, 5), 3, seed=0)
    assert lin.fc.bias is None and lin.fc.weight.shape == (3, 20)
    x = torch.randn(2, 4, 5)
    torch.testing.assert_close(lin(x), x.reshape(2, 20) @ lin.fc.weight.T)
    lr = build_model("logreg", (20,), 3, seed=0)
    assert lr.fc.bias is not None
    x = torch.randn(2, 20)
    torch.testing.assert_close(lr(x), x @ lr.fc.weight.T + lr.fc.bias)


def test_mlp_width_depth() -> None:
    m = build_model("mlp", (10,), 2, seed=0, width=8, depth=3)
    linears = [mod for mod in m.modules() if isinstance(mod, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [
        (10, 8),
        (8, 8),
        (8, 8),
        (8, 2),
    ]
    m0 = build_model("mlp", (10,), 2, seed=0, depth=0)
    assert sum(p.numel() for p in m0.parameters()) == 10 * 2 + 2


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="unknown model 'vgg'"):
        build_model("vgg", (3, 32, 32), 10, seed=0)
    with pytest.raises(ConfigError, match="width"):
        build_model("mlp", (10,), 2, seed=0, width=0)
    with pytest.raises(ConfigError, match="extra"):
        build_model("mlp", (10,), 2, seed=0, widht=8)
    with pytest.raises(ConfigError, match="input_shape"):
        build_model("mlp", (0,), 2, seed=0)
    with pytest.raises(ConfigError, match="num_outputs"):
        build_model("mlp", (10,), 0, seed=0)
    with pytest.raises(ConfigError, match="odd"):
        build_model("cnn", (1, 8, 8), 2, seed=0, kernel_size=4)
    with pytest.raises(ConfigError, match="not built by"):
        spec_of(nn.Linear(2, 2))


def test_model_info_rows() -> None:
    rows = {r["name"]: r for r in model_info((1, 8, 8), num_outputs=10)}
    assert set(rows) == set(MODELS.names())
    assert rows["linear"]["parameters"] == 64 * 10
    assert rows["logreg"]["parameters"] == 64 * 10 + 10
    assert rows["mlp"]["parameters"] == (64 * 256 + 256) + (256 * 256 + 256) + (256 * 10 + 10)
    assert rows["resnet18"]["fits"] is False and "resnet18" in rows["resnet18"]["reason"]
    assert rows["linear"]["convex"] and rows["logreg"]["convex"] and not rows["mlp"]["convex"]
    assert rows["cnn"]["options"]["channels"] == (32, 64)
    plain = model_info()
    assert all("fits" not in r for r in plain)


@pytest.mark.parametrize("name,shape", FITS[::2])
def test_build_on_meta_has_the_real_models_tensors_and_no_memory(
    name: str, shape: tuple[int, ...]
) -> None:
    spec = spec_of(build_model(name, shape, 5, seed=0))
    real = build_from_spec(spec).state_dict()
    meta = build_on_meta(spec, max_tensors=len(real)).state_dict()
    assert {k: (v.shape, v.dtype) for k, v in meta.items()} == {
        k: (v.shape, v.dtype) for k, v in real.items()
    }
    assert all(v.is_meta for v in meta.values())


def test_build_on_meta_stops_a_build_with_more_tensors_than_allowed() -> None:
    deep = ModelSpec(name="mlp", input_shape=(6,), num_outputs=3, seed=0, options={"depth": 10**6})
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="more than 76 parameter and buffer tensors"):
        build_on_meta(deep, max_tensors=6)  # 2 * 10**6 + 2 tensors if built
    assert time.perf_counter() - start < 1.0
    ok = ModelSpec(name="mlp", input_shape=(6,), num_outputs=3, seed=0, options={"depth": 40})
    assert len(build_on_meta(ok).state_dict()) == 82  # the hooks were removed
    assert len(build_model("mlp", (6,), 3, seed=0, depth=40).state_dict()) == 82
