"""The Ray executor (a private local instance on loopback) gives the local pool's metrics."""

from pathlib import Path

import pytest
from _bench_helpers import db_rows, eval_metrics, tiny_config

from unlearnkit.bench import Store, parse_experiment, run_benchmark

pytest.importorskip("ray")


def test_ray_and_local_executors_give_identical_metrics(tmp_path: Path):
    exp = parse_experiment(tiny_config(methods=["ft"]))
    local, remote = tmp_path / "local", tmp_path / "ray"
    run_benchmark(exp, local, executor="local", workers=2, show_progress=False, report=False)
    run_benchmark(exp, remote, executor="ray", workers=2, show_progress=False, report=False)
    a, b = eval_metrics(local), eval_metrics(remote)
    assert len(a) == 6 * 9  # (O, R, FT) x 2 seeds; RA FA VA TA nonfinite, 2 MIAs, 2 distances
    assert a == b  # same keys, bit-identical values
    rows_a, rows_b = db_rows(local), db_rows(remote)
    assert rows_a.keys() == rows_b.keys()
    assert all(r["status"] == "done" for r in rows_b.values())
    with Store(remote, create=False) as store:
        envs = store.environments()
    assert any("ray" in e["packages"] for e in envs)
    assert {r["worker"].split(":")[1] for r in rows_a.values() if r["stage"] == "train"} != {
        r["worker"].split(":")[1] for r in rows_b.values() if r["stage"] == "train"
    }
