import pytest

from unlearnkit.errors import ConfigError
from unlearnkit.metrics import METRICS, Direction, resolve
from unlearnkit.metrics.registry import GROUP_ORDER, groups, ordered


def test_every_metric_states_label_direction_group_and_formula():
    assert len(METRICS) >= 20
    for spec in ordered():
        assert spec.label and isinstance(spec.direction, Direction)
        assert spec.doc, spec.name
        assert spec.group in GROUP_ORDER, spec.name
        assert all(
            n.split(":")[0] in {"model", "original", "retrain", "task"}
            or n in {"seconds", "retrain_seconds"}
            for n in spec.needs
        )


def test_resolve_by_name_and_group_keeps_report_order():
    assert [s.name for s in resolve(["TA", "RA"])] == ["RA", "TA"]
    assert [s.name for s in resolve(["retention"])] == ["RR", "FR", "TR", "RetDev"]
    assert groups()["accuracy"][:4] == ["RA", "FA", "VA", "TA"]
    assert [s.name for s in resolve(None)] == [s.name for s in ordered()]


def test_unknown_metric_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown metric 'nope'"):
        resolve(["nope"])


def test_direction_of_well_known_metrics():
    d = {s.name: s.direction for s in ordered()}
    assert d["RetDev"] is Direction.LOWER
    assert d["val_indisc"] is Direction.HIGHER
    assert d["rte"] is Direction.HIGHER
    assert d["RR"] is Direction.CLOSER_TO_ONE
    assert d["FA"] is Direction.CLOSER_TO_RETRAIN
