"""One error path for the CLI: every failure the user can cause ends in one plain line
``error: ...`` on stderr and exit status 2, never a traceback, and leaves the inputs as they
were (their bytes are hashed before and after).

The table holds the cases of issue 12 (defect 10) that ended in a traceback (exit 1), in
exit 0 where the input is meaningless (``--eps 0``, ``--memory-budget 0``, ``--l2 inf``) or
in a multi-line usage block: invalid numbers, ids beyond int64, ids files that are folders,
devices or binary, read-only or impossible outputs, corrupted ``results.db``, seeds outside
[0, 2**32 - 1], parser errors. A few cases that already gave the right answer (a manifest
missing keys, ``--damping 0``) stay as guards. The Python facade gets the same checks
(:class:`~unlearnkit.ssse.ErasureConfig`, :func:`unlearnkit.api.inputs.sample_ids`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from unlearnkit import api
from unlearnkit.cli import app
from unlearnkit.errors import ConfigError
from unlearnkit.ssse import ErasureConfig

runner = CliRunner()
BIG = str(2**63)  # one past the largest int64


def invoke(*args: Any, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, [str(a) for a in args], env=env)


def _readonly_dir(base: Path) -> Path | None:
    """A folder in which creating anything fails with EACCES / EPERM / EROFS: a chmod 0o500
    folder, or (as root, which ignores modes) a path under /sys; None if there is none."""
    d = base / "readonly"
    d.mkdir()
    d.chmod(stat.S_IRUSR | stat.S_IXUSR)
    for candidate in (d, Path("/sys/unlearnkit-readonly-probe")):
        probe = candidate / "probe" if candidate == d else candidate
        try:
            probe.mkdir()
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                return candidate
            continue
        probe.rmdir()
    return None


def _snapshot(root: Path) -> dict[str, str]:
    """sha256 of every regular file under ``root`` (symlinks by their target name); ``.lock``
    files (the advisory locks of states and benchmark folders) are not data."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.name == ".lock":
            continue
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file() and os.access(p, os.R_OK):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``inputs/``: a trained model, its erasure state and every bad input the table uses;
    ``outputs/`` is where the commands may write."""
    root = tmp_path_factory.mktemp("bad")
    inp = root / "inputs"
    inp.mkdir()
    r = invoke("train", "--dataset", "digits", "--model", "logreg", "--out", inp / "m0",
               "--epochs", "1")  # fmt: skip
    assert r.exit_code == 0, r.output
    r = invoke("prepare", "--model", inp / "m0", "--out", inp / "st", "--group-size", "4")
    assert r.exit_code == 0, r.output
    (inp / "folder").mkdir()
    (inp / "binary").write_bytes(bytes(range(256)) * 4)
    (inp / "afile").write_text("not a folder\n")
    with (root / "huge").open("wb") as f:  # sparse: 300 MiB of nothing, over the 256 MiB cap
        f.truncate(300 * 2**20)  # (beside inputs/: never read, so not hashed either)
    manifest = json.loads((inp / "m0.json").read_text())
    bad_manifests = {
        "nokeys": json.dumps({k: v for k, v in manifest.items() if k != "model"}),
        "wrongtypes": json.dumps({**manifest, "model": "logreg"}),
        "notjson": "{not json",
        "empty": "",
    }
    for name, text in bad_manifests.items():
        d = inp / name
        d.mkdir()
        shutil.copy(inp / "m0.safetensors", d / "m0.safetensors")
        (d / "m0.json").write_text(text)
    for name, head in (("db_garbage", b""), ("db_header", b"SQLite format 3\x00")):
        d = inp / name
        d.mkdir()
        (d / "results.db").write_bytes(head + b"\xa5" * 4096)
    out = root / "outputs"
    out.mkdir()
    return {"in": inp, "out": out, "ro": _readonly_dir(root)}


Argv = Callable[[Path, Path, Path | None], list[str]]


def _cmd(*template: str) -> Argv:
    """argv with ``{in}`` (the inputs folder), ``{out}`` (a fresh folder) and ``{ro}`` (a
    read-only folder) filled in."""
    return lambda i, o, ro: [t.format(**{"in": i, "out": o, "ro": ro}) for t in template]


def _prep(*extra: str) -> Argv:
    return _cmd("prepare", "--model", "{in}/m0", "--out", "{out}/st", *extra)


def _erase(*extra: str) -> Argv:
    return _cmd("erase", "--model", "{in}/m0", "--state", "{in}/st", "--out", "{out}/m1",
                "--state-out", "{out}/st1", *extra)  # fmt: skip


def _train(*extra: str) -> Argv:
    return _cmd("train", "--dataset", "digits", "--model", "logreg", "--out", "{out}/t",
                "--epochs", "1", *extra)  # fmt: skip


def _unlearn(*extra: str) -> Argv:
    return _cmd("unlearn", "--method", "original", "--model", "{in}/m0", "--forget", "class:1",
                "--out", "{out}/u", *extra)  # fmt: skip


# id, argv, a fragment of the message, needs a read-only folder
# fmt: off
CASES: list[tuple[str, Argv, str, bool]] = [
    # numbers: ErasureConfig / the option's own check
    ("damping-0", _prep("--damping", "0"), "damping", False),
    ("damping-nan", _prep("--damping", "nan"), "--damping must be a finite number > 0", False),
    ("damping-inf", _prep("--damping", "inf"), "--damping must be a finite number > 0", False),
    ("group-size-0", _prep("--group-size", "0"), "group_size", False),
    ("group-size-int64", _prep("--group-size", BIG), "group_size", False),
    ("memory-budget-nan", _prep("--memory-budget", "nan"), "--memory-budget must be", False),
    ("memory-budget-inf", _prep("--memory-budget", "inf"), "--memory-budget must be", False),
    ("memory-budget-0", _prep("--memory-budget", "0"), "--memory-budget must be", False),
    ("block-size-0", _prep("--blocks", "chunks", "--block-size", "0"), "size", False),
    ("l2-inf", _prep("--l2", "inf"), "l2: Input should be a finite number", False),
    ("eps-0", _erase("--forget", "class:1", "--eps", "0"), "--eps must be > 0", False),
    ("eps-negative", _erase("--forget", "class:1", "--eps", "-1"), "--eps must be > 0", False),
    ("utility-budget-1.5", _erase("--forget", "class:1", "--utility-budget", "1.5"),
     "utility_budget must be in [0, 1]", False),
    # ids
    ("ids-int64-max+1", _erase("--ids", BIG), "outside the int64 range", False),
    ("ids-int64-min-1", _erase("--ids", str(-(2**63) - 1)), "outside the int64 range", False),
    ("ids-400-digits", _erase("--ids", "9" * 400), "outside the int64 range", False),
    ("ids-not-numbers", _erase("--ids", "1,two"), "must be integers", False),
    ("ids-at-folder", _erase("--ids", "@{in}/folder"), "not a regular file", False),
    ("ids-at-dev-zero", _erase("--ids", "@/dev/zero"), "not a regular file", False),
    ("ids-at-binary", _erase("--ids", "@{in}/binary"), "not UTF-8", False),
    ("ids-at-huge", _erase("--ids", "@{in}/../huge"), "larger than 256 MiB", False),
    ("ids-at-nothing", _erase("--ids", "@"), "file name is missing", False),
    ("forget-ids-int64", _erase("--forget", f"ids:{BIG}"), "outside the int64 range", False),
    ("unlearn-forget-dev-zero", _unlearn("--forget", "ids:@/dev/zero"), "not a regular file",
     False),
    # seeds
    ("forget-seed-negative", _erase("--forget", "random:0.1", "--forget-seed", "-1"),
     "--forget-seed", False),
    ("forget-seed-2**64", _erase("--forget", "random:0.1", "--forget-seed", str(2**64)),
     "--forget-seed", False),
    ("train-seed-2**64", _train("--seed", str(2**64)), "--seed", False),
    ("train-split-seed-negative", _train("--split-seed", "-1"), "--split-seed", False),
    ("unlearn-seed-2**64", _unlearn("--seed", str(2**64)), "--seed", False),
    ("bench-workers-negative", _cmd("bench", "smoke", "--out", "{out}/b", "--workers", "-1"),
     "--workers", False),
    # model artifacts
    ("manifest-missing-keys", _cmd("prepare", "--model", "{in}/nokeys/m0", "--out", "{out}/st"),
     "architecture", False),
    ("manifest-wrong-types",
     _cmd("prepare", "--model", "{in}/wrongtypes/m0", "--out", "{out}/st"), "must be a mapping", False),
    ("manifest-not-json", _cmd("prepare", "--model", "{in}/notjson/m0", "--out", "{out}/st"),
     "not valid JSON", False),
    ("manifest-empty", _cmd("prepare", "--model", "{in}/empty/m0", "--out", "{out}/st"),
     "not valid JSON", False),
    # outputs the environment refuses
    ("prepare-out-under-a-file", _cmd("prepare", "--model", "{in}/m0", "--out", "{in}/afile/st"),
     "Not a directory", False),
    ("prepare-out-readonly", _cmd("prepare", "--model", "{in}/m0", "--out", "{ro}/st"), "", True),
    ("erase-out-readonly", _cmd("erase", "--model", "{in}/m0", "--state", "{in}/st", "--out",
                                "{ro}/m1", "--forget", "class:1", "--state-out", "{out}/st1"),
     "", True),
    ("erase-state-out-readonly", _cmd("erase", "--model", "{in}/m0", "--state", "{in}/st",
                                      "--out", "{out}/m1", "--forget", "class:1",
                                      "--state-out", "{ro}/st1"), "", True),
    ("train-out-readonly", _cmd("train", "--dataset", "digits", "--model", "logreg", "--out",
                                "{ro}/t"), "", True),
    ("unlearn-out-readonly", _cmd("unlearn", "--method", "original", "--model", "{in}/m0",
                                  "--forget", "class:1", "--out", "{ro}/u"), "", True),
    ("reproduce-out-readonly", _cmd("reproduce", "ssse-convex", "--out", "{ro}/c"), "", True),
    # corrupted results.db
    ("report-garbage-db", _cmd("report", "{in}/db_garbage"), "results.db", False),
    ("report-header-db", _cmd("report", "{in}/db_header"), "results.db", False),
    ("bench-garbage-db", _cmd("bench", "smoke", "--out", "{in}/db_garbage", "--workers", "0",
                              "--no-report"), "results.db", False),
    # the parser's own errors: one line too
    ("usage-not-a-number", _prep("--damping", "abc"), "Invalid value for '--damping'", False),
    ("usage-missing-option", _cmd("prepare", "--model", "{in}/m0"), "Missing option '--out'",
     False),
    ("usage-unknown-option", _prep("--no-such-option"), "No such option", False),
]
# fmt: on


@pytest.mark.parametrize(("argv", "message", "readonly"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_input_is_one_error_line_exit_2_inputs_unchanged(
    work: dict[str, Any], tmp_path: Path, argv: Argv, message: str, readonly: bool
) -> None:
    if readonly and work["ro"] is None:
        pytest.skip("no read-only folder on this machine")
    before = _snapshot(work["in"])
    res = invoke(*argv(work["in"], tmp_path, work["ro"]))
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in res.output
    assert _snapshot(work["in"]) == before


def test_threads_from_the_environment_are_checked(work: dict[str, Any], tmp_path: Path) -> None:
    res = invoke(*_prep("--damping", "0")(work["in"], tmp_path, None),
                 env={"UNLEARNKIT_THREADS": "many"})  # fmt: skip
    assert res.exit_code == 2
    assert (
        res.stderr.strip() == "error: UNLEARNKIT_THREADS must be an integer in 1..4096, got 'many'"
    )


# ----------------------------------------------------------------------------- facade


@pytest.mark.parametrize(
    "kwargs",
    [
        {"damping": 0.0},
        {"damping": math.nan},
        {"damping": math.inf},
        {"l2": math.inf},
        {"group_size": 0},
        {"group_size": 2**63},
        {"memory_budget_bytes": 0},
        {"chunk_size": 0},
        {"seed": -1},
        {"blocks": "chunks"},  # no size
        {"blocks": "chunks", "block_options": {"size": 0}},
        {"blocks": "full", "block_options": {"size": 8}},
    ],
)
def test_erasure_config_refuses_what_cannot_work(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="bad erasure configuration"):
        ErasureConfig(**kwargs)


def test_erasure_config_accepts_chunks_with_a_size() -> None:
    assert ErasureConfig(blocks="chunks", block_options={"size": 64}).block_options == {"size": 64}


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ([2**63], "outside the int64 range"),
        ([-(2**63) - 1], "outside the int64 range"),
        ([2**64], "outside the int64 range"),
        ([1.5], "must be integers"),  # torch would truncate it to id 1
        (torch.tensor([1.0]), "must be integers"),
        ([True], "must be integers"),
        (["3"], "must be integers"),
        ([[1], [2, 3]], "flat sequence"),
    ],
)
def test_facade_ids_are_checked(ids: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        api.inputs.sample_ids(ids)
    with pytest.raises(ConfigError, match=message):
        api.ids_spec(ids)


def test_facade_sample_ids_known_answers() -> None:
    import numpy as np

    assert api.inputs.sample_ids([3, 1]).tolist() == [3, 1]
    assert api.inputs.sample_ids(7).tolist() == [7]
    assert api.inputs.sample_ids(np.array([2**63 - 1], dtype=np.uint64)).tolist() == [2**63 - 1]
    assert api.inputs.sample_ids(torch.tensor([[4], [5]], dtype=torch.int32)).tolist() == [4, 5]
    assert api.inputs.sample_ids([]).dtype == torch.int64


def test_facade_erase_and_prepare_refuse_bad_input(work: dict[str, Any]) -> None:
    saved = api.load(work["in"] / "m0")
    prepared = api.load_prepared(work["in"] / "st", saved)
    before = _snapshot(work["in"])
    erased_before = prepared.state.erased.clone()
    with pytest.raises(ConfigError, match="outside the int64 range"):
        prepared.erase(saved, [2**63])
    with pytest.raises(ConfigError, match="must be integers"):
        prepared.erase(saved, [float(saved.split.fit_on.ids[0])])
    n = len(saved.fit_on)
    with pytest.raises(ConfigError, match=f"larger than the {n} training samples"):
        api.prepare(saved, config={"group_size": n + 1})
    assert torch.equal(prepared.state.erased, erased_before)
    assert _snapshot(work["in"]) == before
