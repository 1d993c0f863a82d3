"""Parsing helpers shared by the CLI commands (text in, Python values out; nothing else)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from unlearnkit.errors import ConfigError
from unlearnkit.io import MAX_TEXT_FILE_BYTES, read_text_file
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


#: the largest ids file read (bytes): ~25 million ids as text; a bigger file, a device
#: (``/dev/zero``) or a pipe is refused rather than read into memory without end
MAX_IDS_FILE_BYTES = MAX_TEXT_FILE_BYTES

#: sample ids are int64 (the id tensors of every dataset)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

#: seeds: numpy / scikit-learn take seeds in [0, 2**32 - 1]
SEED_MAX = 2**32 - 1


def read_ids_file(path: Path, what: str = "ids file") -> str:
    """The text of a user's ids file: a regular file of at most :data:`MAX_IDS_FILE_BYTES`,
    UTF-8; anything else (missing, a folder, a device, too big, binary) is a ConfigError."""
    return read_text_file(path, what, MAX_IDS_FILE_BYTES)


def parse_ids(text: str) -> list[int]:
    """``"1,2,3"`` or ``"@file"`` (ids separated by commas/whitespace, ``#`` starts a comment)
    → list of int64 ids; anything else raises ConfigError."""
    if text.startswith("@"):
        if not text[1:].strip():
            raise ConfigError("--ids @FILE: the file name is missing")
        text = read_ids_file(Path(text[1:]))
    body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    parts = [p for p in body.replace(",", " ").split() if p]
    ids = []
    for p in parts:
        if not (p.lstrip("+-").isascii() and p.lstrip("+-").isdigit()):
            raise ConfigError(f"sample ids must be integers, got {p[:40]!r}")
        value = int(p)
        if not INT64_MIN <= value <= INT64_MAX:
            raise ConfigError(f"sample id {p[:40]} is outside the int64 range of sample ids")
        ids.append(value)
    return ids


def check_forget_spec(spec: str) -> str:
    """``spec`` unchanged after checking the ids of an ``ids:`` spec as :func:`parse_ids` does
    (an ids file that is a folder or a device, too big, binary; ids outside int64)."""
    kind, sep, rest = spec.strip().partition(":")
    if sep and kind.strip() == "ids" and rest.strip():
        parse_ids(rest.strip())
    return spec


def positive_float(value: float | None, option: str) -> float | None:
    """``value`` if it is None or a finite number > 0, else ConfigError naming ``option``."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{option} must be a finite number > 0, got {value}")
    return value


def gib_to_bytes(gib: float | None, option: str = "--memory-budget") -> int | None:
    """A memory budget in GiB (finite, > 0) as a whole number of bytes (at least 1)."""
    if positive_float(gib, option) is None:
        return None
    return max(1, int(gib * 2**30))  # type: ignore[operator]


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
    """``--eps``: ``auto`` or a finite number > 0 (the SSSE step scale: 0 would record the
    samples as erased without changing the model, a negative ε steps the other way)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--eps must be 'auto' or a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"--eps must be finite, got {text!r}")
    if value <= 0:
        raise ConfigError(f"--eps must be > 0 (or 'auto'), got {text!r}")
    return value
