import math
from pathlib import Path

import pytest

from unlearnkit.errors import StateMismatchError
from unlearnkit.jobs.store import RunResult, Store


def test_attempts_status_and_values_roundtrip(tmp_path: Path):
    with Store(tmp_path) as s:
        labels = {"dataset": "d", "model": "m", "method": "ft", "seed": 3}
        s.start("k1", "unlearn", labels)
        assert s.status("k1") == "running"
        s.mark(["k1"], "interrupted")
        s.start("k1", "unlearn", labels)
        s.finish(
            RunResult(
                "k1",
                params={"config": {"lr": 0.1}},
                metrics={"RA": 0.5, "bad": float("nan"), "big": float("inf")},
                timings={"unlearn": 1.25},
                artifact="models/k1",
                env={"device": "cpu"},
                started=123.0,  # the worker's own start, later than the submission
            )
        )
        row = s.run("k1")
        assert row is not None
        assert (row.status, row.attempts, row.method, row.seed) == ("done", 2, "ft", 3)
        assert row.started == 123.0 and row.finished > row.started
        assert s.params("k1") == {"config": {"lr": 0.1}}
        m = s.metrics("k1")
        assert m["RA"] == 0.5 and math.isnan(m["bad"]) and m["big"] == math.inf
        assert s.timings("k1") == {"unlearn": 1.25}
        assert s.environment(row.env) == {"device": "cpu"}
        assert s.statuses(["k1", "nope"]) == {"k1": "done"}
        assert s.counts() == {("unlearn", "done"): 1}


def test_finish_needs_a_started_run_and_results_survive_reopening(tmp_path: Path):
    with Store(tmp_path) as s:
        with pytest.raises(StateMismatchError, match="never started"):
            s.finish(RunResult("ghost"))
        s.start("a", "split", {})
        s.finish(RunResult("a", metrics={"x": 1.0}))
        s.record_experiment({"name": "first"})
        s.record_experiment({"name": "second"})
    with Store(tmp_path, create=False) as s:
        assert s.status("a") == "done" and s.metrics("a") == {"x": 1.0}
        assert s.latest_experiment() == {"name": "second"}


def test_opening_a_directory_without_results_is_an_error(tmp_path: Path):
    with pytest.raises(StateMismatchError, match="no benchmark results"):
        Store(tmp_path / "empty", create=False)
