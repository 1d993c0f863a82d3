"""The results store: one SQLite database per benchmark directory (``DIR/results.db``).

Tables (stdlib :mod:`sqlite3`, WAL journal, one transaction per write):

* ``runs``: one row per run key: stage, setting labels (dataset, model, method, seed), status
  (``running`` = submitted, ``done``, ``failed``, ``unsupported``, ``skipped``,
  ``interrupted``), ``attempts`` (incremented at every submission), ``started``/``finished``
  (Unix time; ``started`` is the worker's start once the run is stored), worker, environment
  id, artifact path (relative to DIR) and error text;
* ``params``: (key, name, JSON value): configurations and facts of a run;
* ``metrics``: (key, name, value): numbers;
* ``timings``: (key, name, seconds);
* ``environment``: (id, JSON): package versions, device, threads, host, recorded per run;
* ``experiments``: every experiment configuration the directory has been run with.

Only the driver process writes; workers return results. A run counts as finished once its
row says ``done`` (or ``unsupported``), and that row is committed only after the run's
artifact is on disk, so a crash or Ctrl-C loses nothing finished and a re-run skips it.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearnkit.errors import StateMismatchError
from unlearnkit.jobs.keys import canonical_json, content_key

DB_NAME = "results.db"
FINISHED = ("done", "unsupported")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    stage TEXT NOT NULL,
    dataset TEXT, model TEXT, method TEXT, seed INTEGER,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    started REAL, finished REAL,
    worker TEXT, env TEXT, artifact TEXT, error TEXT
);
CREATE TABLE IF NOT EXISTS params (
    key TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (key, name)
);
CREATE TABLE IF NOT EXISTS metrics (
    key TEXT NOT NULL, name TEXT NOT NULL, value REAL, PRIMARY KEY (key, name)
);
CREATE TABLE IF NOT EXISTS timings (
    key TEXT NOT NULL, name TEXT NOT NULL, seconds REAL NOT NULL, PRIMARY KEY (key, name)
);
CREATE TABLE IF NOT EXISTS environment (id TEXT PRIMARY KEY, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY, config TEXT NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_stage ON runs (stage, status);
"""


@dataclass
class RunResult:
    """What a task reports back: status, facts, numbers, times, artifact, environment."""

    key: str
    status: str = "done"
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    artifact: str | None = None
    error: str | None = None
    env: dict[str, Any] = field(default_factory=dict)
    worker: str | None = None
    started: float | None = None
    finished: float | None = None


@dataclass(frozen=True)
class RunRow:
    key: str
    stage: str
    dataset: str | None
    model: str | None
    method: str | None
    seed: int | None
    status: str
    attempts: int
    started: float | None
    finished: float | None
    worker: str | None
    env: str | None
    artifact: str | None
    error: str | None


class Store:
    """The SQLite store of one benchmark directory (see the module docstring)."""

    def __init__(self, root: str | Path, *, create: bool = True) -> None:
        self.root = Path(root)
        self.path = self.root / DB_NAME
        if not create and not self.path.is_file():
            raise StateMismatchError(
                f"no benchmark results at {self.path}; run `unlearnkit bench ... --out "
                f"{self.root}` first"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # ------------------------------------------------------------------ experiments

    def record_experiment(self, config: dict[str, Any]) -> str:
        """Remember a configuration this directory was run with; return its id."""
        text = canonical_json(config)
        exp_id = content_key("experiment", config=config)
        now = time.time()
        with self._tx() as c:
            c.execute(
                "INSERT INTO experiments (id, config, first_seen, last_seen) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET last_seen = excluded.last_seen",
                (exp_id, text, now, now),
            )
        return exp_id

    def latest_experiment(self) -> dict[str, Any]:
        row = self._conn.execute(
            "SELECT config FROM experiments ORDER BY last_seen DESC LIMIT 1"
        ).fetchone()
        if row is None:
            raise StateMismatchError(f"{self.path} records no experiment")
        return json.loads(row["config"])

    # ------------------------------------------------------------------ environment

    def record_environment(self, info: dict[str, Any]) -> str:
        env_id = content_key("env", info=info)
        with self._tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO environment (id, info) VALUES (?, ?)",
                (env_id, canonical_json(info)),
            )
        return env_id

    def environment(self, env_id: str) -> dict[str, Any]:
        row = self._conn.execute("SELECT info FROM environment WHERE id = ?", (env_id,)).fetchone()
        return json.loads(row["info"]) if row else {}

    def environments(self) -> list[dict[str, Any]]:
        return [json.loads(r["info"]) for r in self._conn.execute("SELECT info FROM environment")]

    # ------------------------------------------------------------------ runs

    def start(self, key: str, stage: str, labels: dict[str, Any]) -> None:
        """Mark ``key`` running and count the attempt (the row is created if new)."""
        now = time.time()
        with self._tx() as c:
            c.execute(
                "INSERT INTO runs (key, stage, dataset, model, method, seed, status, attempts, "
                "started) VALUES (?, ?, ?, ?, ?, ?, 'running', 1, ?) "
                "ON CONFLICT(key) DO UPDATE SET status = 'running', attempts = attempts + 1, "
                "started = excluded.started, finished = NULL, error = NULL",
                (
                    key,
                    stage,
                    labels.get("dataset"),
                    labels.get("model"),
                    labels.get("method"),
                    labels.get("seed"),
                    now,
                ),
            )

    def finish(self, result: RunResult) -> None:
        """Store a run's result and status in one transaction."""
        env_id = self.record_environment(result.env) if result.env else None
        finished = result.finished if result.finished is not None else time.time()
        with self._tx() as c:
            c.execute("DELETE FROM params WHERE key = ?", (result.key,))
            c.execute("DELETE FROM metrics WHERE key = ?", (result.key,))
            c.execute("DELETE FROM timings WHERE key = ?", (result.key,))
            c.executemany(
                "INSERT INTO params (key, name, value) VALUES (?, ?, ?)",
                [(result.key, k, canonical_json(v)) for k, v in result.params.items()],
            )
            c.executemany(
                "INSERT INTO metrics (key, name, value) VALUES (?, ?, ?)",
                [(result.key, k, _real(v)) for k, v in result.metrics.items()],
            )
            c.executemany(
                "INSERT INTO timings (key, name, seconds) VALUES (?, ?, ?)",
                [(result.key, k, float(v)) for k, v in result.timings.items()],
            )
            cur = c.execute(
                "UPDATE runs SET status = ?, started = COALESCE(?, started), finished = ?, "
                "worker = ?, env = ?, artifact = ?, error = ? WHERE key = ?",
                (
                    result.status,
                    result.started,
                    finished,
                    result.worker,
                    env_id,
                    result.artifact,
                    result.error,
                    result.key,
                ),
            )
            if cur.rowcount != 1:
                raise StateMismatchError(f"run {result.key} was never started in {self.path}")

    def mark(self, keys: Iterable[str], status: str, error: str | None = None) -> None:
        """Set the status of existing runs (e.g. ``interrupted``)."""
        with self._tx() as c:
            c.executemany(
                "UPDATE runs SET status = ?, error = ? WHERE key = ?",
                [(status, error, k) for k in keys],
            )

    def skip(self, key: str, stage: str, labels: dict[str, Any], reason: str) -> None:
        """Record a run that cannot start because an upstream run did not finish."""
        with self._tx() as c:
            c.execute(
                "INSERT INTO runs (key, stage, dataset, model, method, seed, status, error) "
                "VALUES (?, ?, ?, ?, ?, ?, 'skipped', ?) ON CONFLICT(key) DO UPDATE SET "
                "status = 'skipped', error = excluded.error",
                (
                    key,
                    stage,
                    labels.get("dataset"),
                    labels.get("model"),
                    labels.get("method"),
                    labels.get("seed"),
                    reason,
                ),
            )

    # ------------------------------------------------------------------ reading

    def status(self, key: str) -> str | None:
        row = self._conn.execute("SELECT status FROM runs WHERE key = ?", (key,)).fetchone()
        return row["status"] if row else None

    def statuses(self, keys: Iterable[str]) -> dict[str, str]:
        keys = list(keys)
        out: dict[str, str] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for r in self._conn.execute(
                f"SELECT key, status FROM runs WHERE key IN ({marks})", chunk
            ):
                out[r["key"]] = r["status"]
        return out

    def run(self, key: str) -> RunRow | None:
        row = self._conn.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone()
        return RunRow(**dict(row)) if row else None

    def runs(self, stage: str | None = None) -> list[RunRow]:
        if stage is None:
            rows = self._conn.execute("SELECT * FROM runs ORDER BY started")
        else:
            rows = self._conn.execute(
                "SELECT * FROM runs WHERE stage = ? ORDER BY started", (stage,)
            )
        return [RunRow(**dict(r)) for r in rows]

    def params(self, key: str) -> dict[str, Any]:
        return {
            r["name"]: json.loads(r["value"])
            for r in self._conn.execute("SELECT name, value FROM params WHERE key = ?", (key,))
        }

    def metrics(self, key: str) -> dict[str, float]:
        return {
            r["name"]: (math.nan if r["value"] is None else float(r["value"]))
            for r in self._conn.execute("SELECT name, value FROM metrics WHERE key = ?", (key,))
        }

    def timings(self, key: str) -> dict[str, float]:
        return {
            r["name"]: float(r["seconds"])
            for r in self._conn.execute("SELECT name, seconds FROM timings WHERE key = ?", (key,))
        }

    def counts(self) -> dict[tuple[str, str], int]:
        """Number of runs per (stage, status)."""
        return {
            (r["stage"], r["status"]): int(r["n"])
            for r in self._conn.execute(
                "SELECT stage, status, COUNT(*) AS n FROM runs GROUP BY stage, status"
            )
        }


def _real(v: Any) -> float | None:
    """SQLite stores NaN as NULL; keep +-inf."""
    x = float(v)
    return None if math.isnan(x) else x
