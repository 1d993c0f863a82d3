"""Fixtures of the harness tests."""

from __future__ import annotations

from typing import Any

import pytest
from _bench_helpers import tiny_config


@pytest.fixture
def tiny() -> dict[str, Any]:
    return tiny_config()
