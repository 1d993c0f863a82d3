"""Fault injection for ``unlearnkit prepare --model M --out ST`` (issue 12).

A driver process imports the CLI once, runs the uninterrupted ``prepare`` (the reference),
then forks one process per kill point: it replaces ``os.replace``, ``os.fsync`` or
``os.symlink`` (the write steps of :func:`unlearnkit.ssse.persistence.write_state_folder`:
two tensor files, the manifest switch, its folder flush, the two links) by a function that
dies with ``os._exit(9)`` (no cleanup, no ``finally``, the lock released by the kernel) at its
N-th call, and runs the same command, for every N until one completes. Forking after the
imports keeps each kill point at the cost of the prepare itself.

After each kill ST is absent, a complete state (loads and verifies, equals the reference), or
an interrupted first save (no manifest; only the writer's own files). Then the same command,
without ``--overwrite``, is run again: it must succeed where nothing complete was there (a
killed prepare must not force ``--overwrite`` on the user) and refuse where a complete state
is (its ledger is never replaced silently). Either way the state then equals the reference:
tensor files bit for bit, the manifest's facts equal (run-specific keys ignored), and no
temporaries are left.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from unlearnkit.cli import app
from unlearnkit.io import load_tensors, sha256_file
from unlearnkit.ssse import ErasureState
from unlearnkit.ssse.persistence import MANIFEST, TENSOR_FILES, tensor_files

SRC = Path(__file__).resolve().parents[2] / "src"
STEPS = ("replace", "fsync", "symlink")
#: keys that name one run rather than the state: time, duration, lineage id, file tags
RUN_KEYS = ("saved_at", "prepare_seconds", "state_id", "files", "manifest_sha256")

DRIVER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    from unlearnkit.cli import main
    model, base, steps = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    def prepare(out):
        sys.argv = ["unlearnkit", "prepare", "--model", model, "--out", out,
                    "--group-size", "4"]
        try:
            main()
        except SystemExit as e:
            return e.code or 0
        return 0
    assert prepare(base + "/ref") == 0  # the uninterrupted run; every module now loaded
    rcs = {}
    for step in steps:
        for n in range(1, 40):
            pid = os.fork()
            if pid == 0:
                calls, real = [0], getattr(os, step)
                def hook(*a, **k):
                    calls[0] += 1
                    if calls[0] == n:
                        os._exit(9)
                    return real(*a, **k)
                setattr(os, step, hook)
                os._exit(prepare(f"{base}/{step}{n}"))
            rc = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            rcs.setdefault(step, []).append(rc)
            if rc != 9:
                break
    print(json.dumps(rcs))
    """
)

runner = CliRunner()


def prepare(model: Path, out: Path) -> Any:
    args = ["prepare", "--model", model, "--out", out, "--group-size", "4"]
    return runner.invoke(app, [str(a) for a in args])


def contents(st: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(manifest facts, tensors of each tensor file) of a state folder, after it loads and
    verifies as an :class:`ErasureState` (manifest digest, checksums, stated facts)."""
    ErasureState.load(st)
    manifest = json.loads((st / MANIFEST).read_text())
    files = tensor_files(manifest)
    tensors = {f: load_tensors(st / files[f], manifest["checksums"][f]) for f in TENSOR_FILES}
    return {k: v for k, v in manifest.items() if k not in RUN_KEYS}, tensors


def assert_same(st: Path, ref: Path) -> None:
    facts, tensors = contents(st)
    ref_facts, ref_tensors = contents(ref)
    assert facts == ref_facts  # includes the tensor files' SHA-256: equal bit for bit
    for f in TENSOR_FILES:
        a, b = tensors[f], ref_tensors[f]
        assert a.keys() == b.keys()
        assert all(a[k].dtype == b[k].dtype and a[k].equal(b[k]) for k in a), f


def looks_killed_before_the_switch(st: Path) -> bool:
    """No manifest, and nothing but what the writer makes: its lock, tensor files of the
    revision it was writing, temporaries."""
    names = [p.name for p in st.iterdir()]
    ours = [
        n == ".lock" or n.endswith(".tmp") or (n.split(".")[0] in ("inverse", "state")
                                               and n.endswith(".safetensors"))
        for n in names
    ]  # fmt: skip
    return MANIFEST not in names and all(ours)


def assert_clean(st: Path) -> None:
    """Only the lock, the manifest, the two links and the two files it names."""
    manifest = json.loads((st / MANIFEST).read_text())
    want = {".lock", MANIFEST, *TENSOR_FILES, *tensor_files(manifest).values()}
    assert {p.name for p in st.iterdir()} == want, sorted(p.name for p in st.iterdir())
    for f in TENSOR_FILES:
        assert (st / f).resolve() == (st / tensor_files(manifest)[f]).resolve()


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, list[int]]]:
    d = tmp_path_factory.mktemp("prep")
    r = runner.invoke(app, ["train", "--dataset", "digits", "--model", "logreg", "--out",
                            str(d / "m0"), "--epochs", "3"])  # fmt: skip
    assert r.exit_code == 0, r.output
    env = {"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-c", DRIVER, str(d / "m0"), str(d), ",".join(STEPS)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return d, d / "m0", json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("step", STEPS)
def test_prepare_killed_at_every_step_recovers_without_overwrite(killed, step: str) -> None:
    d, model, rcs = killed
    ref = d / "ref"
    codes = rcs[step]
    assert codes[-1] == 0 and set(codes[:-1]) == {9}, codes  # killed, …, killed, completed
    assert_same(d / f"{step}{len(codes)}", ref)  # the run that was not killed
    seen = set()
    for n in range(1, len(codes)):
        st = d / f"{step}{n}"
        if not st.exists():
            seen.add("absent")
            r = prepare(model, st)
            assert r.exit_code == 0, (n, r.output)
        elif (st / MANIFEST).exists():
            seen.add("complete")
            before = {p.name: sha256_file(p) for p in st.iterdir() if p.is_file()}
            r = prepare(model, st)  # a complete state is never replaced without --overwrite
            assert r.exit_code == 2 and "--overwrite" in r.output, (n, r.output)
            assert {p.name: sha256_file(p) for p in st.iterdir() if p.is_file()} == before
        else:
            seen.add("interrupted")
            assert looks_killed_before_the_switch(st), (n, sorted(p.name for p in st.iterdir()))
            r = prepare(model, st)  # the rerun must not ask for --overwrite
            assert r.exit_code == 0, (n, r.output)
        assert_same(st, ref)  # loading recovers (links, temporaries) and verifies
        assert_clean(st)
    # replace: 2 tensor files, the manifest (the switch), 2 links; fsync: 2 files, the
    # manifest, the folder; symlink: 2 links. Killed before the switch: an interrupted first
    # save; after it: the complete state.
    assert len(codes) - 1 >= {"replace": 5, "fsync": 4, "symlink": 2}[step]
    assert seen == ({"complete"} if step == "symlink" else {"interrupted", "complete"})


def test_only_a_dead_writers_partial_folder_is_taken_without_overwrite(killed) -> None:
    """A folder with no manifest is taken without ``--overwrite`` only when it holds nothing
    but a save's own files and no process holds its lock (a prepare still running is not
    interrupted); anything else there is still refused and left as it was."""
    d, model, _ = killed
    st = d / "partial"
    st.mkdir()
    (st / ".lock").touch()
    (st / "inverse.1.0a1b2c3d.safetensors").write_bytes(b"partial")
    hold = "import fcntl, os, sys, time\n" \
        "fd = os.open(sys.argv[1], os.O_RDWR)\n" \
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n"  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", hold, str(st / ".lock")],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        r = prepare(model, st)  # a live writer's folder
        assert r.exit_code == 2 and "--overwrite" in r.output, r.output
    finally:
        holder.kill()
        holder.wait()
    (st / "notes.txt").write_text("the user's")
    r = prepare(model, st)  # not only a save's files
    assert r.exit_code == 2 and "--overwrite" in r.output, r.output
    assert sorted(p.name for p in st.iterdir()) == [
        ".lock", "inverse.1.0a1b2c3d.safetensors", "notes.txt"]  # fmt: skip
    (st / "notes.txt").unlink()
    r = prepare(model, st)  # the writer is dead: taken, its leftovers removed
    assert r.exit_code == 0, r.output
    assert_same(st, d / "ref")
    assert_clean(st)
