"""Parsing helpers shared by the CLI commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unlearnkit.errors import ConfigError


def parse_value(text: str) -> Any:
    """JSON when it parses (numbers, booleans, lists), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_kv(items: list[str]) -> dict[str, Any]:
    """``["size=5000", "seed=1"]`` → ``{"size": 5000, "seed": 1}``."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"expected KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = parse_value(v.strip())
    return out


def parse_ids(text: str) -> list[int]:
    """``"1,2,3"`` or ``"@file"`` (ids separated by commas/whitespace) → list of ints."""
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.exists():
            raise ConfigError(f"ids file {path} does not exist")
        text = path.read_text()
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"sample ids must be integers, got {text[:80]!r}") from None
