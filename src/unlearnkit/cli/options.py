"""Parsing helpers shared by the CLI commands (text in, Python values out; nothing else)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unlearnkit.errors import ConfigError
from unlearnkit.methods.toolkit.search_space import nest_params


def parse_assignments(items: list[str] | None, what: str = "option") -> dict[str, Any]:
    """``["size=5000", "name=x"]`` -> ``{"size": 5000, "name": "x"}`` (values parsed as JSON
    when they are JSON, else kept as strings)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what} {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
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


def parse_config(text: str | None) -> dict[str, Any]:
    """``--config``: inline JSON (``'{"num_epochs": 2}'``) or the path of a JSON file.

    Dotted keys (the search-space names, ``"retain_optimizer.learning_rate"``) are nested.
    Anything but a JSON object raises :class:`ConfigError`.
    """
    if text is None or not text.strip():
        return {}
    body, where = text, "--config"
    path = Path(text)
    if not text.lstrip().startswith(("{", "[")):
        if not path.is_file():
            raise ConfigError(
                f"--config {text!r} is neither inline JSON (starting with '{{') nor a file"
            )
        try:
            body, where = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read config file {path}: {e}") from None
    try:
        value = json.loads(body)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a JSON object of hyper-parameters, got {value!r}")
    return nest_params(value)


def parse_method_configs(methods: list[str], items: list[str] | None) -> dict[str, Any]:
    """``--method-config ft='{"num_epochs": 2}'`` (inline JSON or a JSON file) per method."""
    configs: dict[str, Any] = {m: None for m in methods}
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep or name not in configs:
            raise ConfigError(
                f"--method-config {item!r}: expected METHOD=JSON for one of {methods}"
            )
        configs[name] = parse_config(text)
    return configs


def parse_eps(text: str) -> float | str:
    """``--eps``: ``auto`` or a finite number."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--eps must be 'auto' or a number, got {text!r}") from None
    if value != value or abs(value) == float("inf"):
        raise ConfigError(f"--eps must be finite, got {text!r}")
    return value
