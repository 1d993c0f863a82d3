"""Parameter blocks partition the flat parameter vector exactly and mean what they say."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from unlearnkit.curvature.blocks import (
    BLOCK_STRATEGIES,
    Block,
    check_partition,
    make_blocks,
)
from unlearnkit.curvature.layout import ParamLayout
from unlearnkit.errors import ConfigError, UnsupportedError


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 5), nn.Linear(5, 4)
    )


def _flat(model: nn.Module) -> torch.Tensor:
    return ParamLayout.from_model(model).flatten(
        {n: p.detach() for n, p in model.named_parameters()}
    )


def test_registry_names() -> None:
    assert BLOCK_STRATEGIES.names() == ["chunks", "full", "per_layer", "per_output_head"]
    with pytest.raises(ConfigError, match="unknown block strategy"):
        make_blocks("diagonal", _net())


@settings(max_examples=15, deadline=None)
@given(
    strategy=st.sampled_from(["full", "per_layer", "chunks", "per_output_head"]),
    size=st.integers(1, 40),
    by=st.sampled_from(["tensor", "module"]),
    bias=st.booleans(),
    frozen=st.booleans(),
)
def test_every_strategy_partitions(
    strategy: str, size: int, by: str, bias: bool, frozen: bool
) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 6, bias=bias))
    if frozen:
        model[0].bias.requires_grad_(False)
    kw = {"chunks": {"size": size, "by": by}, "per_layer": {"by": by}}.get(strategy, {})
    blocks = make_blocks(strategy, model, **kw)
    d = ParamLayout.from_model(model).d
    check_partition(blocks, d)  # make_blocks checks too; be explicit
    assert sum(b.size for b in blocks) == d
    assert sorted(torch.cat([b.indices() for b in blocks]).tolist()) == list(range(d))
    assert len({b.name for b in blocks}) == len(blocks)


def test_per_output_head_linear_no_bias_is_weight_rows() -> None:
    torch.manual_seed(1)
    model = nn.Linear(7, 40, bias=False)  # SSSE's 40-attribute linear model
    blocks = make_blocks("per_output_head", model)
    assert len(blocks) == 40
    flat = _flat(model)
    for k, b in enumerate(blocks):
        assert isinstance(b.index, slice) and b.size == 7
        assert torch.equal(b.take(flat), model.weight[k].detach())


def test_per_output_head_with_bias_and_rest() -> None:
    model = _net()
    blocks = make_blocks("per_output_head", model)
    flat = _flat(model)
    head = model[4]
    for k in range(4):
        got = blocks[k].take(flat)
        want = torch.cat([head.weight[k].detach(), head.bias[k : k + 1].detach()])
        assert torch.equal(got, want)
    # rest partitioned per tensor: conv w/b, bn w/b, linear w/b
    assert [b.name for b in blocks[4:]] == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "3.weight",
        "3.bias",
    ]
    rest_full = make_blocks("per_output_head", model, rest="full")
    assert len(rest_full) == 5 and rest_full[-1].name == "rest"
    named = make_blocks("per_output_head", model, head="3")
    assert len(named) == 5 + 6  # 5 head units of layer "3", then the other 6 tensors


def test_per_output_head_needs_final_linear() -> None:
    model = nn.Sequential(
        nn.Linear(4, 6), nn.Flatten(), nn.Unflatten(1, (1, 6)), nn.Conv1d(1, 2, 3)
    )
    with pytest.raises(UnsupportedError, match="nn.Linear"):
        make_blocks("per_output_head", model)
    with pytest.raises(ConfigError):
        make_blocks("per_output_head", model, head="nope")


def test_per_layer_by_module_merges_weight_and_bias() -> None:
    model = _net()
    blocks = make_blocks("per_layer", model, by="module")
    assert [b.name for b in blocks] == ["0", "1", "3", "4"]
    flat = _flat(model)
    conv = model[0]
    want = torch.cat([conv.weight.detach().reshape(-1), conv.bias.detach()])
    assert torch.equal(blocks[0].take(flat), want)
    assert len(make_blocks("per_layer", model)) == 8


def test_chunks_are_fixed_size_within_layers() -> None:
    model = _net()  # conv weight 54, conv bias 3, bn 3+3, lin 60+5, lin 20+4
    blocks = make_blocks("chunks", model, size=25)
    sizes = {b.name: b.size for b in blocks}
    assert [sizes[f"0.weight#{j}"] for j in range(3)] == [25, 25, 4]
    assert sizes["0.bias#0"] == 3
    assert [sizes[f"3.weight#{j}"] for j in range(3)] == [25, 25, 10]
    assert all(isinstance(b.index, slice) for b in blocks)
    with pytest.raises(ConfigError):
        make_blocks("chunks", model, size=0)


def test_check_partition_detects_gaps_and_overlaps() -> None:
    with pytest.raises(ConfigError, match="1 missing"):
        check_partition([Block("a", slice(0, 3)), Block("b", slice(4, 6))], 6)
    with pytest.raises(ConfigError, match="1 repeated"):
        check_partition([Block("a", slice(0, 4)), Block("b", torch.tensor([3, 4, 5]))], 6)
    with pytest.raises(ConfigError, match="outside"):
        check_partition([Block("a", slice(0, 7))], 6)
    check_partition([Block("a", torch.tensor([0, 2, 4])), Block("b", torch.tensor([5, 3, 1]))], 6)


def test_block_take_on_matrices() -> None:
    g = torch.arange(12.0).reshape(2, 6)
    assert torch.equal(Block("s", slice(1, 3)).take(g), g[:, 1:3])
    assert torch.equal(Block("t", torch.tensor([5, 0])).take(g), g[:, [5, 0]])
