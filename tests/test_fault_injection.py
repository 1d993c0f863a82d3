"""Fault injection for ``save_model`` (issue 12): the write runs in a subprocess that dies
(``os._exit(9)``, no cleanup, no ``finally``) at the N-th call of a file-system step
(``os.replace``, ``os.unlink``/``Path.unlink``, ``os.fsync``), for every N until the save
completes. After each kill the artifact is either the old one (still loads and verifies),
absent, or the new one complete; a rerun then gives weights equal bit for bit to an
uninterrupted save, and leaves none of the killed writer's temporaries behind.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from unlearnkit.artifacts import load_model, save_model
from unlearnkit.models import build_model

SRC = Path(__file__).resolve().parents[1] / "src"

CHILD = textwrap.dedent(
    """
    import os, sys, pathlib, torch
    step, n, out, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    calls = [0]
    def hook(real):
        def f(*a, **k):
            calls[0] += 1
            if calls[0] == n:
                os._exit(9)
            return real(*a, **k)
        return f
    if step == "unlink":
        pathlib.Path.unlink = hook(pathlib.Path.unlink)
        os.unlink = hook(os.unlink)
    else:
        setattr(os, step, hook(getattr(os, step)))
    from unlearnkit.artifacts import save_model
    from unlearnkit.models import build_model
    save_model(out, build_model("mlp", (4,), 3, seed))
    """
)


def model_for(seed: int):
    return build_model("mlp", (4,), 3, seed)


def run_child(step: str, n: int, out: Path, seed: int) -> int:
    env = {"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-c", CHILD, step, str(n), str(out), str(seed)]
    return subprocess.run(cmd, env=env, capture_output=True, timeout=120).returncode


def state_of(path: Path) -> dict[str, torch.Tensor] | None:
    """The saved weights; None when there is no manifest (no artifact). A manifest whose
    artifact does not load and verify is a corrupt result: the load error propagates."""
    if not path.with_name(path.name + ".json").exists():
        return None
    model, _ = load_model(path)
    return model.state_dict()


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("step", ["replace", "fsync", "unlink"])
def test_save_model_killed_at_every_step(tmp_path: Path, step: str) -> None:
    old, new = model_for(1).state_dict(), model_for(2).state_dict()
    kills = 0
    for n in range(1, 20):
        out = tmp_path / f"{step}{n}" / "m"
        save_model(out, model_for(1))  # an old artifact being replaced
        rc = run_child(step, n, out, 2)
        got = state_of(out)
        if rc == 0:
            assert got is not None and same(got, new)
            break
        assert rc == 9
        kills += 1
        # old, absent or new; never a mix (new weights under the old manifest)
        assert got is None or same(got, old) or same(got, new), f"{step} #{n}"
        save_model(out, model_for(2))  # the rerun recovers
        assert same(state_of(out), new)
        # and removes the temporaries the killed writer left (its pid no longer runs)
        assert not list(out.parent.glob(".*.tmp")), sorted(out.parent.iterdir())
    else:
        pytest.fail("the save never completed")
    assert kills >= 1  # every step kind occurs in a save (2 replaces, 2 fsyncs, 1 unlink)


def test_only_temporaries_of_writers_that_no_longer_run_are_removed(tmp_path: Path) -> None:
    from unlearnkit.io import remove_stale_temporaries

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(dead.stdout)
    target = tmp_path / "m.safetensors"
    kept = tmp_path / f".m.safetensors.{live.pid}.abc.tmp"
    stale = tmp_path / f".m.safetensors.{dead_pid}.abc.tmp"
    other = tmp_path / f".n.safetensors.{dead_pid}.abc.tmp"  # another file's temporary
    for p in (kept, stale, other):
        p.write_bytes(b"partial")
    try:
        assert remove_stale_temporaries(target) == [stale]
        assert kept.exists() and other.exists() and not stale.exists()
    finally:
        live.kill()
        live.wait()
