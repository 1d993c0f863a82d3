"""Content keys: a job's key is a hash of everything that determines the job.

``content_key(kind, **parts)`` = the first 24 hex digits of
``SHA-256(canonical_json({"kind": kind, "harness": HARNESS_VERSION, **parts}))``, where
:func:`canonical_json` sorts dictionary keys, writes tuples as lists, floats by ``repr``
(shortest round-trip form) and pydantic models by ``model_dump(mode="json")``. Two runs with
the same inputs therefore get the same key on any machine, and changing any input (a
hyper-parameter, a seed, the key of an upstream artifact) gives a new key. Keys of upstream
stages are parts of downstream keys, so a change propagates down the pipeline.

``HARNESS_VERSION`` changes only when the meaning of a stored result changes.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from unlearnkit.errors import ConfigError

HARNESS_VERSION = 1
KEY_LENGTH = 24


def _plain(obj: Any) -> Any:
    """``obj`` as JSON-ready plain data (dicts, lists, str, int, float, bool, None)."""
    if isinstance(obj, BaseModel):
        return _plain(obj.model_dump(mode="json"))
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ConfigError(f"cannot build a content key from the non-finite number {obj}")
        return obj
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _plain(obj.item())
    raise ConfigError(f"cannot build a content key from a {type(obj).__name__}")


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, tuples as lists, floats by ``repr``."""
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def content_key(kind: str, **parts: Any) -> str:
    """``kind`` + the first 24 hex digits of SHA-256 of the canonical JSON of the parts.

    >>> content_key("x", a=1, b=[1.5, "s"]) == content_key("x", b=(1.5, "s"), a=1)
    True
    """
    payload = canonical_json({"kind": kind, "harness": HARNESS_VERSION, **parts})
    return f"{kind}-{hashlib.sha256(payload.encode()).hexdigest()[:KEY_LENGTH]}"
