"""Issue 12, defects 8, 14 and 15: an experiment file is validated completely before any work,
YAML aliases cannot amplify a file, one driver per benchmark folder, workers die with it."""

from __future__ import annotations

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
