"""``Unlearner.search_space_for``: each mode samples only the keys that act in that mode."""

from __future__ import annotations

import pytest

import unlearnkit.methods  # noqa: F401 (registers every method)
from unlearnkit.methods.base import METHODS


@pytest.mark.parametrize("key", METHODS.names())
def test_mode_spaces_drop_exactly_the_declared_inert_keys(key):
    method = METHODS.get(key)()
    full = method.search_space(7)
    has_switch = "faithful" in method.Config.model_fields
    for faithful, inert in (
        (True, method.inert_when_faithful),
        (False, method.inert_when_corrected),
    ):
        assert set(inert) <= set(full), "inert keys must be keys of search_space"
        space = method.search_space_for(7, faithful=faithful)
        assert set(space) == (set(full) - set(inert) if has_switch else set(full))
        assert all(space[k] == full[k] for k in space)


def test_only_ngplus_has_a_mode_dependent_space():
    differs = {
        k
        for k in METHODS.names()
        if set(METHODS.get(k)().search_space_for(7, True))
        != set(METHODS.get(k)().search_space_for(7, False))
    }
    assert differs == {"ngplus"}
