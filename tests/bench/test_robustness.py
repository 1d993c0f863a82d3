"""Issue 12, defects 8, 14 and 15: an experiment file is validated completely before any work,
YAML aliases cannot amplify a file, one driver per benchmark folder, workers die with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from _bench_helpers import tiny_config
from typer.testing import CliRunner

from unlearnkit.bench import load_experiment, parse_experiment
from unlearnkit.cli import app
from unlearnkit.errors import ConfigError

CLI = [sys.executable, "-c", "from unlearnkit.cli import main; main()"]


# ------------------------------------------------------------------ defect 8: validation


def test_unknown_method_config_key_is_refused_when_parsed():
    cfg = tiny_config(methods=[{"name": "ft", "config": {"learnig_rate": 0.1}}])
    with pytest.raises(ConfigError, match="learnig_rate"):
        parse_experiment(cfg)


def test_bad_method_config_value_is_refused_when_parsed():
    cfg = tiny_config(methods=[{"name": "ft", "config": {"epochs": "many"}}])
    with pytest.raises(ConfigError, match=r"methods\.0\.config|ft"):
        parse_experiment(cfg)


def test_search_space_points_are_validated_with_the_fixed_config(monkeypatch):
    # a space whose low end (0 epochs) FT's Config refuses: every trial would fail after
    # the Original and Retrain were trained; refused up front, and only when searched
    from optuna.distributions import IntDistribution

    from unlearnkit.methods.ft import FineTune

    space = {"num_epochs": IntDistribution(0, 3)}
    monkeypatch.setattr(FineTune, "search_space", lambda self, max_epochs=10: space)
    with pytest.raises(ConfigError, match=r"'ft'.*searched configurations.*num_epochs"):
        parse_experiment(tiny_config(methods=["ft"]))
    parse_experiment(tiny_config(methods=[{"name": "ft", "search": False}]))
    parse_experiment(tiny_config(methods=["ft"], search={"trials": 0}))


def test_good_method_config_still_parses():
    exp = parse_experiment(tiny_config(methods=[{"name": "ft", "config": {}}, "ngplus"]))
    assert exp.method_names() == ["ft", "ngplus"]


def test_unknown_dataset_param_is_refused_when_parsed():
    cfg = tiny_config(datasets=[{"name": "digits", "params": {"root": "/nowhere"}}])
    with pytest.raises(ConfigError, match="root"):
        parse_experiment(cfg)


def test_bad_dataset_param_value_is_refused_when_parsed():
    cfg = tiny_config(datasets=[{"name": "mnist1d", "params": {"size": "big"}}])
    with pytest.raises(ConfigError, match="size"):
        parse_experiment(cfg)


def test_dataset_param_with_environment_variable_is_not_expanded_at_parse_time():
    cfg = tiny_config(datasets=[{"name": "cifar10", "params": {"root": "$UK_NO_SUCH_VAR/c"}}])
    exp = parse_experiment(cfg)  # expanded where the data is loaded, not here
    assert exp.datasets[0].params == {"root": "$UK_NO_SUCH_VAR/c"}


def test_cli_bad_method_key_exits_2_before_any_work(tmp_path: Path):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(tiny_config(methods=[{"name": "ft", "config": {"bogus": 1}}])))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["bench", str(f), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert "bogus" in res.output
    assert not out.exists()  # nothing trained, nothing created


_LAUGHS = """\
name: lol
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_yaml_aliases_are_refused(tmp_path: Path):
    f = tmp_path / "bomb.yaml"
    f.write_text(_LAUGHS)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="anchors and aliases are not allowed"):
        load_experiment(f)
    assert time.perf_counter() - t0 < 2.0


def test_a_single_alias_is_refused_too(tmp_path: Path):
    cfg = yaml.safe_dump(tiny_config())
    f = tmp_path / "one.yaml"
    f.write_text("description: &x digits\n" + cfg.replace("name: digits", "name: *x"))
    with pytest.raises(ConfigError, match="anchors and aliases are not allowed"):
        load_experiment(f)


def test_cli_billion_laughs_exits_2_quickly(tmp_path: Path):
    f = tmp_path / "lol.yaml"
    f.write_text(_LAUGHS)
    t0 = time.perf_counter()
    res = CliRunner().invoke(app, ["bench", str(f), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert "aliases are not allowed" in res.output
    assert time.perf_counter() - t0 < 5.0


# ------------------------------------------------------- defects 14 and 15: the driver


def _slow_experiment(tmp_path: Path, workers: int) -> Path:
    """Long enough (tens of seconds) to be caught running; the digits MLP, 1 method."""
    cfg = tiny_config(
        training={"epochs": 300, "batch_size": 16, "lr": 0.01},
        methods=["ft"],
        seeds=list(range(4)),
        search={"trials": 0},
        metrics=["accuracy"],
        executor={"workers": workers},
    )
    f = tmp_path / "slow.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return f


def _wait(cond, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_held_folder_is_refused_at_once(tmp_path: Path):
    from unlearnkit.jobs.lock import folder_lock

    out = tmp_path / "out"
    f = _slow_experiment(tmp_path, workers=0)
    with folder_lock(out):
        t0 = time.monotonic()
        res = subprocess.run(
            [*CLI, "bench", str(f), "--out", str(out)], capture_output=True, text=True, timeout=120
        )
        assert res.returncode == 2, res.stderr
        assert f"another benchmark is running in {out}" in res.stderr
        assert time.monotonic() - t0 < 60
        assert not (out / "results.db").exists()  # nothing done
    with folder_lock(out):  # released: it can be taken again
        pass


def test_second_driver_on_one_folder_exits_2(tmp_path: Path):
    out = tmp_path / "out"
    f = _slow_experiment(tmp_path, workers=0)
    cmd = [*CLI, "bench", str(f), "--out", str(out)]
    first = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(lambda: (out / "results.db").exists(), 120, "the first driver to start")
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first driver ended before the second started"
        assert second.returncode == 2, second.stderr
        assert f"another benchmark is running in {out}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    # the lock died with the killed driver: a new driver may take the folder
    from unlearnkit.jobs.lock import folder_lock

    with folder_lock(out):
        pass


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_workers_die_with_a_killed_driver(tmp_path: Path):
    out = tmp_path / "out"
    f = _slow_experiment(tmp_path, workers=2)
    driver = subprocess.Popen(
        [*CLI, "bench", str(f), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[int] = []
    try:

        def found() -> bool:
            workers[:] = [c for c in _children(driver.pid) if _is_worker(c)]
            return len(workers) >= 2

        _wait(found, 180, "two worker processes")
        assert driver.poll() is None
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
        _wait(lambda: not any(_alive(w) for w in workers), 10, f"workers {workers} to die")
    finally:
        if driver.poll() is None:
            driver.kill()
        for w in workers:  # never leave them behind, even when the test fails
            if _alive(w):
                os.kill(w, signal.SIGKILL)


def test_oversized_or_undecodable_experiment_files_are_refused(tmp_path: Path):
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (1 << 20) + "\n" + yaml.safe_dump(tiny_config()))
    with pytest.raises(ConfigError, match="larger than"):
        load_experiment(big)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_experiment(binary)
