"""Per-sample and grouped gradients against a loop of single-sample backward passes."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from unlearnkit.curvature import (
    PAD_ID,
    ParamLayout,
    grouped_gradients,
    make_groups,
    per_sample_gradients,
)
from unlearnkit.errors import (
    ConfigError,
    DataError,
    MemoryBudgetError,
    NumericalError,
    UnknownIdsError,
    UnsupportedError,
)


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))


def _cnn2d() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 3 * 3, 3))


def _cnn1d() -> nn.Module:
    return nn.Sequential(nn.Conv1d(2, 2, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(12, 3))


def _bn() -> nn.Module:
    m = nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(27, 3)
    )
    bn = m[1]
    bn.running_mean.copy_(torch.tensor([0.3, -0.2, 0.5]))  # eval != batch statistics
    bn.running_var.copy_(torch.tensor([0.5, 2.0, 1.5]))
    return m


MODELS = {
    "mlp": (_mlp, (5,)),
    "cnn2d": (_cnn2d, (2, 5, 5)),
    "cnn1d": (_cnn1d, (2, 6)),
    "bn": (_bn, (2, 5, 5)),
}


def _make(name: str, n: int, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    factory, shape = MODELS[name]
    model = factory().eval()
    return model, torch.randn(n, *shape), torch.randint(0, 3, (n,))


def _loop_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, multilabel: bool = False):
    """Reference: one backward pass per sample (micro-batches of 1), flattened."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(x.shape[0]):
        out = model(x[i : i + 1])
        if multilabel:
            loss = nn.functional.binary_cross_entropy_with_logits(
                out, y[i : i + 1], reduction="sum"
            )
        else:
            loss = nn.functional.cross_entropy(out, y[i : i + 1])
        grads = torch.autograd.grad(loss, params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


@settings(max_examples=10, deadline=None)
@given(
    name=st.sampled_from(sorted(MODELS)),
    n=st.integers(1, 6),
    chunk=st.integers(1, 4),
)
def test_per_sample_equals_loop(name: str, n: int, chunk: int) -> None:
    model, x, y = _make(name, n)
    gm = per_sample_gradients(model, x, y, "multiclass", chunk_size=chunk)
    ref = _loop_grads(model, x, y)
    assert gm.G.shape == (n, ParamLayout.from_model(model).d)
    assert gm.G.dtype == torch.float32
    torch.testing.assert_close(gm.G, ref, atol=1e-5, rtol=1e-5)
    assert gm.row_ids.tolist() == list(range(n))
    assert gm.normalizer == n


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_kind_matches_loop(name: str) -> None:
    model, x, y = _make(name, 4, seed=1)
    torch.testing.assert_close(
        per_sample_gradients(model, x, y, "multiclass").G,
        _loop_grads(model, x, y),
        atol=1e-5,
        rtol=1e-5,
    )


def test_multilabel_task_and_custom_loss() -> None:
    model, x, _ = _make("mlp", 5)
    y = (torch.rand(5, 3) < 0.5).float()
    ref = _loop_grads(model, x, y, multilabel=True)
    torch.testing.assert_close(
        per_sample_gradients(model, x, y, "multilabel").G, ref, atol=1e-5, rtol=1e-5
    )

    def loss(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(z, t, reduction="sum")

    torch.testing.assert_close(per_sample_gradients(model, x, y, loss).G, ref, atol=1e-5, rtol=1e-5)


def test_frozen_params_skipped_and_buffers_used() -> None:
    model, x, y = _make("bn", 3)
    model[0].bias.requires_grad_(False)
    gm = per_sample_gradients(model, x, y, "multiclass")
    assert "0.bias" not in gm.layout.names
    torch.testing.assert_close(gm.G, _loop_grads(model, x, y), atol=1e-5, rtol=1e-5)


def test_model_untouched_and_no_grad_written() -> None:
    model, x, y = _make("bn", 4)
    before = copy.deepcopy(model.state_dict())
    per_sample_gradients(model, x, y, "multiclass", device="cpu", storage_device="cpu")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.grad is None for p in model.parameters())
    assert not model.training


def test_train_mode_is_refused_and_left_alone() -> None:
    model, x, y = _make("bn", 3)
    model.train()
    with pytest.raises(ConfigError, match="eval"):
        per_sample_gradients(model, x, y, "multiclass")
    assert model.training and model[1].training


def test_nan_input_names_the_sample_ids() -> None:
    model, x, y = _make("mlp", 6)
    x[4, 2] = float("nan")
    ids = torch.tensor([10, 11, 12, 13, 14, 15])
    with pytest.raises(NumericalError, match=r"\[14\]"):
        per_sample_gradients(model, x, y, "multiclass", ids=ids, chunk_size=2)
    with pytest.raises(NumericalError, match="14"):
        grouped_gradients(model, x, y, "multiclass", ids=ids, group_size=3)


def test_bad_inputs() -> None:
    model, x, y = _make("mlp", 4)
    with pytest.raises(DataError):
        per_sample_gradients(model, x, y[:3], "multiclass")
    with pytest.raises(DataError):
        per_sample_gradients(model, x, y, "multiclass", ids=torch.tensor([1, 1, 2, 3]))
    with pytest.raises(ConfigError):
        per_sample_gradients(model, x, y, "regression")
    with pytest.raises(ConfigError):
        grouped_gradients(model, x, y, "multiclass", group_size=0)
    with pytest.raises(MemoryBudgetError):
        per_sample_gradients(model, x, y, "multiclass", max_bytes=10)


def test_max_bytes_chunking_gives_same_rows() -> None:
    model, x, y = _make("cnn1d", 7)
    a = per_sample_gradients(model, x, y, "multiclass")
    b = per_sample_gradients(model, x, y, "multiclass", max_bytes=20_000)  # a few per chunk
    torch.testing.assert_close(a.G, b.G, atol=1e-6, rtol=1e-6)


@settings(max_examples=6, deadline=None)
@given(n=st.integers(1, 11), g=st.integers(1, 4), chunk=st.integers(1, 3), seed=st.integers(0, 9))
def test_grouped_is_mean_of_members(n: int, g: int, chunk: int, seed: int) -> None:
    model, x, y = _make("cnn2d", n)
    ids = torch.arange(n) * 3 + 100
    gm = grouped_gradients(
        model, x, y, "multiclass", group_size=g, seed=seed, ids=ids, chunk_size=chunk
    )
    ref = _loop_grads(model, x, y)
    n_groups = -(-n // g)
    assert gm.G.shape[0] == n_groups == gm.normalizer
    # every id exactly once; only the last group may be smaller; padding marked
    real = gm.group_members[gm.member_mask]
    assert sorted(real.tolist()) == ids.tolist()
    assert gm.group_sizes[:-1].eq(g).all() and int(gm.group_sizes[-1]) == n - (n_groups - 1) * g
    assert gm.group_members[~gm.member_mask].eq(PAD_ID).all()
    pos = {int(i): k for k, i in enumerate(ids)}
    for b in range(n_groups):
        members = [pos[int(i)] for i in gm.group_members[b, : gm.group_sizes[b]]]
        torch.testing.assert_close(gm.G[b], ref[members].mean(0), atol=1e-5, rtol=1e-5)


def test_group_membership_is_seeded_and_recorded() -> None:
    model, x, y = _make("mlp", 10)
    a = grouped_gradients(model, x, y, "multiclass", group_size=3, seed=7)
    b = grouped_gradients(model, x, y, "multiclass", group_size=3, seed=7, chunk_size=1)
    c = grouped_gradients(model, x, y, "multiclass", group_size=3, seed=8)
    assert torch.equal(a.group_members, b.group_members)
    torch.testing.assert_close(a.G, b.G, atol=1e-6, rtol=1e-6)
    assert not torch.equal(a.group_members, c.group_members)
    pos, sizes = make_groups(10, 3, 7)
    assert torch.equal(pos.clamp(min=-1), a.group_members)  # ids default to positions
    assert sizes.tolist() == [3, 3, 3, 1]
    # lookups: which group/rows hold which ids
    g5 = int(a.groups_of([5])[0])
    assert 5 in a.group_members[g5].tolist()
    assert a.rows_of([5]).tolist() == [g5]
    with pytest.raises(UnknownIdsError):
        a.rows_of([99])
    with pytest.raises(ConfigError):
        _ = a.row_ids
    assert a.row_members.shape == (4, 3)


def test_hooks_backend_matches_func() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2, bias=False)).eval()
    x, y = torch.randn(7, 4), torch.randint(0, 2, (7,))
    for g in (1, 3):
        f = grouped_gradients(model, x, y, "multiclass", group_size=g, backend="func")
        h = grouped_gradients(
            model, x, y, "multiclass", group_size=g, backend="hooks", chunk_size=2
        )
        torch.testing.assert_close(h.G, f.G, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(
        per_sample_gradients(model, x, y, "multiclass", backend="hooks").G,
        _loop_grads(model, x, y),
        atol=1e-5,
        rtol=1e-5,
    )


def test_hooks_backend_sequence_inputs_and_refusal() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Flatten(), nn.Linear(8, 3)).eval()
    x, y = torch.randn(5, 2, 3), torch.randint(0, 3, (5,))  # Linear applied per position
    f = per_sample_gradients(model, x, y, "multiclass")
    h = per_sample_gradients(model, x, y, "multiclass", backend="hooks")
    torch.testing.assert_close(h.G, f.G, atol=1e-6, rtol=1e-6)
    conv, xc, yc = _make("cnn1d", 2)
    with pytest.raises(UnsupportedError, match="Linear"):
        per_sample_gradients(conv, xc, yc, "multiclass", backend="hooks")


def test_layout_roundtrip() -> None:
    model, _, _ = _make("bn", 1)
    layout = ParamLayout.from_model(model)
    vec = torch.randn(2, layout.d)
    back = layout.flatten(layout.unflatten(vec), batch_dims=1)
    assert torch.equal(back, vec)
    flat = layout.flatten(dict(model.named_parameters()))
    assert flat.numel() == sum(p.numel() for p in model.parameters())
    w = layout.slice_of("4.weight")
    assert torch.equal(flat[w], model[4].weight.reshape(-1))


def test_float64_compute() -> None:
    model, x, y = _make("mlp", 3)
    gm = per_sample_gradients(
        model, x, y, "multiclass", compute_dtype=torch.float64, out_dtype=torch.float64
    )
    ref = _loop_grads(model.double(), x.double(), y)
    torch.testing.assert_close(gm.G, ref, atol=1e-12, rtol=1e-12)
