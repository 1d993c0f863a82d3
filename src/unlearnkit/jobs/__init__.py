"""The one job system: content keys, the results store, executors, and training pools.

* :mod:`.keys`: ``content_key(kind, **parts)``, SHA-256 of canonical JSON: a job's key hashes
  everything that determines it.
* :mod:`.store`: one SQLite ``results.db`` per folder (runs, params, metrics, timings,
  environments); artifacts are safetensors files named by the run key.
* :mod:`.executors`: inline, a local process pool, Ray (local or a cluster).
* :mod:`.lock`: one writer per folder (``folder_lock``), released when its process ends.
* :mod:`.pools`: the audit's shadow, retrain and unlearned pools, whose members are jobs run on
  an executor and optionally recorded in a store.
"""

from unlearnkit.jobs.executors import EXECUTORS, Executor, JobFn, make_executor
from unlearnkit.jobs.keys import canonical_json, content_key
from unlearnkit.jobs.store import FINISHED, RunResult, RunRow, Store

__all__ = [
    "EXECUTORS",
    "FINISHED",
    "Executor",
    "JobFn",
    "RunResult",
    "RunRow",
    "Store",
    "canonical_json",
    "content_key",
    "make_executor",
]
