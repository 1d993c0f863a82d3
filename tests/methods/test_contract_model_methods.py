"""Contract tests of the model-structure methods: CF-k, EU-k, FCS, MSG, CFW, PRMQ, CT, KDE, RNI."""

from __future__ import annotations

import pytest
import torch
from tiny_resnet_fixtures import TinyMLP, data, model, one_thread, state  # noqa: F401
from torch import nn

from unlearnkit.errors import UnsupportedError
from unlearnkit.methods import METHODS
from unlearnkit.methods.toolkit.search_space import nest_params

FAST: dict[str, dict] = {
    "cfk": {"num_epochs": 1, "batch_size": 8},
    "euk": {"num_epochs": 1, "batch_size": 8},
    "fcs": {"num_epochs": 1, "batch_size": 8},
    "msg": {"num_epochs": 1, "batch_size": 8},
    "cfw": {"num_epochs": 2, "batch_size": 8},
    "prmq": {"num_epochs": 0.5, "batch_size": 8},
    "ct": {"num_epochs": 1, "batch_size": 8},
    "kde": {"num_epochs": 1, "retain_num_epochs": 1, "batch_size": 8},
    "rni": {"num_epochs": 3, "fine_num_epochs": 1, "num_random_tensors": 3, "batch_size": 8},
}

# Deep Unlearn's defaults of the model-structure methods.
DEFAULTS: dict[str, dict] = {
    "cfk": dict(
        num_epochs=10,
        batch_size=256,
        num_blocks=1,
        learning_rate=0.01,
        sgda_decay_rate=0.1,
        sgda_weight_decay=0.1,
    ),
    "euk": dict(
        num_epochs=10,
        batch_size=256,
        num_blocks=1,
        learning_rate=0.01,
        sgda_decay_rate=0.1,
        sgda_weight_decay=0.1,
        faithful=False,
    ),
    "fcs": dict(
        num_epochs=8,
        batch_size=256,
        temperature=1.15,
        eta_min=1e-6,
        learning_rate=5e-3,
        momentum=0.9,
        weight_decay=0.0,
        retain_optimizer=dict(learning_rate=1e-3, momentum=0.9, weight_decay=1e-2),
        forget_optimizer=dict(learning_rate=3e-4, momentum=0.9, weight_decay=0.0),
    ),
    "msg": dict(
        num_epochs=5,
        batch_size=64,
        init_rate=0.3,
        learning_rate=1e-3,
        momentum=0.9,
        weight_decay=5e-4,
        subset_batch_size=64,
        faithful=False,
    ),
    "cfw": dict(
        num_epochs=4,
        batch_size=64,
        learning_rate=7e-4,
        momentum=0.9,
        weight_decay=5e-4,
        start_confuser_std=0.6,
        final_confuser_std=0.005,
        faithful=False,
    ),
    "prmq": dict(
        num_epochs=3.2,
        batch_size=64,
        learning_rate=5e-4,
        momentum=0.9,
        weight_decay=5e-4,
        prune_amount=0.99,
    ),
    "ct": dict(num_epochs=3, batch_size=64, learning_rate=1e-3, momentum=0.9, weight_decay=5e-4),
    "kde": dict(
        num_epochs=3,
        learning_rate=9e-4,
        momentum=0.9,
        weight_decay=5e-4,
        retain_num_epochs=3,
        temperature=5.0,
        batch_size=64,
        retain_optimizer=dict(learning_rate=1e-3, momentum=0.9, weight_decay=5e-4),
    ),
    "rni": dict(
        num_epochs=9,
        fine_num_epochs=4,
        reset_num_epochs=1,
        learning_rate=2e-4,
        momentum=0.9,
        weight_decay=5e-4,
        noise_ratio=0.7,
        origin_noise=0.04,
        batch_size=64,
        num_random_tensors=9,
        faithful=False,
        fine_optimizer=dict(
            learning_rate=[2e-4, 2e-4, 2e-4, 1e-3, 1e-3, 1e-4], momentum=0.9, weight_decay=5e-4
        ),
    ),
}

NAMES = sorted(FAST)


def test_all_registered() -> None:
    assert set(NAMES) <= set(METHODS.names())


@pytest.mark.parametrize("name", NAMES)
def test_defaults_follow_spec(name: str) -> None:
    cfg = METHODS.get(name).Config().model_dump()
    for key, want in DEFAULTS[name].items():
        assert cfg[key] == want, (name, key)


@pytest.mark.parametrize("name", NAMES)
def test_search_space_builds_valid_configs(name: str) -> None:
    method = METHODS.get(name)()
    space = method.search_space()
    for pick in ("low", "high"):
        flat = {}
        for key, dist in space.items():
            if hasattr(dist, "choices"):
                flat[key] = dist.choices[0 if pick == "low" else -1]
            else:
                flat[key] = getattr(dist, pick)
        if name == "fcs" and pick == "low":
            flat["temperature"] = 1e-3  # TEMP's 0 is refused (τ must be > 0)
        if name == "kde" and pick == "low":
            flat["temperature"] = 1e-3
        cfg = method.Config(**nest_params(flat))
        assert cfg is not None
    assert "batch_size" in space and "num_epochs" in space


@pytest.mark.parametrize("name", NAMES)
def test_input_unchanged_and_seed_deterministic(name: str) -> None:
    d = data()
    m = model()
    before = state(m)
    method = METHODS.get(name)()
    a = method.unlearn(m, d, FAST[name], seed=5).model
    b = method.unlearn(m, d, FAST[name], seed=5).model
    c = method.unlearn(m, d, FAST[name], seed=6).model
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    assert all(p.requires_grad for p in a.parameters())
    assert all(not p._backward_hooks for p in a.parameters() if p._backward_hooks is not None)
    assert list(dict(a.named_parameters())) == list(dict(m.named_parameters()))


class NamedHead(nn.Module):
    """A classifier head called ``out`` (found without being named); ``width`` outputs."""

    def __init__(self, width: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 3, 3, padding=1)
        self.out = nn.Linear(3, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv1(x).mean(dim=(2, 3)))


class WrongWidthHead(NamedHead):
    """The only Linear has 5 outputs while the data has 3 classes: no classifier head."""

    def __init__(self) -> None:
        super().__init__(width=5)


class NonSquare(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 3, (3, 1), padding=(1, 0))
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv1(x).mean(dim=(2, 3)))


UNSUPPORTED = [
    ("ct", TinyMLP),
    ("ct", NonSquare),
    ("msg", TinyMLP),
    ("cfw", TinyMLP),
    ("cfk", WrongWidthHead),
    ("euk", WrongWidthHead),
    ("kde", WrongWidthHead),
    ("rni", WrongWidthHead),
]


@pytest.mark.parametrize(("name", "factory"), UNSUPPORTED)
def test_unsupported_model_fails_before_work(name: str, factory: type[nn.Module]) -> None:
    m = factory()
    before = state(m)
    with pytest.raises(UnsupportedError):
        METHODS.get(name)().unlearn(m, data(), FAST[name])
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())


def test_multilabel_data_refused() -> None:
    d = data()
    ml = type(d.retain)(
        "ml", d.retain.x, torch.zeros(len(d.retain), 3), d.retain.ids, "multilabel", ("a", "b", "c")
    )
    with pytest.raises(UnsupportedError):
        METHODS.get("ct")().unlearn(model(), type(d)(ml, d.forget, d.val), FAST["ct"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_runs_on_cuda_like_cpu(name: str) -> None:
    d = data()
    method = METHODS.get(name)()
    out = method.unlearn(model(), d, FAST[name], seed=3, device="cuda").model
    assert next(out.parameters()).device.type == "cuda"
    ref = method.unlearn(model(), d, FAST[name], seed=3).model.state_dict()
    for k, v in out.state_dict().items():
        assert torch.allclose(v.cpu().double(), ref[k].double(), atol=1e-3, rtol=1e-3), (name, k)


@pytest.mark.parametrize("name", ["cfk", "euk", "kde", "rni"])
def test_head_methods_find_a_head_of_any_name(name: str) -> None:
    m = NamedHead()
    out = METHODS.get(name)().unlearn(m, data(), FAST[name]).model
    assert not torch.equal(out.out.weight, m.out.weight)
    named = METHODS.get(name)().unlearn(m, data(), FAST[name], head="out").model
    assert torch.equal(named.out.weight, out.out.weight)
