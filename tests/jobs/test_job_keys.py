import hashlib
import json

import pytest

from unlearnkit.errors import ConfigError
from unlearnkit.jobs.keys import HARNESS_VERSION, KEY_LENGTH, canonical_json, content_key


def test_canonical_json_sorts_keys_and_lists_tuples():
    assert canonical_json({"b": (1, 2.5), "a": {"y": None, "x": True}}) == (
        '{"a":{"x":true,"y":null},"b":[1,2.5]}'
    )


def test_content_key_is_sha256_of_the_canonical_payload():
    payload = json.dumps(
        {"kind": "train", "harness": HARNESS_VERSION, "seed": 3, "lr": 0.1},
        sort_keys=True,
        separators=(",", ":"),
    )
    want = "train-" + hashlib.sha256(payload.encode()).hexdigest()[:KEY_LENGTH]
    assert content_key("train", lr=0.1, seed=3) == want


def test_key_is_order_independent_and_changes_with_any_part():
    base = content_key("x", a={"p": 1, "q": [1, 2]}, b="s")
    assert base == content_key("x", b="s", a={"q": (1, 2), "p": 1})
    assert base != content_key("x", a={"p": 1, "q": [2, 1]}, b="s")
    assert base != content_key("x", a={"p": 1.0000001, "q": [1, 2]}, b="s")
    assert base != content_key("y", a={"p": 1, "q": [1, 2]}, b="s")


def test_non_finite_and_unknown_objects_are_refused():
    with pytest.raises(ConfigError, match="non-finite"):
        content_key("x", v=float("nan"))
    with pytest.raises(ConfigError, match="object"):
        content_key("x", v=object())
