"""Eight ``unlearnkit erase`` processes on one state at once (issue 12, defect 1): each either
exits 0 with its ids erased and in the ledger, or exits 2 with a clear message and its ids
untouched — never an exit 0 whose request is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

import unlearnkit
from unlearnkit.artifacts import load_model, manifest_split
from unlearnkit.cli import app
from unlearnkit.ssse import ErasureState

CLI = [sys.executable, "-c", "from unlearnkit.cli import main; main()"]
N_PROCESSES = 8


def test_concurrent_erase_requests_are_applied_or_refused_never_lost(tmp_path: Path) -> None:
    runner = CliRunner()
    for args in (
        ["train", "--dataset", "digits", "--model", "logreg", "--out", tmp_path / "m0",
         "--epochs", "1"],
        ["prepare", "--model", tmp_path / "m0", "--out", tmp_path / "st", "--group-size", "4",
         "--solver", "woodbury"],
    ):  # fmt: skip
        r = runner.invoke(app, [str(a) for a in args])
        assert r.exit_code == 0, r.output
    ids = manifest_split(load_model(tmp_path / "m0")[1]).fit_on.ids.tolist()
    requests = [ids[2 * i : 2 * i + 2] for i in range(N_PROCESSES)]
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(unlearnkit.__file__).parents[1]),
        "OMP_NUM_THREADS": "1",
    }
    procs = [
        subprocess.Popen(
            [
                *CLI,
                "erase",
                "--model",
                str(tmp_path / "m0"),
                "--state",
                str(tmp_path / "st"),
                "--out",
                str(tmp_path / f"out{i}"),
                "--ids",
                ",".join(map(str, req)),
                "--eps",
                "1",
                "--allow-utility-loss",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )  # fmt: skip
        for i, req in enumerate(requests)
    ]
    results = [(p.wait(timeout=600), p.stdout.read() if p.stdout else "") for p in procs]
    state = ErasureState.load(tmp_path / "st")
    erased = set(state.erased_ids.tolist())
    in_ledger = [sorted(e["ids"]) for e in state.ledger]
    winners = []
    for i, ((rc, output), req) in enumerate(zip(results, requests, strict=True)):
        assert "Traceback" not in output, output
        if rc == 0:
            winners.append(i)
            assert set(req) <= erased and sorted(req) in in_ledger, output
            model = load_model(tmp_path / f"out{i}")[0]
            ErasureState.load(tmp_path / "st", model)  # the state applies to its model
        else:
            assert rc == 2, output
            assert not set(req) & erased, output
            assert "not the one the erasure state applies to" in " ".join(output.split())
            assert not (tmp_path / f"out{i}.json").exists()
    # all eight start from m0: the lock serialises them, the first one applies its request
    # and the state then belongs to its model, so the other seven are refused
    assert len(winners) == 1 and len(state.ledger) == 1
    assert erased == set(requests[winners[0]])
