"""What a benchmark stage is: a :class:`Task` (plain, picklable data), the :class:`Output` its
worker function returns, and the registry :data:`TASKS` of worker functions by stage name.

Stage functions register themselves here (:mod:`unlearnkit.bench.tasks`,
:mod:`unlearnkit.bench.oracle_audit`); :func:`unlearnkit.bench.tasks.execute` runs a task in a
worker after importing every stage module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearnkit.registry import Registry


@dataclass(frozen=True)
class Task:
    """One run to execute: ``stage`` names the worker function in :data:`TASKS`."""

    stage: str
    key: str
    labels: dict[str, Any]
    payload: dict[str, Any]
    root: str
    deps: tuple[str, ...] = ()
    threads: int = 1

    def path(self, rel: str) -> Path:
        return Path(self.root) / rel


@dataclass
class Output:
    """What a stage function returns (the store fills in status, times and environment)."""

    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    artifact: str | None = None


TASKS: Registry[Callable[[Task], Output]] = Registry("benchmark stage")
