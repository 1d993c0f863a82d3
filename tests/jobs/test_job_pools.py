"""Pool members are jobs of the one job system: any executor, tracked in a store, resumable."""

from pathlib import Path

import numpy as np
import pytest

from unlearnkit.data import load_dataset
from unlearnkit.errors import UnsupportedError
from unlearnkit.io import model_fingerprint
from unlearnkit.jobs.executors import make_executor
from unlearnkit.jobs.members import TrainJob, UnlearnJob
from unlearnkit.jobs.pools import JobTracking, WorkerContext, run_member, run_pool
from unlearnkit.jobs.store import Store


@pytest.fixture(scope="module")
def pop():
    return load_dataset("digits").subset(np.arange(120))


def _jobs(folder: Path) -> list[TrainJob]:
    recipe = {"name": "sgd", "epochs": 1, "batch_size": 16, "device": "cpu"}
    return [
        TrainJob(folder, k, "pool-x", "logreg", {}, recipe, np.arange(k, 120, 2), k, k)
        for k in range(2)
    ]


def test_members_are_tracked_runs_and_a_rerun_starts_none(tmp_path: Path, pop) -> None:
    jobs = _jobs(tmp_path / "pool")
    with Store(tmp_path) as store:
        tracking = JobTracking(store, "ulira", {"dataset": "digits", "model": "logreg"})
        report = run_pool("original", jobs, WorkerContext(pop), tracking=tracking)
        assert (report.trained, report.reused) == (2, 0)
        for job in jobs:
            row = store.run(job.key)
            assert row is not None and (row.stage, row.status, row.attempts) == ("ulira", "done", 1)
            assert (row.method, row.seed, row.dataset) == ("original", job.index, "digits")
            inputs = store.params(job.key)["inputs"]
            assert inputs["train_seed"] == job.index and inputs["device"] == "cpu"
            assert store.timings(job.key)["member"] > 0
            assert store.environment(row.env)["device"] == "cpu"
        again = run_pool("original", jobs, WorkerContext(pop), tracking=tracking)
        assert (again.trained, again.reused) == (0, 2)
        assert all(store.run(j.key).attempts == 1 for j in jobs)  # type: ignore[union-attr]


def test_local_process_pool_with_shared_population_matches_inline(tmp_path: Path, pop) -> None:
    ctx = WorkerContext(pop)
    inline = [run_member(j, ctx) for j in _jobs(tmp_path / "a")]
    with make_executor("local", workers=2) as ex:
        spawned = sorted(ex.run(_jobs(tmp_path / "b"), run_member, ctx), key=lambda r: r.key)
    assert [r.key for r in spawned] == sorted(r.key for r in inline)
    assert {r.status for r in spawned} == {"done"}
    assert {r.worker for r in spawned}.isdisjoint({r.worker for r in inline})
    for a, b in zip(_jobs(tmp_path / "a"), _jobs(tmp_path / "b"), strict=True):
        assert model_fingerprint(a.load()) == model_fingerprint(b.load())


def test_an_unsupported_method_is_recorded_and_raised(tmp_path: Path, pop) -> None:
    original = _jobs(tmp_path / "o")[0]
    run_pool("original", [original], WorkerContext(pop))
    job = UnlearnJob(
        tmp_path / "u", 0, original, "ct", {}, 0, np.arange(0, 100), np.arange(100, 120)
    )
    with Store(tmp_path) as store:
        with pytest.raises(UnsupportedError):
            run_pool("ct", [job], WorkerContext(pop), tracking=JobTracking(store, "ulira"))
        assert store.status(job.key) == "unsupported"
    assert not job.done()
