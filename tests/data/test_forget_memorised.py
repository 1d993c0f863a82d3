"""The ``memorised`` forget selector and its cached pre-stage (known answer: the mislabelled
samples of a synthetic problem are the most memorised)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearnkit.data.arrays import build_dataset
from unlearnkit.data.forget import parse_forget_spec, select_forget
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.io import save_tensors
from unlearnkit.jobs.memorisation import MemorisationPool, halves, memorisation_pool

N, C, D = 120, 3, 20


def _blobs():
    """3 Gaussian classes separated in 2 of 20 dims; 6 samples get the next class's label."""
    rng = np.random.default_rng(0)
    y = np.arange(N) % C
    centres = np.zeros((C, D))
    centres[:, :2] = [[0, 4], [4, -2], [-4, -2]]
    x = centres[y] + rng.normal(size=(N, D))
    flip = np.arange(7, N, N // 6)[:6]
    y[flip] = (y[flip] + 1) % C
    ids = np.arange(N) * 3 + 5  # ids are not positions
    ds = build_dataset("blobs", x.astype(np.float32)[:, None, :], y, ids, "multiclass", "abc")
    return ds, np.sort(ids[flip])


POOL = MemorisationPool(
    models=8,
    options={"width": 64, "depth": 1},
    recipe={"name": "sgd", "epochs": 100, "batch_size": 32, "lr": 0.1, "weight_decay": 0.0},
)


@pytest.fixture(scope="module")
def pool_run(tmp_path_factory):
    ds, flipped = _blobs()
    cache = tmp_path_factory.mktemp("memo")
    return ds, flipped, cache, memorisation_pool(ds, POOL, cache)


def test_halves_are_complementary_pairs():
    inside = halves(11, 6, seed=3)
    assert inside.shape == (6, 11)
    assert (inside[0::2] ^ inside[1::2]).all()  # each pair partitions the samples
    assert (inside[0::2].sum(axis=1) == 5).all()
    assert (inside.sum(axis=0) == 3).all()  # IN for exactly half the models
    assert np.array_equal(inside, halves(11, 6, seed=3))


def test_pool_scores_mislabelled_highest_and_is_cached(pool_run):
    ds, flipped, cache, res = pool_run
    assert res.trained
    order = np.argsort(-res.scores, kind="stable")
    assert np.array_equal(np.sort(res.ids[order[:6]]), flipped)
    # mem = acc_in - acc_out with complementary halves: the flipped samples are right only
    # when trained on (IN models memorise them, OUT models predict the true class)
    assert res.scores[np.isin(res.ids, flipped)].min() > 0.5
    # hand-computed mem(i) from the stored statistic and inclusion matrix
    s, m = res.stat, res.inside
    ref = (s * m).sum(0) / m.sum(0) - (s * ~m).sum(0) / (~m).sum(0)
    np.testing.assert_allclose(res.scores, ref, rtol=0, atol=1e-12)
    again = memorisation_pool(ds, POOL, cache)  # content-keyed: read back, not retrained
    assert not again.trained and np.array_equal(again.scores, res.scores)
    other = memorisation_pool(ds.subset(ds.ids[:-3]), POOL.model_copy(update={"models": 2}), cache)
    assert other.trained and other.path != res.path  # other data or pool: another key


def test_selector_picks_the_mislabelled_from_a_score_file(pool_run, tmp_path):
    ds, flipped, _, res = pool_run
    path = tmp_path / "scores.safetensors"
    save_tensors(path, {"ids": torch.from_numpy(res.ids), "scores": torch.from_numpy(res.scores)})
    split = select_forget(ds, f"memorised:6:@{path}", seed=0)
    assert split.forget_ids.tolist() == flipped.tolist()
    assert len(split.retain_ids) == N - 6
    frac = select_forget(ds, f"memorised:0.05:@{path}", seed=1)  # round(0.05 * 120) = 6
    assert frac.forget_ids.tolist() == flipped.tolist()


def test_selector_default_pool_is_deterministic(tmp_path, monkeypatch):
    """The text form trains the default pool (seeded by the selection seed) into the cache."""
    ds, flipped = _blobs()
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path))
    small = ds.subset(ds.ids[:60])
    a = select_forget(small, "memorised:5", seed=2)
    folders = sorted(p.name for p in (tmp_path / "memorisation").iterdir())
    b = select_forget(small, "memorised:5", seed=2)  # from the cache
    assert torch.equal(a.forget_ids, b.forget_ids) and len(a.forget_ids) == 5
    assert sorted(p.name for p in (tmp_path / "memorisation").iterdir()) == folders
    select_forget(small, "memorised:5", seed=3)  # another seed: another pool
    assert len(list((tmp_path / "memorisation").iterdir())) == len(folders) + 1


def test_bad_specs_and_files(tmp_path):
    ds, _ = _blobs()
    for text in ("memorised:0", "memorised:1.5", "memorised:0.1:scores.st", "memorised:"):
        with pytest.raises(ConfigError):
            parse_forget_spec(text)
    assert parse_forget_spec("memorised:0.1").to_text() == "memorised:0.1"
    assert parse_forget_spec("memorised:7:@a.st").to_text() == "memorised:7:@a.st"
    with pytest.raises(DataError, match="does not exist"):
        select_forget(ds, f"memorised:3:@{tmp_path / 'none.st'}")
    part = tmp_path / "part.safetensors"
    save_tensors(part, {"ids": ds.ids[:10], "scores": torch.zeros(10, dtype=torch.float64)})
    with pytest.raises(DataError, match="no score for 110"):
        select_forget(ds, f"memorised:3:@{part}")
    with pytest.raises(DataError, match="selects 200 of 120"):
        select_forget(ds, f"memorised:200:@{part}")


def test_dataset_entry_forget_overrides_the_experiments():
    """A dataset entry's own ``forget`` (memorise preset) wins; without it, dumps (and so
    content keys) are as before the field existed."""
    from unlearnkit.bench.config import DatasetConfig
    from unlearnkit.bench.splits import make_split

    plain = DatasetConfig(name="digits")
    assert "forget" not in plain.model_dump(mode="json")
    own = DatasetConfig(name="digits", forget="class:3")
    split = make_split(own, "random:0.1", 0)
    assert set(split.forget.y.tolist()) == {3} and 3 not in set(split.retain.y.tolist())
    assert len(make_split(plain, "random:0.1", 0).forget) == round(0.1 * len(split.train))
    assert DatasetConfig.model_validate(own.model_dump(mode="json")) == own
