"""mnist-attributes: attribute counts/frequencies, variation within a class, and the feature
definitions checked on hand-made images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearnkit.data import load_dataset
from unlearnkit.data.attributes import (
    ATTRIBUTES,
    DIGIT_ATTRIBUTES,
    attribute_matrix,
    image_features,
)


@pytest.fixture(scope="module")
def pair():
    return load_dataset("mnist-attributes"), load_dataset("mnist5k")


def test_shape_ids_and_frequencies(pair):
    ds, base = pair
    assert ds.task == "multilabel" and ds.classes == tuple(ATTRIBUTES)
    assert ds.y.shape == (5000, len(ATTRIBUTES)) and ds.y.dtype == torch.float32
    assert set(torch.unique(ds.y).tolist()) == {0.0, 1.0}
    assert torch.equal(ds.ids, base.ids) and torch.equal(ds.x, base.x)
    freq = ds.y.mean(0)
    assert len(ds.classes) >= 16
    assert int((freq <= 0.2).sum()) >= 8
    assert bool((freq > 0).all())
    # quantile attributes hit their quantile: 750 of 5000 images exactly (no ties)
    for name in ("ink_heavy", "slant_right", "thin_stroke", "symmetric_tb"):
        assert int(ds.y[:, ds.classes.index(name)].sum()) == 750
    assert torch.equal(ds.y, load_dataset("mnist-attributes").y)


def test_attributes_vary_within_digit_classes(pair):
    ds, base = pair
    for j, name in enumerate(ds.classes):
        mixed = [d for d in range(10) if 0 < float(ds.y[base.y == d, j].mean()) < 1]
        if name in DIGIT_ATTRIBUTES:
            assert mixed == []
        elif name == "two_holes":
            assert 8 in mixed
        else:
            assert len(mixed) >= 5, name


def test_digit_attributes_are_digit_sets(pair):
    ds, base = pair
    even = ds.y[:, ds.classes.index("is_even")].bool()
    assert torch.equal(even, base.y % 2 == 0)
    round_ = ds.y[:, ds.classes.index("round_digit")].bool()
    assert torch.equal(round_, torch.isin(base.y, torch.tensor([0, 6, 8, 9])))


def canvas() -> np.ndarray:
    return np.zeros((1, 28, 28), dtype=np.float32)


def test_moment_features_by_hand():
    two = canvas()
    two[0, 10, 14] = two[0, 14, 10] = 1.0  # top-right and bottom-left: leans right
    f = image_features(two)
    assert f["ink"][0] == 2.0
    assert f["spread_x"][0] == pytest.approx(2.0) and f["spread_y"][0] == pytest.approx(2.0)
    assert f["slant"][0] == pytest.approx(1.0)  # -mu11/mu02 = 4/4
    # rows 10 | 14 and columns 14 | 10 fall one in each half (halves are r < 14, c < 14)
    assert f["top_share"][0] == pytest.approx(0.5) and f["left_share"][0] == pytest.approx(0.5)
    two[0, 10, 14], two[0, 10, 10] = 0.0, 1.0  # vertical pair: no slant
    assert image_features(two)["slant"][0] == pytest.approx(0.0)


def test_thickness_by_hand():
    block = canvas()
    block[0, 10:13, 10:13] = 1.0  # 3x3: eight pixels at distance 1, the centre at 2
    assert image_features(block)["thickness"][0] == pytest.approx(2 * 10 / 9)


def test_symmetry_by_hand():
    sym = canvas()
    sym[0, 5:20, 12] = sym[0, 5:20, 15] = 1.0  # mirror pair about column 13.5
    assert image_features(sym)["symmetry_lr"][0] == pytest.approx(1.0)
    row = canvas()
    row[0, 5, 10:13] = [1.0, 1.0, 0.5]  # cx = 10.8, k = 22: mirror (0.5, 1, 1) on cols 10..12
    assert image_features(row)["symmetry_lr"][0] == pytest.approx(2.0 / 3.0)
    assert image_features(row)["symmetry_tb"][0] == pytest.approx(1.0)


def test_holes_by_hand():
    ring = canvas()
    ring[0, 5:10, 5:10] = 1.0
    ring[0, 6:9, 6:9] = 0.0  # a 3x3 hole
    eight = canvas()
    eight[0, 5:14, 5:10] = 1.0
    eight[0, 6:9, 6:9] = eight[0, 10:13, 6:9] = 0.0  # two 3x3 holes
    tiny = canvas()
    tiny[0, 5:8, 5:8] = 1.0
    tiny[0, 6, 6] = 0.0  # a 1-pixel hole is below MIN_HOLE_PIXELS
    open_ring = ring.copy()
    open_ring[0, 7, 9] = 0.0  # a gap joins the hole to the outside
    diagonal = canvas()
    diagonal[0, 5:10, 5:10] = 1.0
    diagonal[0, 6:9, 6:9] = 0.0
    diagonal[0, 9, 9] = 0.0  # only diagonal to the hole: background is 4-connected, no leak
    images = np.concatenate([ring, eight, tiny, open_ring, diagonal])
    assert image_features(images)["holes"].tolist() == [1, 2, 0, 0, 1]


def test_attribute_matrix_quantile_rule():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(40, 28, 28)).astype(np.float32) * (rng.uniform(size=(40, 1, 1)) > 0)
    digit = np.arange(40) % 10
    m = attribute_matrix(x, digit)
    ink = x.astype(np.float64).sum(axis=(1, 2))
    col = list(ATTRIBUTES).index("ink_heavy")
    np.testing.assert_array_equal(m[:, col], ink > np.quantile(ink, 0.85))
    assert m[:, col].sum() == 6  # 40 distinct values: exactly the top 6
    np.testing.assert_array_equal(m[:, list(ATTRIBUTES).index("is_seven")], digit == 7)
