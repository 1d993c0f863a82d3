"""Forget selectors: exact sets, exact counts, determinism, parsing and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import TypeAdapter

from unlearnkit.data import load_dataset
from unlearnkit.data.forget import (
    FORGET_SELECTORS,
    AnyForgetSpec,
    ClassForget,
    ClassFractionForget,
    ForgetSplit,
    RandomForget,
    make_forget_spec,
    parse_forget_spec,
    select_forget,
)
from unlearnkit.errors import ConfigError, DataError, UnknownIdsError


def check_partition(split: ForgetSplit, ds) -> tuple[set[int], set[int]]:
    """Sorted int64, disjoint, union = the dataset's ids."""
    for ids in (split.retain_ids, split.forget_ids):
        assert ids.dtype == torch.int64
        assert torch.equal(ids, torch.sort(ids).values)
    retain, forget = set(split.retain_ids.tolist()), set(split.forget_ids.tolist())
    assert not retain & forget
    assert retain | forget == set(ds.ids.tolist())
    assert len(retain) + len(forget) == len(ds)
    return retain, forget


def ids_of_class(ds, c: int) -> set[int]:
    return set(ds.ids[ds.y == c].tolist())


def test_registry_has_every_kind():
    assert FORGET_SELECTORS.names() == [
        "attribute_fraction",
        "class",
        "class_fraction",
        "ids",
        "memorised",
        "random",
    ]


@pytest.mark.parametrize(("fraction", "expected"), [(0.1, 4), (0.25, 10), (0.5, 20), (1.0, 40)])
def test_random_exact_count(toy, fraction, expected):
    split = select_forget(toy, f"random:{fraction}", seed=3)
    _, forget = check_partition(split, toy)
    assert len(forget) == expected == round(fraction * 40)


def test_rounding_is_half_to_even(make_toy):
    ds = make_toy((10,))  # 10 samples
    assert len(select_forget(ds, "random:0.25").forget_ids) == 2  # round(2.5) == 2
    assert len(select_forget(ds, "random:0.35").forget_ids) == 4  # round(3.5) == 4
    with pytest.raises(DataError, match="selects no sample"):
        select_forget(ds, "random:0.04")  # round(0.4) == 0


def test_random_deterministic_and_seed_dependent(toy, permute):
    a = select_forget(toy, "random:0.3", seed=11)
    b = select_forget(toy, "random:0.3", seed=11)
    c = select_forget(toy, "random:0.3", seed=12)
    d = select_forget(permute(toy), "random:0.3", seed=11)  # row order does not matter
    assert torch.equal(a.forget_ids, b.forget_ids)
    assert torch.equal(a.forget_ids, d.forget_ids)
    assert not torch.equal(a.forget_ids, c.forget_ids)


def test_random_matches_documented_draw(toy):
    pool = np.sort(toy.ids.numpy())
    picked = np.random.default_rng(4).choice(len(pool), size=6, replace=False)
    split = select_forget(toy, RandomForget(fraction=0.15), seed=4)
    assert split.forget_ids.tolist() == sorted(pool[picked].tolist())


@pytest.mark.parametrize("label", [1, "1", "c1"])
def test_whole_class(toy, label):
    split = ClassForget(label=label).select(toy)
    _, forget = check_partition(split, toy)
    assert forget == ids_of_class(toy, 1)
    assert len(forget) == 7


@pytest.mark.parametrize(("c", "fraction", "expected"), [(0, 0.5, 6), (2, 1 / 3, 7), (1, 1.0, 7)])
def test_class_fraction_exact_and_pure(toy, c, fraction, expected):
    split = select_forget(toy, {"kind": "class_fraction", "label": c, "fraction": fraction}, 2)
    _, forget = check_partition(split, toy)
    assert len(forget) == expected
    assert forget <= ids_of_class(toy, c)


def test_class_fraction_deterministic(toy):
    a = select_forget(toy, "class_fraction:2:0.5", seed=0)
    b = select_forget(toy, "class_fraction:c2:0.5", seed=0)
    assert torch.equal(a.forget_ids, b.forget_ids)


def test_attribute_fraction(toyml):
    have = set(toyml.ids[toyml.y[:, 0] == 1].tolist())  # 10 samples
    split = select_forget(toyml, "attribute_fraction:rare:0.5", seed=1)
    _, forget = check_partition(split, toyml)
    assert len(forget) == 5 and forget <= have
    by_index = select_forget(toyml, "attribute_fraction:0:0.5", seed=1)
    assert torch.equal(by_index.forget_ids, split.forget_ids)
    with pytest.raises(DataError, match="has attribute 'absent'"):
        select_forget(toyml, "attribute_fraction:absent:0.5")
    with pytest.raises(DataError, match="unknown attribute"):
        select_forget(toyml, "attribute_fraction:nope:0.5")


def test_attribute_fraction_on_mnist_attributes():
    ds = load_dataset("mnist-attributes")
    col = ds.classes.index("slant_right")
    n_a = int(ds.y[:, col].sum())
    split = select_forget(ds, "attribute_fraction:slant_right:0.25", seed=0)
    _, forget = check_partition(split, ds)
    assert len(forget) == round(0.25 * n_a)
    assert bool((ds.subset(split.forget_ids).y[:, col] == 1).all())


def test_ids_exact_and_unknown(toy, tmp_path):
    split = select_forget(toy, "ids:17,7, 397")
    _, forget = check_partition(split, toy)
    assert forget == {7, 17, 397}
    assert split.forget(toy).ids.tolist() == [7, 17, 397]
    assert len(split.retain(toy)) == 37
    f = tmp_path / "ids.txt"
    f.write_text("# erase these\n7\n17, 27  # trailing comment\n")
    assert select_forget(toy, f"ids:@{f}").forget_ids.tolist() == [7, 17, 27]
    with pytest.raises(UnknownIdsError, match="8"):
        select_forget(toy, "ids:7,8")


def test_id_files_that_are_not_small_regular_text_are_refused_unread(toy, tmp_path):
    binary = tmp_path / "ids.bin"
    binary.write_bytes(bytes(range(256)))
    cases = {"/dev/zero": "not a regular file", str(tmp_path): "not a regular file",
             str(tmp_path / "missing"): "does not exist", str(binary): "not UTF-8"}  # fmt: skip
    for path, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            select_forget(toy, f"ids:@{path}")


def test_selector_errors(toy, toyml):
    with pytest.raises(DataError, match="multi-label"):
        select_forget(toyml, "class:0")
    with pytest.raises(DataError, match="needs attributes"):
        select_forget(toy, "attribute_fraction:c0:0.5")
    with pytest.raises(DataError, match="out of range"):
        select_forget(toy, "class:3")
    with pytest.raises(DataError, match="unknown class"):
        select_forget(toy, "class:dog")


@pytest.mark.parametrize(
    "text",
    [
        "random:0.1",
        "class:3",
        "class_fraction:3:0.5",
        "attribute_fraction:slant_right:0.25",
        "ids:1,2,3",
    ],
)
def test_parse_round_trip(text):
    spec = parse_forget_spec(text)
    assert spec.to_text() == text
    assert parse_forget_spec(spec.to_text()) == spec


@pytest.mark.parametrize(
    "text",
    [
        "random",
        "random:",
        "random:abc",
        "random:1.5",
        "random:0",
        "random:0.1:2",
        "class_fraction:3",
        "nope:1",
        "ids:",
        "ids:1,x",
        "ids:@/nonexistent/ids.txt",
        "ids:#",
    ],
)
def test_parse_rejects_malformed(text):
    with pytest.raises(ConfigError):
        parse_forget_spec(text)


def test_specs_from_config():
    spec = TypeAdapter(AnyForgetSpec).validate_python(
        {"kind": "class_fraction", "label": 3, "fraction": 0.5}
    )
    assert isinstance(spec, ClassFractionForget) and spec.label == 3 and spec.fraction == 0.5
    with pytest.raises(ConfigError, match="fraction"):
        make_forget_spec({"kind": "random", "fraction": 2})
    with pytest.raises(ConfigError, match="kind"):
        make_forget_spec({"fraction": 0.1})


def test_forget_split_validates():
    t = torch.tensor
    with pytest.raises(DataError, match="overlap"):
        ForgetSplit(t([1, 2]), t([2, 3]))
    with pytest.raises(DataError, match="sorted"):
        ForgetSplit(t([2, 1]), t([3]))
    with pytest.raises(DataError, match="int64"):
        ForgetSplit(t([1.0]), t([3]))
