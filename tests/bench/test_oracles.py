"""Oracle pools, KLoM / pool U-LiRA per row, reference replacement, per-seed train seeds.

One tiny benchmark (digits, 32-unit MLP, 3 epochs, FT, 2 seeds, a 6-member pool) with a
deliberately broken first attempt of seed 1's Original (lr 1e4, which diverges) is run once
per module; the tests read its store.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _bench_helpers import db_rows, tiny_config

from unlearnkit import api as uk
from unlearnkit.artifacts import load_model
from unlearnkit.bench import parse_experiment, run_benchmark
from unlearnkit.bench.context import make_context
from unlearnkit.bench.oracle_audit import (
    _calibration,
    hanley_mcneil_se,
    klom_summary,
    null_klom,
    pool_ulira,
    prediction_upper,
)
from unlearnkit.bench.oracle_report import verdict_text
from unlearnkit.bench.oracles import klom_key, oracles_key
from unlearnkit.bench.splits import read_split
from unlearnkit.bench.vetting import REPLACEMENT_STRIDE, chance_accuracy
from unlearnkit.data.base import ArrayDataset
from unlearnkit.data.plan import DataPlan
from unlearnkit.errors import ConfigError
from unlearnkit.jobs.members import BatchTrainJob, TrainJob
from unlearnkit.jobs.pools import WorkerContext
from unlearnkit.jobs.store import Store
from unlearnkit.metrics.klom import klom

BROKEN = {"seed": 1, "role": "original", "training": {"lr": 1.0e4}}


def _config(**extra: Any) -> dict[str, Any]:
    return tiny_config(
        methods=["ft"],
        search={"trials": 0},
        metrics=["accuracy"],
        oracles={"size": 6, "chunk": 4},
        references={"inject": [BROKEN]},
        **extra,
    )


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    root = tmp_path_factory.mktemp("oracles")
    exp = parse_experiment(_config())
    summary = run_benchmark(exp, root, show_progress=False)
    assert summary.failed == 0
    return root, exp


def test_pool_members_trained_batched_and_cached(bench: tuple[Path, Any]) -> None:
    root, exp = bench
    with Store(root, create=False) as store:
        ctx = make_context(exp, root, store)
        d, m = ctx.settings()[0]
        params = store.params(oracles_key(ctx, d, m))
        metrics = store.metrics(oracles_key(ctx, d, m))
    assert metrics["retrain.size"] == 6 and metrics["original.size"] == 6
    assert params["retrain"]["seeds"] == list(range(1000, 1006))
    assert params["retrain"]["trainers"] == ["train_many"]
    # every member is a run of the store (the job system), and a file of the pool cache
    members = [r for r in db_rows(root, "oracles").values() if r["method"]]
    assert sorted({r["method"] for r in members}) == ["oracle-original", "oracle-retrain"]
    assert len(list(Path(params["retrain"]["folder"]).glob("m*.safetensors"))) == 6
    # a second invocation runs nothing
    again = run_benchmark(exp, root, show_progress=False, report=False)
    assert sum(again.ran.values()) == 0


def test_pool_member_equals_one_by_one_training(bench: tuple[Path, Any], tmp_path: Path) -> None:
    """Member 0 of the retrain pool (train_many) against TrainJob.run (training.train)."""
    root, exp = bench
    with Store(root, create=False) as store:
        ctx = make_context(exp, root, store)
        d, m = ctx.settings()[0]
        params = store.params(oracles_key(ctx, d, m))
        split = read_split(str(root / f"splits/{ctx.split_key(d, 0)}"))
    pooled, manifest = load_model(Path(params["retrain"]["folder"]) / "m0000")
    recipe = {**exp.recipe_for(d), "device": "cpu"}
    job = TrainJob(
        tmp_path, 0, "k", "mlp", {"width": 32}, recipe, split.retain.ids.numpy(), 1000, 1123
    )
    assert manifest["train_seed"] == exp.train_seed_for(1000)
    job.run(WorkerContext(split.train, split.val, split.test))
    alone = job.load()
    for a, b in zip(pooled.state_dict().values(), alone.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


def test_batchnorm_members_fall_back_to_one_by_one(tmp_path: Path) -> None:
    data = DataPlan("digits").materialise()
    pop = data.train
    ids = pop.ids.numpy()[:200]
    recipe = {"name": "sgd", "epochs": 1, "batch_size": 64, "device": "cpu"}
    jobs = [
        TrainJob(tmp_path, k, "k", "cnn", {"channels": [4], "batchnorm": True}, recipe, ids, k, k)
        for k in range(2)
    ]
    BatchTrainJob(tmp_path, 0, jobs).run(WorkerContext(pop, None, data.test))
    for j in jobs:
        info = j.manifest()
        assert j.done() and "trainer" not in info and info["test_accuracy"] is not None


def test_broken_reference_is_replaced_and_reported(bench: tuple[Path, Any]) -> None:
    root, exp = bench
    with Store(root, create=False) as store:
        ctx = make_context(exp, root, store)
        d, m = ctx.settings()[0]
        broken = store.params(ctx.train_key(d, m, 1, "original"))
        fine = store.params(ctx.train_key(d, m, 1, "retrain"))
        acc = store.metrics(ctx.train_key(d, m, 1, "original"))["test_accuracy"]
    (attempt,) = broken["replaced"]
    assert attempt["attempt"] == 0 and attempt["train_seed"] == 124
    assert "diverged" in attempt["reason"] or "below" in attempt["reason"]
    assert broken["train_seed"] == 124 + REPLACEMENT_STRIDE
    assert acc >= broken["threshold"] > 0.1  # digits: chance 0.1 (balanced), threshold 0.19
    assert fine["replaced"] == [] and fine["train_seed"] == 124
    report = (root / "report.md").read_text()
    assert "Reference models that did not train" in report
    line = next(ln for ln in report.splitlines() if "| original | 1 | 0 | 124 |" in ln)
    assert f"train seed {124 + REPLACEMENT_STRIDE}" in line


def test_each_seed_trains_with_its_own_seed(bench: tuple[Path, Any]) -> None:
    """Seed s's Retrain = uk.train(init_s, retain, recipe, train_seed + s): rebuilt here."""
    root, exp = bench
    with Store(root, create=False) as store:
        ctx = make_context(exp, root, store)
        d, m = ctx.settings()[0]
        keys = {s: ctx.train_key(d, m, s, "retrain") for s in exp.seeds}
        seeds = {s: store.params(k)["train_seed"] for s, k in keys.items()}
        split = read_split(str(root / f"splits/{ctx.split_key(d, 0)}"))
        init, _ = load_model(root / f"models/{ctx.init_key(d, m, 1)}")
    assert seeds == {0: 123, 1: 124} and keys[0] != keys[1]
    again = uk.train(init, split, exp.recipe_for(d), 124, on="retain").model
    stored, _ = load_model(root / f"models/{keys[1]}")
    for a, b in zip(again.state_dict().values(), stored.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_klom_rows_and_calibration_are_stored(bench: tuple[Path, Any]) -> None:
    root, exp = bench
    with Store(root, create=False) as store:
        ctx = make_context(exp, root, store)
        d, m = ctx.settings()[0]
        rows = {r: store.metrics(klom_key(ctx, d, m, r)) for r in ctx.rows()}
    assert set(rows) == {"original", "retrain", "ft"}
    for vals in rows.values():
        for part in ("forget", "retain", "val"):
            assert 0 <= vals[f"{part}.klom_mean"] <= math.log(1e5) + 1e-9  # eps floor bound
            assert vals[f"{part}.klom_mean_lo"] <= vals[f"{part}.klom_mean"]
        assert 0.0 <= vals["ulira.auc"] <= 1.0
    cal = rows["retrain"]
    assert {"calibration.klom_pass", "calibration.ulira_pass"} <= set(cal)
    assert "null.forget.klom_mean_upper" in cal and "nothing.forget.klom_mean" in cal
    report = (root / "report.md").read_text()
    assert "KLoM and U-LiRA against the oracle pool" in report
    assert "Calibration:" in report


# ----------------------------------------------------------------------------- statistics


def test_prediction_upper_and_hanley_mcneil_hand_values() -> None:
    # x = 1, 2, 3: mean 2, s = 1, t_{0.975, 2} = 4.302653; upper = 2 + 4.302653·√(4/3)
    assert prediction_upper([1.0, 2.0, 3.0]) == pytest.approx(2 + 4.302653 * math.sqrt(4 / 3))
    assert math.isnan(prediction_upper([1.0]))
    # AUC 0.5: Q1 = Q2 = 1/3, var = (1/4 + 9·1/12 + 9·1/12) / 100
    assert hanley_mcneil_se(0.5, 10, 10) == pytest.approx(math.sqrt((0.25 + 1.5) / 100))


def test_pool_ulira_is_chance_for_retrains_and_detects_a_shift() -> None:
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(40, 300))
    same = pool_ulira(rng.normal(size=(3, 300)), pool)
    assert abs(same["auc"] - 0.5) < 3 * same["auc_se"] + 0.02
    shifted = pool_ulira(rng.normal(4.0, 1.0, size=(3, 300)), pool)
    assert shifted["auc"] > 0.97 and min(shifted["per_seed"]) > 0.97


def test_calibration_fails_for_a_shifted_retrain_row() -> None:
    rng = np.random.default_rng(1)
    pools = {"retrain.forget": rng.normal(size=(12, 100))}
    good = {"forget": rng.normal(size=(2, 100))}
    bad = {"forget": rng.normal(6.0, 1.0, size=(2, 100))}
    for rows, expect in ((good, 1.0), (bad, 0.0)):
        row: dict[str, float] = {}
        for k, v in klom_summary(klom(rows["forget"], pools["retrain.forget"])).items():
            row[f"forget.{k}"] = v
        ul = pool_ulira(rows["forget"], pools["retrain.forget"])
        per = np.asarray(ul["per_seed"])
        half = 12.706205 * per.std(ddof=1) / math.sqrt(2)  # t_{0.975, 1}
        row.update(
            {
                "ulira.auc": ul["auc"],
                "ulira.auc_se": ul["auc_se"],
                "ulira.auc_seed_lo": max(per.mean() - half, 0.0),
                "ulira.auc_seed_hi": min(per.mean() + half, 1.0),
            }
        )
        out = _calibration(rows, pools, 20, row)
        assert out["calibration.klom_pass"] == expect
        assert out["calibration.ulira_pass"] == expect
        assert ("MISCALIBRATED" in verdict_text(out)) == (expect == 0.0)
    assert len(null_klom(pools["retrain.forget"], 2, 20)) == 6


def test_chance_accuracy_is_the_best_constant_predictor() -> None:
    y = torch.tensor([0, 0, 0, 1, 2, 2])
    data = ArrayDataset("t", torch.zeros(6, 2), y, torch.arange(6), "multiclass", tuple("abcd"))
    assert chance_accuracy(data) == pytest.approx(0.5)  # max(1/4, 3/6)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"oracles": {"size": 4, "seed": 0}}, "overlap the benchmark seeds"),
        ({"oracles": {"size": 4}, "vary_forget": True}, "vary_forget"),
        ({"references": {"inject": [{**BROKEN, "seed": 7}]}}, "not a benchmark seed"),
        ({"references": {"inject": [{**BROKEN, "training": {"lr": -1}}]}}, "inject.0.training"),
    ],
)
def test_bad_oracle_and_reference_settings(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_experiment(tiny_config(**extra))
