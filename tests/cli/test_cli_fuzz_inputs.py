"""Property-based tests of the CLI's one error path: whatever the user types as an option value
(numbers, ids, forget specs, seeds) or puts in an ids file or a model manifest, a command
ends in exit 0 or in exit 2 with one line ``error: ...`` on stderr, never in a traceback, and
the model and erasure state it was given keep their bytes.

The commands run in process (typer's CliRunner) on one tiny model (logistic regression on
scikit-learn's digits, one epoch) and its erasure state; every example writes to a fresh
folder. Option values never contain NUL (a command line cannot).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from unlearnkit.cli import app

runner = CliRunner()
FUZZ = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

#: option values: any text but NUL (impossible in argv; lone surrogates stand for the bytes of
#: a non-UTF-8 argument, as Python decodes them); numbers written in every way
TEXT = st.text(st.characters(blacklist_characters="\x00"), max_size=24)
NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["nan", "-inf", "1e400", "0", "-0.0", "1e-320", "0x10", "1_0", " 3 "]),
    TEXT,
)
INT_TEXT = st.one_of(st.integers(min_value=-(2**70), max_value=2**70).map(str), NUMBER_TEXT)


def option(name: str, values: Any, valid: Any) -> Any:
    """``[]`` (option not given), ``[name, a valid value]`` or ``[name, any text]``, so that
    some examples get past the parser into the command."""
    return st.one_of(
        st.just([]),
        valid.map(lambda v: [name, str(v)]),
        values.map(lambda v: [name, v]),
    )


def _digest(root: Path) -> dict[str, str]:
    """sha256 of every regular file under ``root`` (``.lock`` files are no data)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.name != ".lock"
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz")
    inp = root / "inputs"
    inp.mkdir()
    r = runner.invoke(app, ["train", "--dataset", "digits", "--model", "logreg",
                            "--out", str(inp / "m0"), "--epochs", "1"])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["prepare", "--model", str(inp / "m0"), "--out", str(inp / "st"),
                            "--group-size", "4"])  # fmt: skip
    assert r.exit_code == 0, r.output
    return {"in": inp, "root": root}


@contextmanager
def _fresh(work: dict[str, Path]) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(dir=work["root"]))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _check(work: dict[str, Path], argv: list[Any], *, in_hypothesis: bool = True) -> int:
    """Run the command; exit 0, or exit 2 with one ``error:`` line; inputs unchanged."""
    before = _digest(work["in"])
    res = runner.invoke(app, [str(a) for a in argv])
    assert res.exception is None or isinstance(res.exception, SystemExit), (argv, res.exception)
    assert res.exit_code in (0, 2), (argv, res.output)
    assert "Traceback" not in res.output
    if res.exit_code == 2:
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, res.stderr)
    assert _digest(work["in"]) == before, argv
    if in_hypothesis:
        event(f"exit {res.exit_code}")  # --hypothesis-show-statistics: how often each ended so
    return res.exit_code


@FUZZ
@given(
    damping=option("--damping", NUMBER_TEXT, st.floats(1e-6, 10.0)),
    group_size=option("--group-size", INT_TEXT, st.integers(1, 2000)),
    budget=option("--memory-budget", NUMBER_TEXT, st.floats(1e-4, 8.0)),
)
def test_prepare_numbers(work: dict[str, Path], damping: list, group_size: list, budget: list):
    with _fresh(work) as out:
        _check(work, ["prepare", "--model", work["in"] / "m0", "--out", out / "st",
                      *damping, *group_size, *budget])  # fmt: skip


@FUZZ
@given(block_size=INT_TEXT, l2=NUMBER_TEXT)
def test_prepare_blocks_and_l2(work: dict[str, Path], block_size: str, l2: str):
    with _fresh(work) as out:
        _check(work, ["prepare", "--model", work["in"] / "m0", "--out", out / "st",
                      "--blocks", "chunks", "--block-size", block_size, "--l2", l2])  # fmt: skip


IDS_TEXT = st.one_of(
    st.lists(st.integers(min_value=-(2**66), max_value=2**66), max_size=6).map(
        lambda xs: ",".join(map(str, xs))
    ),
    st.lists(st.integers(min_value=0, max_value=1800), min_size=1, max_size=4).map(
        lambda xs: " ".join(map(str, xs))
    ),
    st.text(st.sampled_from("0123456789,;# \n\t-+.@ae"), max_size=30),
    TEXT,
)


@FUZZ
@given(ids=IDS_TEXT, eps=st.one_of(st.just("auto"), NUMBER_TEXT))
def test_erase_ids_and_eps(work: dict[str, Path], ids: str, eps: str):
    with _fresh(work) as out:
        _check(work, ["erase", "--model", work["in"] / "m0", "--state", work["in"] / "st",
                      "--out", out / "m1", "--state-out", out / "st1",
                      "--ids", ids, "--eps", eps])  # fmt: skip


@FUZZ
@given(content=st.binary(max_size=300) | IDS_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_erase_ids_file_bytes(work: dict[str, Path], content: bytes):
    with _fresh(work) as out:
        (out / "ids.txt").write_bytes(content)
        _check(work, ["erase", "--model", work["in"] / "m0", "--state", work["in"] / "st",
                      "--out", out / "m1", "--state-out", out / "st1",
                      "--ids", f"@{out / 'ids.txt'}"])  # fmt: skip


FORGET = st.one_of(
    st.sampled_from(["class:1", "random:0.05", "class_fraction:2:0.5", "ids:3,5"]),
    st.tuples(
        st.sampled_from(["random", "class", "class_fraction", "ids", "bogus", ""]), NUMBER_TEXT
    ).map(lambda t: f"{t[0]}:{t[1]}"),  # fmt: skip
    TEXT,
)


@FUZZ
@given(forget=FORGET, seed=INT_TEXT, budget=NUMBER_TEXT)
def test_erase_forget_spec_seed_and_budget(
    work: dict[str, Path], forget: str, seed: str, budget: str
):
    with _fresh(work) as out:
        _check(work, ["erase", "--model", work["in"] / "m0", "--state", work["in"] / "st",
                      "--out", out / "m1", "--state-out", out / "st1", "--forget", forget,
                      "--forget-seed", seed, "--utility-budget", budget])  # fmt: skip


@settings(FUZZ, max_examples=15)
@given(seed=INT_TEXT, forget=FORGET)
def test_unlearn_seed_and_forget(work: dict[str, Path], seed: str, forget: str):
    with _fresh(work) as out:
        _check(work, ["unlearn", "--method", "original", "--model", work["in"] / "m0",
                      "--forget", forget, "--seed", seed, "--out", out / "u"])  # fmt: skip


def _with_manifest(work: dict[str, Path], out: Path, content: bytes) -> Path:
    shutil.copy(work["in"] / "m0.safetensors", out / "m0.safetensors")
    (out / "m0.json").write_bytes(content)
    return out / "m0"


MANIFEST_TEXT = st.one_of(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
        max_leaves=8,
    ).map(json.dumps),
    TEXT,
)


@FUZZ
@given(data=st.data())
def test_prepare_with_a_fuzzed_manifest(work: dict[str, Path], data: st.DataObject):
    """UTF-8 manifests: any JSON value, any text, or the real manifest with one entry
    replaced by an arbitrary JSON value."""
    real = json.loads((work["in"] / "m0.json").read_text())
    choice = data.draw(st.sampled_from(["any", "entry"]))
    if choice == "any":
        text = data.draw(MANIFEST_TEXT)
    else:
        key = data.draw(st.sampled_from(sorted(real)))
        value = data.draw(st.none() | st.integers() | TEXT | st.lists(st.integers(), max_size=2))
        text = json.dumps({**real, key: value})
    with _fresh(work) as out:
        model = _with_manifest(work, out, text.encode())
        before = hashlib.sha256((out / "m0.json").read_bytes()).hexdigest()
        _check(work, ["prepare", "--model", model, "--out", out / "st"])
        assert hashlib.sha256((out / "m0.json").read_bytes()).hexdigest() == before


def test_prepare_with_a_binary_manifest(work: dict[str, Path]) -> None:
    with _fresh(work) as out:
        model = _with_manifest(work, out, bytes(range(256)))
        argv = ["prepare", "--model", model, "--out", out / "st"]
        assert _check(work, argv, in_hypothesis=False) == 2
