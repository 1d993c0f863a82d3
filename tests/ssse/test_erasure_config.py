"""ErasureConfig validation surfaces as ConfigError (what the CLI prints), never as a raw
pydantic ValidationError, and names the field or repeats our own validator's message."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from unlearnkit.errors import ConfigError
from unlearnkit.ssse import ErasureConfig


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"damping": -1.0}, r"damping: Input should be greater than 0"),
        ({"group_size": 0}, r"group_size: Input should be greater than or equal to 1"),
        ({"blocks": "rows"}, r"blocks: Input should be 'full', 'per_layer'"),
        ({"colour": "red"}, r"colour: Extra inputs are not permitted"),
        ({"solver": "qr"}, r"solver: unknown Fisher-inverse solver 'qr'; known: auto, dense"),
        ({"task": "regression"}, r"unknown task 'regression'"),
        ({"curvature": "true", "mode": "exact"}, r"mode='exact' needs curvature rows"),
    ],
)
def test_bad_fields_raise_config_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        ErasureConfig(**kwargs)
    assert not isinstance(err.value, ValidationError)
    assert str(err.value).startswith("bad erasure configuration: ")


def test_valid_configs_still_construct_and_round_trip() -> None:
    cfg = ErasureConfig(solver="woodbury", damping=1e-2, group_size=1)
    assert (cfg.solver, cfg.damping, cfg.group_size, cfg.mode) == ("woodbury", 1e-2, 1, "exact")
    assert ErasureConfig(**cfg.model_dump()) == cfg
    assert ErasureConfig().solver == "auto"
