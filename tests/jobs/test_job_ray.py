"""Pool members on the Ray executor (a private local instance on loopback) match inline ones."""

from pathlib import Path

import numpy as np
import pytest

from unlearnkit.data import load_dataset
from unlearnkit.io import model_fingerprint
from unlearnkit.jobs.executors import make_executor
from unlearnkit.jobs.members import TrainJob
from unlearnkit.jobs.pools import WorkerContext, run_pool

pytest.importorskip("ray")


def test_pool_members_on_ray_match_inline(tmp_path: Path) -> None:
    pop = load_dataset("digits").subset(np.arange(120))
    recipe = {"name": "sgd", "epochs": 1, "batch_size": 16, "device": "cpu"}

    def jobs(folder: Path) -> list[TrainJob]:
        return [
            TrainJob(folder, k, "pool-r", "logreg", {}, recipe, np.arange(k, 120, 2), k, k)
            for k in range(2)
        ]

    local = run_pool("w", jobs(tmp_path / "a"), WorkerContext(pop))
    with make_executor("ray", workers=2) as ex:
        remote = run_pool("w", jobs(tmp_path / "b"), WorkerContext(pop), executor=ex)
    assert (local.trained, remote.trained) == (2, 2)
    for a, b in zip(jobs(tmp_path / "a"), jobs(tmp_path / "b"), strict=True):
        assert model_fingerprint(a.load()) == model_fingerprint(b.load())
