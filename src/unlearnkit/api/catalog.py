"""What is registered: datasets, models and unlearning methods, as rows for listings."""

from __future__ import annotations

from typing import Any

import unlearnkit.methods  # noqa: F401  (registers every method)
from unlearnkit.data import dataset_info
from unlearnkit.methods.describe import MethodRow, method_table
from unlearnkit.models import model_info


def datasets() -> list[dict[str, Any]]:
    """One row per dataset: name, task, size, input shape, outputs, description."""
    return dataset_info()


def models() -> list[dict[str, Any]]:
    """One row per registered model: name, description, inputs, convexity, options."""
    return model_info()


def methods(max_epochs: int = 10) -> list[MethodRow]:
    """One row per method: abbreviation, paper, data used, requirements, defaults, search
    space (``max_epochs`` = E*, the epoch bound of the search spaces)."""
    return method_table(max_epochs)
