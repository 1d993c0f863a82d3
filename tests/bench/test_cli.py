"""``unlearnkit bench smoke --out DIR`` end to end: killed halfway, resumed, reported."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from _bench_helpers import db_rows
from optuna.trial import TrialState
from typer.testing import CliRunner

from unlearnkit.cli import app

CLI = [sys.executable, "-c", "from unlearnkit.cli import main; main()"]


def _done(out: Path) -> dict[str, dict]:
    if not (out / "results.db").exists():
        return {}
    try:
        rows = db_rows(out)
    except Exception:  # the database is being created
        return {}
    return {k: r for k, r in rows.items() if r["status"] == "done"}


#: runs of the smoke preset: split 1, init 2, train 4 (Original and Retrain x 2 seeds), oracle
#: pools 3, search 3, select 3, unlearn 6, evaluate 10, KLoM 5
SMOKE_RUNS = 37


def test_smoke_killed_halfway_resumes_without_redoing_finished_runs(tmp_path: Path):
    out = tmp_path / "smoke"
    cmd = [*CLI, "bench", "smoke", "--out", str(out)]
    proc = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    try:
        while len(_done(out)) < 5:  # split, 2 inits and at least 2 of the 4 trainings
            assert proc.poll() is None, "the benchmark ended before it could be killed"
            assert time.monotonic() < deadline, "no progress within 5 minutes"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, no clean-up
        proc.wait()
    before = _done(out)
    assert 5 <= len(before) < SMOKE_RUNS  # the kill left work undone

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "reused" in rerun.stdout
    after = db_rows(out)
    assert len(after) == SMOKE_RUNS and all(r["status"] == "done" for r in after.values())
    for key, row in before.items():  # finished runs were not recomputed
        assert after[key]["attempts"] == row["attempts"] == 1
        assert after[key]["finished"] == row["finished"]
    # every study holds exactly its budget of finished (COMPLETE or PRUNED) trials, even if
    # the kill hit one
    storage = f"sqlite:///{out / 'optuna.db'}"
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    for summary in optuna.get_all_study_summaries(storage):
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
        assert sum(t.state in finished for t in trials) == 4
        assert not any(t.state == TrialState.RUNNING for t in trials)

    assert (out / "results.db").is_file() and (out / "report.html").is_file()
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert pngs == ["accuracy_time.png", "convergence_0.png", "ranking.png"]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3

    # `unlearnkit report DIR` rewrites the report from the store alone
    (out / "report.html").unlink()
    res = CliRunner().invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "report.html").is_file() and (out / "report.md").is_file()


def test_cli_errors_are_clear(tmp_path: Path):
    runner = CliRunner()
    res = runner.invoke(app, ["bench", "nightly", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "neither a preset" in res.output
    res = runner.invoke(app, ["bench", "smoke", "--out", str(tmp_path), "--executor", "dask"])
    assert res.exit_code == 2 and "--executor" in res.output
    res = runner.invoke(app, ["report", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "no benchmark results" in res.output
