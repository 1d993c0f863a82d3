"""The erasure state as an audit record: no lost update (compare-and-swap, lock), every fact
the manifest states checked on load, and one atomic switch with crash recovery (issue 12)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import unlearnkit.io as uio
import unlearnkit.ssse.persistence as persistence
from unlearnkit.errors import StateMismatchError
from unlearnkit.io import model_fingerprint
from unlearnkit.ssse import ErasureConfig, ErasureState
from unlearnkit.ssse.lock import state_lock
from unlearnkit.ssse.persistence import DIGEST_KEY, manifest_digest

CFG = ErasureConfig(blocks="per_layer", mode="exact", group_size=3, damping=1e-3)


@pytest.fixture
def chain(blobs, mlp):
    """(state0, model1, state1, model2, state2): two requests of two ids each."""
    s0 = ErasureState.prepare(mlp, blobs, CFG)
    m1, s1 = s0.erase(mlp, blobs.subset(blobs.ids[[0, 1]]), eps=1.0)
    m2, s2 = s1.erase(m1, blobs.subset(blobs.ids[[5, 9]]), eps=1.0)
    return s0, m1, s1, m2, s2


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def _edit(d: Path, change) -> None:
    """Edit manifest.json as a user with a text editor would (digest left as it was)."""
    m = json.loads((d / "manifest.json").read_text())
    change(m)
    (d / "manifest.json").write_text(json.dumps(m, indent=2))


# ---------------------------------------------------------------- defect 1: no lost update
def test_saving_a_sibling_over_a_newer_state_is_refused(tmp_path, blobs, mlp, chain):
    s0 = chain[0]
    s0.save(tmp_path / "st")
    a = ErasureState.load(tmp_path / "st", mlp)
    b = ErasureState.load(tmp_path / "st", mlp)  # two processes load the same state
    _, a1 = a.erase(mlp, blobs.subset(blobs.ids[[2]]), eps=1.0)
    _, b1 = b.erase(mlp, blobs.subset(blobs.ids[[3]]), eps=1.0)
    a1.save(tmp_path / "st")
    before = _files(tmp_path / "st")
    with pytest.raises(StateMismatchError, match="changed since this one was loaded"):
        b1.save(tmp_path / "st")
    assert _files(tmp_path / "st") == before  # nothing written
    on_disk = ErasureState.load(tmp_path / "st")
    assert on_disk.erased_ids.tolist() == [int(blobs.ids[2])]
    with pytest.raises(StateMismatchError, match="changed since"):
        s0.save(tmp_path / "st")  # rolling back a recorded request is refused too
    ErasureState.prepare(mlp, blobs, CFG).save(tmp_path / "st")  # another lineage may
    assert ErasureState.load(tmp_path / "st", mlp).ledger == ()  # replace it (prepare)


def test_descendants_replace_their_ancestor(tmp_path, chain):
    _, _, s1, m2, s2 = chain
    s1.save(tmp_path / "st")
    s2.save(tmp_path / "st")  # s2 descends from s1: accepted
    assert len(ErasureState.load(tmp_path / "st", m2).ledger) == 2


def test_lock_is_exclusive_across_processes_and_reentrant(tmp_path, chain):
    s0 = chain[0]
    s0.save(tmp_path / "st")
    probe = (
        "import sys; from unlearnkit.ssse.lock import state_lock\n"
        "with state_lock(sys.argv[1], timeout=0.3): pass\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(persistence.__file__).parents[2])}

    with state_lock(tmp_path / "st"):
        with state_lock(tmp_path / "st"):  # re-entrant: save inside a held lock works
            s0.save(tmp_path / "st")
        r = subprocess.run(
            [sys.executable, "-c", probe, str(tmp_path / "st")],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert r.returncode != 0 and "StateBusyError" in r.stderr
        assert "in use by another process" in r.stderr
    r = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "st")], env=env, timeout=120)
    assert r.returncode == 0  # released


# ---------------------------------------------------------------- defect 4: integrity
@pytest.mark.parametrize(
    "what",
    ["ledger_byte", "ledger_emptied", "fingerprint", "mode", "ledger_id_changed_resigned",
     "ledger_emptied_resigned", "n_remaining_resigned", "fingerprint_resigned"],
)  # fmt: skip
def test_tampered_manifest_is_refused(tmp_path, chain, blobs, what):
    _, _, _, m2, s2 = chain
    d = tmp_path / "st"
    s2.save(d)
    other = model_fingerprint(torch.nn.Linear(2, 2))
    first = s2.ledger[0]["ids"][0]

    def change(m):
        if what == "ledger_byte":  # one id changed by one character
            m["ledger"][0]["ids"][0] = first + 1
        elif what.startswith("ledger_emptied"):
            m["ledger"] = []
        elif what.startswith("fingerprint"):
            m["model_fingerprint"] = other
        elif what == "mode":
            m["config"]["mode"] = "paper"
        elif what == "ledger_id_changed_resigned":
            m["ledger"][0]["ids"][0] = first + 2
        elif what == "n_remaining_resigned":
            m["n_remaining"] += 1
        if what.endswith("resigned"):  # a careful forger recomputes the digest: cross-checks
            m[DIGEST_KEY] = manifest_digest(m)

    _edit(d, change)
    expect = {
        "ledger_byte": "SHA-256",
        "ledger_emptied": "SHA-256",
        "fingerprint": "SHA-256",
        "mode": "SHA-256",
        "ledger_id_changed_resigned": "ledger's 4 id",
        "ledger_emptied_resigned": "ledger's 0 id",
        "n_remaining_resigned": "remaining",
        "fingerprint_resigned": "last ledger entry",
    }[what]
    with pytest.raises(StateMismatchError, match=expect):
        ErasureState.load(d)


def test_one_flipped_byte_anywhere_in_the_manifest_is_refused(tmp_path, chain):
    d = tmp_path / "st"
    chain[4].save(d)
    raw = (d / "manifest.json").read_bytes()
    start = raw.index(b'"ledger"')
    for pos in range(start + 12, start + 12 + 40, 7):
        flipped = bytearray(raw)
        flipped[pos] = ord("7") if raw[pos] != ord("7") else ord("8")
        (d / "manifest.json").write_bytes(bytes(flipped))
        with pytest.raises(StateMismatchError):
            ErasureState.load(d)
    (d / "manifest.json").write_bytes(raw)
    assert len(ErasureState.load(d).ledger) == 2


def test_untampered_state_round_trips(tmp_path, chain):
    _, _, _, m2, s2 = chain
    s2.save(tmp_path / "st")
    back = ErasureState.load(tmp_path / "st", m2)
    assert back.state_id == s2.state_id and len(back.state_id) == 32
    assert back.ledger[1]["ids"] == s2.ledger[1]["ids"]
    assert sorted(back.erased_ids.tolist()) == sorted(s2.erased_ids.tolist())


# ---------------------------------------------------------------- defect 5: atomic switch
def _step_names() -> list[str]:
    return ["save_tensors#1", "save_tensors#2", "atomic_write_json", "symlink", "cleanup"]


@pytest.mark.parametrize("step", range(5))
def test_a_crash_at_any_write_step_leaves_the_old_or_the_new_state(
    tmp_path, monkeypatch, chain, step
):
    _, m1, s1, m2, s2 = chain
    d = tmp_path / "st"
    s1.save(d)
    calls = {"n": 0}

    def crash_at(k, real):
        def wrapped(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == k:
                raise KeyboardInterrupt(f"simulated crash at {_step_names()[step]}")
            return real(*args, **kwargs)

        return wrapped

    real_save, real_json, real_symlink = uio.save_tensors, uio.atomic_write_json, os.symlink
    real_clean = persistence.clean_stale
    if step < 2:
        monkeypatch.setattr(persistence, "save_tensors", crash_at(step + 1, real_save))
    elif step == 2:
        monkeypatch.setattr(persistence, "atomic_write_json", crash_at(1, real_json))
    elif step == 3:
        monkeypatch.setattr(persistence.os, "symlink", crash_at(1, real_symlink))
    else:  # the clean-up after the switch (the first call is the one before writing)
        monkeypatch.setattr(persistence, "clean_stale", crash_at(2, real_clean))
    with pytest.raises(KeyboardInterrupt):
        s2.save(d)
    monkeypatch.undo()
    loaded = ErasureState.load(d)  # recovers: temporaries and unnamed files removed
    m = json.loads((d / "manifest.json").read_text())
    assert sorted(p.name for p in d.iterdir()) == sorted(
        [".lock", "manifest.json", "inverse.safetensors", "state.safetensors",
         *m["files"].values()]
    )  # fmt: skip
    assert all((d / f).resolve().name == m["files"][f] for f in m["files"])
    new = step >= 3  # the switch (manifest.json replaced) happened before the crash
    assert len(loaded.ledger) == (2 if new else 1)
    ErasureState.load(d, m2 if new else m1)  # the state applies to the matching model
    # the rerun succeeds and leaves no temporaries or unreferenced files behind
    s2.save(d)
    names = sorted(p.name for p in d.iterdir())
    m = json.loads((d / "manifest.json").read_text())
    assert names == sorted(
        [".lock", "manifest.json", "inverse.safetensors", "state.safetensors",
         *m["files"].values()]
    )  # fmt: skip
    assert len(ErasureState.load(d, m2).ledger) == 2


def test_version1_folder_loads_and_is_upgraded_by_the_next_save(tmp_path, blobs, chain):
    _, m1, s1, _, s2 = chain
    d = tmp_path / "st"
    s1.save(d)
    m = json.loads((d / "manifest.json").read_text())
    for f, versioned in m["files"].items():  # rewrite it as the version 1 writer did
        (d / f).unlink()
        shutil.move(d / versioned, d / f)
    for k in ("files", "revision", DIGEST_KEY, "state_id"):
        m.pop(k)
    m["format_version"] = 1
    (d / "manifest.json").write_text(json.dumps(m))
    (tmp_path / ".st.tmp-123").mkdir()  # a crashed version-1 writer's temporary
    old = ErasureState.load(d, m1)
    assert old.state_id == "" and len(old.ledger) == 1
    _, s2b = old.erase(m1, blobs.subset(torch.tensor(s2.ledger[1]["ids"])), eps=1.0)
    s2b.save(d)
    back = ErasureState.load(d)
    assert json.loads((d / "manifest.json").read_text())["format_version"] == 2
    assert (d / "state.safetensors").is_symlink() and len(back.ledger) == 2
    assert not (tmp_path / ".st.tmp-123").exists()


def test_version1_crash_between_its_renames_is_recovered(tmp_path, chain):
    _, m1, s1, _, _ = chain
    s1.save(tmp_path / "st")
    (tmp_path / "st").rename(tmp_path / ".st.old-5")  # the old writer crashed here
    assert len(ErasureState.load(tmp_path / "st", m1).ledger) == 1
    assert (tmp_path / "st" / "manifest.json").is_file()


KILLED_SAVE = """
import os, sys
from unlearnkit.ssse import ErasureState
state = ErasureState.load(sys.argv[1])
k, calls, real = int(sys.argv[3]), [0], os.replace
def replace(src, dst):
    calls[0] += 1
    if calls[0] == k:
        os._exit(9)  # killed: no clean-up handler runs
    real(src, dst)
os.replace = replace
state.save(sys.argv[2])
"""


def test_a_save_killed_at_each_replace_leaves_a_loadable_state(tmp_path, chain):
    """``os.replace`` calls of a save: the two tensor files, manifest.json (the switch), the
    two links. Killed before the third: the old state; from the fourth on: the new one."""
    _, m1, s1, m2, s2 = chain
    s2.save(tmp_path / "new")
    env = {**os.environ, "PYTHONPATH": str(Path(persistence.__file__).parents[2])}
    for k in range(1, 6):
        d = tmp_path / f"st{k}"
        s1.save(d)
        r = subprocess.run(
            [sys.executable, "-c", KILLED_SAVE, str(tmp_path / "new"), str(d), str(k)],
            env=env,
            timeout=300,
        )
        assert r.returncode == 9
        loaded = ErasureState.load(d, m2 if k > 3 else m1)
        assert len(loaded.ledger) == (2 if k > 3 else 1)
        m = json.loads((d / "manifest.json").read_text())
        assert sorted(p.name for p in d.iterdir()) == sorted(
            [".lock", "manifest.json", "inverse.safetensors", "state.safetensors",
             *m["files"].values()]
        ), k  # fmt: skip
        s2.save(d)  # the rerun succeeds
        assert len(ErasureState.load(d, m2).ledger) == 2
