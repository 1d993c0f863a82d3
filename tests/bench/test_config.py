from pathlib import Path

import pytest
from _bench_helpers import tiny_config

import unlearnkit.methods  # noqa: F401
from unlearnkit.bench import PRESETS, load_experiment, parse_experiment
from unlearnkit.errors import ConfigError
from unlearnkit.methods import METHODS


def test_smoke_preset_is_ci_sized():
    exp = load_experiment("smoke")
    assert [d.name for d in exp.datasets] == ["digits"]
    assert [m.name for m in exp.models] == ["mlp"]
    assert 2 <= len(exp.method_names()) <= 3
    assert exp.seeds == [0, 1]
    assert exp.search.trials <= 5 and exp.search_seeds() == [0]


def test_cpu_preset_runs_every_row_on_two_datasets_and_two_models():
    exp = load_experiment("cpu")
    assert sorted(m.name for m in exp.methods) == METHODS.names()  # all 21 rows
    assert len(METHODS.names()) == 21
    assert {d.name for d in exp.datasets} == {"mnist1d", "mnist5k"}
    assert {m.name for m in exp.models} == {"mlp", "cnn"}
    assert exp.seeds == list(range(10))
    # a search worth its name (issue 13): >= 50 trials, population >= 10, >= 2 studies
    s = exp.search
    assert s.trials >= 50 and s.population_size >= 10 and len(exp.search_seeds()) >= 2
    assert s.trials >= 3 * s.population_size and s.prune  # several NSGA-III generations


def test_cifar_preset_is_deep_unlearns_protocol():
    exp = load_experiment("cifar10-resnet18")
    (d,) = exp.datasets
    assert d.name == "cifar10" and d.val_fraction == 0.15
    assert [m.name for m in exp.models] == ["resnet18"]
    assert exp.training["epochs"] == 182 and exp.training["batch_size"] == 256
    assert exp.training["augment"] == ["crop4", "hflip"]
    assert exp.max_epochs_for(d) == 37  # ceil(0.2 * 182)
    assert exp.search.trials == 100 and exp.search_seeds() == [0, 1, 2]
    assert exp.seeds == list(range(10)) and exp.forget == "random:0.1"
    assert set(PRESETS) == {"smoke", "cpu", "cifar10-resnet18", "memorise", "memorise-cnn"}


def test_defaults_follow_deep_unlearn():
    exp = parse_experiment(tiny_config(search={}, seeds=10))
    assert exp.search.trials == 100 and exp.search.sampler == "nsga3"
    assert exp.search_seeds() == [0, 1, 2]
    assert exp.train_seed == 123 and exp.unlearn_seed == 123 and exp.forget_seed == 123
    assert exp.max_epochs_for(exp.datasets[0]) == 1  # ceil(0.2 * 3)


def test_all_expands_and_reference_rows_are_not_run_as_methods():
    exp = parse_experiment(tiny_config(methods=["all"]))
    assert "original" not in exp.method_names() and "retrain" not in exp.method_names()
    assert len(exp.method_names()) == 19


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"methods": ["nope"]}, "methods.*unknown method 'nope'"),
        ({"methods": ["ft", {"name": "ft"}]}, "row 'ft' is listed twice"),
        ({"methods": ["ft", {"name": "ga", "label": "ft"}]}, "row 'ft' is listed twice"),
        ({"methods": [{"name": "ft", "label": "retrain"}]}, "'retrain' is a reference row"),
        ({"methods": [{"name": "ft", "label": "FT / x"}]}, "label"),
        ({"datasets": [{"name": "imagenet"}]}, "unknown dataset 'imagenet'"),
        ({"models": [{"name": "mlp"}, {"name": "mlp"}]}, "labels must be unique"),
        ({"forget": "random:2"}, "forget"),
        ({"metrics": ["accuracy", "f1"]}, "unknown metric 'f1'"),
        ({"training": {"epochs": 0}}, "training"),
        ({"seeds": [1, 1]}, "distinct"),
        ({"ulira": {"methods": ["scrub"]}}, "not among the experiment's methods"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_experiments_name_the_field(override, match):
    with pytest.raises(ConfigError, match=match):
        parse_experiment(tiny_config(**override))


def test_toml_and_yaml_files_give_the_same_experiment(tmp_path: Path):
    yaml_file = tmp_path / "e.yaml"
    yaml_file.write_text(
        "name: t\ndatasets: [{name: digits}]\nmodels: [{name: mlp}]\nmethods: [ft]\n"
        "seeds: 2\nsearch: {trials: 3}\n"
    )
    toml_file = tmp_path / "e.toml"
    toml_file.write_text(
        'name = "t"\nmethods = ["ft"]\nseeds = 2\n[[datasets]]\nname = "digits"\n'
        '[[models]]\nname = "mlp"\n[search]\ntrials = 3\n'
    )
    a, b = load_experiment(yaml_file), load_experiment(toml_file)
    assert a.model_dump() == b.model_dump()
    assert a.seeds == [0, 1]


def test_missing_file_and_unknown_preset(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="neither a preset"):
        load_experiment("nightly")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_experiment(bad)


def test_dataset_config_builds_the_data_plan():
    from unlearnkit.bench.config import DatasetConfig
    from unlearnkit.bench.splits import make_split
    from unlearnkit.data.plan import DataPlan

    cfg = DatasetConfig(name="mnist1d", params={"size": 300}, split_seed=9, stratify=False)
    plan = cfg.plan("class:2", 5)
    assert plan == DataPlan(
        "mnist1d", {"size": 300}, 0.15, 0.2, 9, "class:2", stratify=False, forget_seed=5
    )
    split = make_split(cfg, "class:2", 5)
    direct = plan.materialise()
    for part in ("train", "val", "test", "retain", "forget"):
        assert split.part(part).ids.tolist() == direct.part(part).ids.tolist()
    assert split.forget.ids.tolist() == sorted(split.train.ids[split.train.y == 2].tolist())
