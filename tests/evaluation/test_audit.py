"""U-LiRA end to end: split schemes, the held-out attack, cached pools, known answers.

Known answers:
* the attack on identical IN/OUT distributions gives AUC ≈ balanced accuracy ≈ 0.5, and on
  Gaussians shifted by d standard deviations AUC ≈ Φ(d/√2), balanced accuracy ≈ Φ(d/2)
  (the likelihood-ratio test between N(±d/2, 1));
* the Deep Unlearn split scheme equals a direct transcription of its ``default_rng`` recipe;
* on digits with an MLP and 8 shadows: Retrain attacked as a method sits at chance, the
  Original is clearly detected (thresholds loose, but a broken pipeline, e.g. shuffled
  membership, would fail them);
* a second audit on the same cache trains nothing (trainings counted), and a crash mid-pool
  loses only the member being trained.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from safetensors.torch import load_file
from scipy.stats import norm

import unlearnkit.training as training
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.evaluation.audit import AuditConfig, Auditor
from unlearnkit.evaluation.audit_attack import AttackData, per_example_summary, run_attack
from unlearnkit.evaluation.audit_report import plot_curve, results_table, write_audit_results
from unlearnkit.evaluation.audit_splits import SchemeOptions, deepunlearn_plan, hayes_plan
from unlearnkit.jobs.keys import content_key
from unlearnkit.jobs.members import TrainJob
from unlearnkit.jobs.pools import WorkerContext, run_pool
from unlearnkit.metrics.roc import tpr_at_fpr

TINY = {
    "dataset": "digits",
    "model": "mlp",
    "model_options": {"width": 32, "depth": 1},
    "recipe": {"name": "sgd", "epochs": 8, "batch_size": 32, "lr": 0.05},
    "target_fraction": 0.2,
}


# ----------------------------------------------------------------------------- split schemes


def test_hayes_plan_random_halves_forget_their_targets() -> None:
    pop = np.arange(100, 300)
    plan = hayes_plan(pop, SchemeOptions(shadows=6, seed=3, target_fraction=0.25))
    assert plan.targets.size == 50 and np.isin(plan.targets, pop).all()
    for s, r in zip(plan.splits, plan.runs, strict=True):
        assert s.train_ids.size == 100 and np.unique(s.train_ids).size == 100
        assert np.array_equal(r.forget_ids, np.intersect1d(s.train_ids, plan.targets))
        assert (s.init_seed, s.train_seed) == (3 + s.index, 3 + s.index)
    m = plan.masks()
    assert not (m["forgotten"] & m["unseen"]).any()
    assert not m["retained"].any()  # every target is either forgotten or unseen
    # a larger pool keeps the first splits: cached members stay valid when K grows
    bigger = hayes_plan(pop, SchemeOptions(shadows=9, seed=3, target_fraction=0.25))
    for a, b in zip(plan.splits, bigger.splits[:6], strict=True):
        assert np.array_equal(a.train_ids, b.train_ids)


def test_deepunlearn_plan_matches_their_default_rng_recipe() -> None:
    pop = np.arange(40)
    plan = deepunlearn_plan(pop, SchemeOptions(shadows=3, forget_sets=2, forget_fraction=0.1))
    assert len(plan.splits) == 3 and len(plan.runs) == 6
    assert np.array_equal(plan.targets, pop)
    for s in range(3):
        perm = np.random.default_rng(s).permutation(40)
        inside = perm[:20]
        assert np.array_equal(plan.splits[s].train_ids, np.sort(inside))
        assert (plan.splits[s].init_seed, plan.splits[s].train_seed) == (0, 123)
        for f in range(2):
            order = inside[np.random.default_rng(f).permutation(20)]
            run = plan.runs[2 * s + f]
            assert run.split == s
            assert np.array_equal(run.forget_ids, np.sort(order[-2:]))


def test_plans_reject_degenerate_sizes() -> None:
    with pytest.raises(ConfigError):
        hayes_plan(np.arange(10), SchemeOptions(shadows=2, target_fraction=0.05))
    with pytest.raises(ConfigError):
        deepunlearn_plan(np.arange(3), SchemeOptions(shadows=2))


# ----------------------------------------------------------------------------- the attack


def _synthetic(shift: float, out_source: str, shadows: int = 32, seed: int = 0) -> AttackData:
    """φ ~ N(μ_x, 1), plus ``shift`` when x was unlearned; masks from the hayes scheme."""
    plan = hayes_plan(np.arange(600), SchemeOptions(shadows, seed=seed, target_fraction=0.5))
    m = plan.masks()
    f, u = m["forgotten"], m["unseen"]
    rng = np.random.default_rng(seed)
    mu = rng.normal(0.0, 3.0, size=f.shape[1])
    s_unl = mu + rng.normal(size=f.shape) + shift * f
    groups = np.arange(shadows)
    if out_source == "unlearned":
        return AttackData(s_unl, f, u, f, u, groups)
    s_ret = mu + rng.normal(size=f.shape)
    z = np.zeros_like(f)
    return AttackData(
        np.vstack([s_unl, s_ret]),
        np.vstack([f, z]),
        np.vstack([z, f | u]),
        np.vstack([f, z]),
        np.vstack([z, u]),
        np.concatenate([groups, groups]),
    )


@pytest.mark.parametrize("out_source", ["retrain", "unlearned"])
def test_attack_identical_distributions_is_chance(out_source: str) -> None:
    o = run_attack(_synthetic(0.0, out_source))
    assert abs(o.metrics.auc - 0.5) < 0.03
    assert abs(o.metrics.balanced_accuracy - 0.5) < 0.03
    assert o.metrics.n_pos > 4000 and o.metrics.n_neg > 4000


@pytest.mark.parametrize("out_source", ["retrain", "unlearned"])
def test_attack_shifted_gaussians_reach_the_likelihood_ratio_optimum(out_source: str) -> None:
    d = 1.0
    o = run_attack(_synthetic(d, out_source))
    assert o.metrics.auc == pytest.approx(norm.cdf(d / np.sqrt(2)), abs=0.025)  # 0.760
    assert o.metrics.balanced_accuracy == pytest.approx(norm.cdf(d / 2), abs=0.025)  # 0.691
    assert not o.fit.per_example_variance  # ~16 models per side: global σ (LeakPro's rule)
    assert np.median(o.fit.sd_in) == pytest.approx(1.0, abs=0.1)
    pe = per_example_summary(o)
    assert np.nanmean(pe["mean_score_in"]) > 0 > np.nanmean(pe["mean_score_out"])
    assert (pe["n_in"] + pe["n_out"] == o.trials.sum(0)).all()


def test_attack_scores_only_held_out_rows_and_skips_unsupported() -> None:
    data = _synthetic(1.0, "unlearned", shadows=6, seed=1)
    o = run_attack(data)
    assert np.isnan(o.scores[~o.trials]).all() and np.isfinite(o.scores[o.trials]).all()
    # with 5 shadows per fold some targets have < 2 IN or < 2 OUT models: skipped, counted
    assert o.n_skipped > 0
    assert o.trials.sum() + o.n_skipped == (data.trial_in | data.trial_out).sum()
    with pytest.raises(DataError):
        run_attack(
            AttackData(
                data.stat, data.fit_in, data.fit_in, data.trial_in, data.trial_out, data.groups
            )
        )


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pools")


@pytest.fixture(scope="module")
def hayes_results(cache: Path) -> dict:
    auditor = Auditor(AuditConfig(shadows=8, **TINY), cache)
    return {
        m: auditor.audit(m, c)
        for m, c in [("original", None), ("retrain", None), ("ft", {"num_epochs": 1})]
    }


def test_retrain_is_at_chance_and_original_is_detected(hayes_results: dict) -> None:
    orig, ret = hayes_results["original"].outcome.metrics, hayes_results["retrain"].outcome.metrics
    assert orig.auc > 0.65 and orig.balanced_accuracy > 0.6
    assert abs(ret.auc - 0.5) < 0.08 and abs(ret.balanced_accuracy - 0.5) < 0.06
    assert orig.n_pos == ret.n_pos > 500 and orig.n_neg == ret.n_neg > 500
    # sanity of the shadow models themselves: originals fit their forget sets, retrain less
    assert (
        hayes_results["original"].accuracy["forget"] > hayes_results["retrain"].accuracy["forget"]
    )
    assert hayes_results["ft"].unlearn_seconds > 0


def test_second_audit_trains_nothing(
    cache: Path, hayes_results: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"train": 0, "unlearn": 0}
    real_train = training.train

    def counting_train(*a, **k):  # type: ignore[no-untyped-def]
        calls["train"] += 1
        return real_train(*a, **k)

    from unlearnkit.methods.base import Unlearner

    real_unlearn = Unlearner.unlearn

    def counting_unlearn(self, *a, **k):  # type: ignore[no-untyped-def]
        calls["unlearn"] += 1
        return real_unlearn(self, *a, **k)

    monkeypatch.setattr(training, "train", counting_train)
    monkeypatch.setattr(Unlearner, "unlearn", counting_unlearn)
    auditor = Auditor(AuditConfig(shadows=8, **TINY), cache)
    again = {m: auditor.audit(m, c) for m, c in [("retrain", None), ("ft", {"num_epochs": 1})]}
    assert calls == {"train": 0, "unlearn": 0}
    for r in again.values():
        assert all(p.trained == 0 and p.reused == p.total == 8 for p in r.pools)
    first = hayes_results["ft"].outcome
    assert np.array_equal(np.isnan(again["ft"].outcome.scores), np.isnan(first.scores))
    np.testing.assert_allclose(again["ft"].outcome.scores[first.trials], first.scores[first.trials])
    # growing the pool trains only the new splits
    bigger = Auditor(AuditConfig(shadows=9, **TINY), cache)
    rep = bigger.originals()
    assert (rep.trained, rep.reused) == (1, 8) and calls["train"] == 1


def test_crash_mid_pool_loses_only_the_member_being_trained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unlearnkit.data import load_dataset

    pop = load_dataset("digits").subset(np.arange(200))
    jobs = [
        TrainJob(
            tmp_path,
            k,
            content_key("p"),
            "logreg",
            {},
            {"name": "sgd", "epochs": 1},
            np.arange(k, 200, 2),
            k,
            k,
        )
        for k in range(3)
    ]
    real_run = TrainJob.run

    def crash_on_second(self: TrainJob, ctx: WorkerContext) -> float:
        if self.index == 1:
            raise KeyboardInterrupt("simulated crash")
        return real_run(self, ctx)

    monkeypatch.setattr(TrainJob, "run", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_pool("t", jobs, WorkerContext(pop))
    assert [j.done() for j in jobs] == [True, False, False]
    assert not list(tmp_path.glob("*.tmp"))
    monkeypatch.setattr(TrainJob, "run", real_run)
    report = run_pool("t", jobs, WorkerContext(pop))
    assert (report.trained, report.reused) == (2, 1)
    # a member whose recorded key differs (other data or recipe) is stale: trained again
    man = json.loads(jobs[0].manifest_path.read_text())
    man["job_key"] = "0" * 64
    jobs[0].manifest_path.write_text(json.dumps(man))
    assert run_pool("t", jobs, WorkerContext(pop)).trained == 1


def test_deepunlearn_mode_runs(cache: Path) -> None:
    cfg = AuditConfig(
        scheme="deepunlearn",
        shadows=4,
        forget_sets=2,
        forget_fraction=0.5,
        **{k: v for k, v in TINY.items() if k != "target_fraction"},
    )
    auditor = Auditor(cfg, cache)
    r = auditor.audit("original")
    s = r.summary()
    assert s["statistic"] == "correctness" and s["held_out"] is False
    assert s["out_source"] == "unlearned"
    assert len(auditor.plan.runs) == 8 and r.target_ids.size == auditor.population.ids.numel()
    assert 0.5 <= s["mean_membership_probability"] <= 1.0
    assert 0.0 <= s["metrics"]["auc"] <= 1.0 and s["metrics"]["n_pos"] > 0
    assert r.pools[0].total == 4  # one original per split, shared by its forget sets


def test_write_results_and_table(tmp_path: Path, hayes_results: dict) -> None:
    results = list(hayes_results.values())
    paths = write_audit_results(results, tmp_path, extra={"wall_seconds": 1.0})
    assert paths["roc"].exists() and (tmp_path / "roc.json").exists()
    table = results_table(results)
    assert table.count("\n| ") == 3 and "| original |" in table
    data = json.loads((tmp_path / "results.json").read_text())
    assert [d["method"] for d in data["results"]] == ["original", "retrain", "ft"]
    r = hayes_results["ft"]
    lines = (tmp_path / "ft" / "per_example.csv").read_text().splitlines()
    assert len(lines) == r.target_ids.size + 1 and lines[0].startswith("id,label,n_in")
    # the plotted curve is the ROC thinned to a log grid, exact at every grid point
    m = r.outcome.metrics
    grid, tpr_g = plot_curve(m.fpr, m.tpr, points=50)
    assert grid.size <= 51 and grid[0] == 0.0 and grid[-1] == 1.0
    for g, v in zip(grid, tpr_g, strict=True):
        assert v == tpr_at_fpr(m.fpr, m.tpr, g)
    t = load_file(str(tmp_path / "ft" / "scores.safetensors"))
    np.testing.assert_array_equal(t["target_ids"].numpy(), r.target_ids)
    np.testing.assert_array_equal(t["trials"].numpy().astype(bool), r.outcome.trials)


def test_bad_audit_requests(cache: Path, hayes_results: dict) -> None:
    with pytest.raises(ValidationError, match="unknown U-LiRA split scheme"):
        AuditConfig(scheme="nope")
    with pytest.raises(ValidationError, match="unknown U-LiRA statistic"):
        AuditConfig(statistic="nope")
    auditor = Auditor(AuditConfig(shadows=8, **TINY), cache)
    with pytest.raises(ConfigError):
        auditor.audit("original", {"epochs": 3})
    with pytest.raises(ConfigError):
        auditor.audit("no-such-method")
    with pytest.raises(ConfigError):
        auditor.audit("ft", {"no_such_option": 1})


def test_worker_processes_train_the_same_models_as_in_process(tmp_path: Path) -> None:
    from unlearnkit.data import load_dataset
    from unlearnkit.io import model_fingerprint

    pop = load_dataset("digits").subset(np.arange(120))

    def jobs(folder: Path) -> list[TrainJob]:
        return [
            TrainJob(
                folder,
                k,
                content_key("w"),
                "logreg",
                {},
                {"name": "sgd", "epochs": 1, "batch_size": 16},
                np.arange(k, 120, 2),
                k,
                k,
            )
            for k in range(2)
        ]

    # member 0 exists already; the one missing member is trained in a spawned process
    run_pool("w", jobs(tmp_path / "a")[:1], WorkerContext(pop))
    seen: list[tuple[str, int, int]] = []
    spawned = run_pool(
        "w", jobs(tmp_path / "a"), WorkerContext(pop), workers=2, progress=lambda *a: seen.append(a)
    )
    local = run_pool("w", jobs(tmp_path / "b"), WorkerContext(pop), workers=1)
    assert (spawned.trained, spawned.reused, local.trained) == (1, 1, 2)
    assert seen == [("w", 1, 2), ("w", 2, 2)]
    for a, b in zip(jobs(tmp_path / "a"), jobs(tmp_path / "b"), strict=True):
        assert model_fingerprint(a.load()) == model_fingerprint(b.load())
