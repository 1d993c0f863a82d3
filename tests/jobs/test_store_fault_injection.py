"""Fault injection for the bench results store (issue 12).

A sequence of runs is written as the bench writes it (:func:`run_sequence`): record the
experiment; per run, skip it when finished, else ``start`` → save its artifact into the store's
folder (:func:`unlearnkit.artifacts.save_model`) → ``finish`` with params, metrics, timings and
environment. A driver process imports everything once and forks one process per kill point;
that process dies with ``os._exit(9)`` (no rollback, no ``finally``) at the N-th write step of
one kind: a SQLite ``COMMIT`` (just before it is sent, so that transaction is lost), an
``os.replace`` or an ``os.fsync`` of the artifact writer. Every N is tried until the sequence
completes.

After each kill the store reopens intact and every run is finished with all its params,
metrics, timings, environment and an artifact that loads, verifies and holds its weights — or
not finished (``running`` or absent); never ``done`` with anything missing. Re-running the
sequence (finished runs skipped) gives the uninterrupted run's params and metrics for every
run, leaves the runs finished before the kill untouched (``attempts == 1``, same finish time)
and no temporaries in the artifact folder.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from unlearnkit.artifacts import load_model, save_model
from unlearnkit.jobs.store import FINISHED, RunResult, Store
from unlearnkit.models import build_model

SRC = Path(__file__).resolve().parents[2] / "src"
HERE = Path(__file__).resolve().parent
KEYS = ("run-a", "run-b", "run-c")
STEPS = ("commit", "replace", "fsync")


def model_for(i: int) -> torch.nn.Module:
    return build_model("mlp", (4,), 3, i)


def expected(i: int) -> tuple[dict[str, Any], dict[str, float], dict[str, float]]:
    """(params, metrics, timings) of run ``i``: facts of its model, known without the store."""
    model = model_for(i)
    total = sum(float(p.detach().double().sum()) for p in model.parameters())
    n = sum(p.numel() for p in model.parameters())
    params = {"config": {"model": "mlp", "seed": i}, "n_params": n}
    return params, {"weight_sum": total, "n_params": float(n)}, {"train": 0.25 * (i + 1)}


def run_sequence(root: Path) -> None:
    """The bench's write order; runs already finished are skipped, as the bench skips them."""
    with Store(root) as s:
        s.record_experiment({"name": "fault-injection", "runs": list(KEYS)})
        for i, key in enumerate(KEYS):
            if s.status(key) in FINISHED:
                continue
            s.start(key, "train", {"dataset": "toy", "model": "mlp", "method": None, "seed": i})
            save_model(root / "models" / key, model_for(i))  # on disk before the run is done
            params, metrics, timings = expected(i)
            s.finish(RunResult(key, params=params, metrics=metrics, timings=timings,
                               artifact=f"models/{key}", env={"device": "cpu"}))  # fmt: skip


DRIVER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, sys.argv[1])
    import test_store_fault_injection as t
    from unlearnkit.jobs.store import Store
    base, steps = Path(sys.argv[2]), sys.argv[3].split(",")

    class Conn:  # the store's connection, dying just before the N-th COMMIT
        def __init__(self, conn, tick):
            self._conn, self._tick = conn, tick
        def execute(self, sql, *args):
            if sql.strip().upper() == "COMMIT":
                self._tick()
            return self._conn.execute(sql, *args)
        def __getattr__(self, name):
            return getattr(self._conn, name)

    rcs = {}
    for step in steps:
        for n in range(1, 40):
            pid = os.fork()
            if pid == 0:
                calls = [0]
                def tick():
                    calls[0] += 1
                    if calls[0] == n:
                        os._exit(9)
                if step == "commit":
                    init = Store.__init__
                    def hooked(self, *a, **k):
                        init(self, *a, **k)
                        self._conn = Conn(self._conn, tick)
                    Store.__init__ = hooked
                else:
                    real = getattr(os, step)
                    def f(*a, **k):
                        tick()
                        return real(*a, **k)
                    setattr(os, step, f)
                t.run_sequence(base / f"{step}{n}")
                os._exit(0)
            rc = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            rcs.setdefault(step, []).append(rc)
            if rc != 9:
                break
    print(json.dumps(rcs))
    """
)


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[int]]]:
    d = tmp_path_factory.mktemp("store")
    env = {"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-c", DRIVER, str(HERE), str(d), ",".join(STEPS)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return d, json.loads(p.stdout.strip().splitlines()[-1])


def check_runs(root: Path) -> dict[str, tuple[str | None, int, float | None]]:
    """Every run finished and complete, or not finished; returns key -> (status, attempts,
    finish time)."""
    seen = {}
    with Store(root, create=False) as s:
        assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        if s.runs():  # the experiment is recorded before any run starts
            assert s.latest_experiment()["runs"] == list(KEYS)
        for i, key in enumerate(KEYS):
            row = s.run(key)
            if row is None:
                seen[key] = (None, 0, None)
                continue
            assert row.status in ("running", "done"), (key, row)
            if row.status == "done":
                params, metrics, timings = expected(i)
                assert s.params(key) == params, key
                got = s.metrics(key)
                assert got.keys() == metrics.keys()
                assert all(math.isclose(got[k], metrics[k], rel_tol=0, abs_tol=0) for k in got)
                assert s.timings(key) == timings, key
                assert s.environment(row.env or "") == {"device": "cpu"}
                model, _ = load_model(root / (row.artifact or "missing"))  # loads and verifies
                want = model_for(i).state_dict()
                assert all(torch.equal(model.state_dict()[k], want[k]) for k in want), key
            else:
                assert not s.params(key) and not s.metrics(key) and not s.timings(key), key
            seen[key] = (row.status, row.attempts, row.finished)
    return seen


@pytest.mark.parametrize("step", STEPS)
def test_store_killed_at_every_write_step_keeps_finished_runs(tmp_path, killed, step) -> None:
    d, rcs = killed
    ref = tmp_path / "ref"
    run_sequence(ref)  # the uninterrupted run
    assert all(v[:2] == ("done", 1) for v in check_runs(ref).values())
    codes = rcs[step]
    assert codes[-1] == 0 and set(codes[:-1]) == {9}, codes  # killed, …, killed, completed
    assert all(v[:2] == ("done", 1) for v in check_runs(d / f"{step}{len(codes)}").values())
    finished_before = []
    for n in range(1, len(codes)):
        root = d / f"{step}{n}"
        if not (root / "results.db").exists():  # killed before the store was created
            before = {k: (None, 0, None) for k in KEYS}
        else:
            before = check_runs(root)
        finished_before.append(sum(v[0] == "done" for v in before.values()))
        run_sequence(root)  # the re-run skips what is finished
        after = check_runs(root)
        for key in KEYS:
            status, attempts, finished = before[key]
            if status == "done":  # untouched
                assert after[key] == before[key], (n, key)
            else:
                assert after[key][:2] == ("done", attempts + 1), (n, key, before, after)
        with Store(root) as s, Store(ref) as r:
            for key in KEYS:
                assert s.params(key) == r.params(key) and s.metrics(key) == r.metrics(key)
        assert not list((root / "models").glob(".*.tmp")), sorted((root / "models").iterdir())
    # write steps of the sequence: COMMITs: the experiment, then per run start, environment,
    # finish (10); per artifact 2 replaces (weights, manifest) and its fsyncs
    assert len(codes) - 1 >= {"commit": 10, "replace": 6, "fsync": 3}[step]
    # the kills fell before, between and after finished runs: 0 … 2 of 3 finished
    assert set(finished_before) == {0, 1, 2}
