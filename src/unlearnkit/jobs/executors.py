"""Executors: where jobs run. Registry :data:`EXECUTORS`.

A job is any picklable object with a ``key``; ``run(jobs, fn, shared)`` calls
``fn(job, shared)`` (a module-level function returning a :class:`~unlearnkit.jobs.store.RunResult`)
for each job and yields the results as they complete. ``shared`` is data every job reads (a
population dataset): it travels once per worker (process-pool initializer, one Ray object),
not once per job.

* ``inline``: in the driver process, one after the other (``workers: 0``; debugging).
* ``local``: a process pool (:class:`concurrent.futures.ProcessPoolExecutor`, ``spawn``
  start method so no worker inherits the driver's threads or locks). The default. On Linux
  every worker dies with the driver, even a ``kill -9``-ed one (:func:`die_with_parent`).
* ``ray``: Ray tasks (``num_cpus=1`` each). Without an address a private local Ray instance is
  started (loopback only, no dashboard, temporary directory removed at the end); with
  ``--ray-address`` the driver joins an existing cluster. Workers on other machines must see
  the benchmark directory at the same path (a shared file system) and have unlearnkit
  installed.

Every worker runs with ``threads`` torch threads (1 by default), so the same jobs give
identical results on every executor. ``close(cancel=True)`` stops running work. The bench's
stages (:func:`unlearnkit.bench.tasks.execute`) and the audit's pools
(:func:`unlearnkit.jobs.pools.run_member`) run on these executors.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

import torch

from unlearnkit.errors import ConfigError
from unlearnkit.jobs.store import RunResult
from unlearnkit.registry import Registry

#: ``fn(job, shared) -> RunResult``: runs one job in a worker (module-level, picklable).
JobFn = Callable[[Any, Any], RunResult]

_SHARED: Any = None  # the shared data of this worker process (set by the initializer)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """Make this process die (SIGKILL) when ``parent``, the process that started it, ends,
    however it ends (``kill -9`` included): Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``.

    The kernel sends the signal when the *thread* that forked this process exits; the local
    executor starts its workers from the driver's main thread. If ``parent`` is already gone
    when this runs (the process was re-parented), exit at once. Elsewhere than Linux: no-op.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(1)


def _worker_init(threads: int, shared: Any, parent: int | None = None) -> None:
    global _SHARED
    if parent is not None:
        die_with_parent(parent)
    _SHARED = shared
    torch.set_num_threads(threads)


def _call_with_shared(fn: JobFn, job: Any) -> RunResult:
    return fn(job, _SHARED)


def _call(fn: JobFn, job: Any, shared: Any, threads: int) -> RunResult:
    torch.set_num_threads(threads)
    return fn(job, shared)


class Executor(ABC):
    """Runs jobs and yields their results as they complete."""

    @abstractmethod
    def run(self, jobs: Sequence[Any], fn: JobFn, shared: Any = None) -> Iterator[RunResult]: ...

    def close(self, cancel: bool = False) -> None:  # noqa: B027  (optional hook)
        """Release workers; ``cancel`` stops work still running."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type: Any, *rest: object) -> None:
        self.close(cancel=exc_type is not None)


def _failed(job: Any, err: BaseException) -> RunResult:
    return RunResult(key=job.key, status="failed", error=f"{type(err).__name__}: {err}")


class InlineExecutor(Executor):
    """Runs each job in this process, one after the other (exceptions propagate)."""

    def __init__(self, workers: int = 0, **_: Any) -> None:
        pass

    def run(self, jobs: Sequence[Any], fn: JobFn, shared: Any = None) -> Iterator[RunResult]:
        for job in jobs:
            yield fn(job, shared)


class LocalExecutor(Executor):
    """A pool of ``workers`` spawned processes (default: the CPU count); a new ``shared``
    object starts a new pool (the old one is shut down)."""

    def __init__(self, workers: int | None = None, threads: int = 1, **_: Any) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.threads = threads
        self._pool: ProcessPoolExecutor | None = None
        self._shared: Any = None

    def _pool_for(self, shared: Any) -> ProcessPoolExecutor:
        if self._pool is None or shared is not self._shared:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            self._shared = shared
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
                initargs=(self.threads, shared, os.getpid()),
            )
        return self._pool

    def run(self, jobs: Sequence[Any], fn: JobFn, shared: Any = None) -> Iterator[RunResult]:
        pool = self._pool_for(shared)
        futures: dict[Future[RunResult], Any] = {
            pool.submit(_call_with_shared, fn, job): job for job in jobs
        }
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                try:
                    yield f.result()
                except Exception as err:  # a worker died (e.g. killed for memory)
                    yield _failed(futures[f], err)

    def close(self, cancel: bool = False) -> None:
        if self._pool is None:
            return
        if cancel:
            procs = list(getattr(self._pool, "_processes", {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                if p.is_alive():
                    p.terminate()
            for p in procs:
                p.join(timeout=5)
        else:
            self._pool.shutdown(wait=True)


class RayExecutor(Executor):
    """Ray tasks; a private local instance unless ``ray_address`` names a cluster."""

    def __init__(
        self,
        workers: int | None = None,
        threads: int = 1,
        ray_address: str | None = None,
        **_: Any,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("the ray executor needs Ray: pip install 'unlearnkit[ray]'") from None
        self._ray = ray
        self._owned = False
        self._tmp: str | None = None
        if not ray.is_initialized():
            if ray_address:
                ray.init(address=ray_address, log_to_driver=False)
            else:
                # A short path: Ray's unix sockets live below it (107-character limit).
                self._tmp = tempfile.mkdtemp(prefix="ukray-", dir="/tmp")
                ray.init(
                    address="local",
                    num_cpus=workers or os.cpu_count() or 1,
                    include_dashboard=False,
                    log_to_driver=False,
                    _temp_dir=self._tmp,
                    _node_ip_address="127.0.0.1",
                )
            self._owned = True
        self.threads = threads
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_call)
        self._refs: dict[Any, Any] = {}

    def run(self, jobs: Sequence[Any], fn: JobFn, shared: Any = None) -> Iterator[RunResult]:
        ray = self._ray
        shared_ref = ray.put(shared) if shared is not None else None  # one copy for all jobs
        self._refs = {self._remote.remote(fn, job, shared_ref, self.threads): job for job in jobs}
        while self._refs:
            ready, _ = ray.wait(list(self._refs), num_returns=1)
            for ref in ready:
                task = self._refs.pop(ref)
                try:
                    yield ray.get(ref)
                except Exception as err:  # worker crash, node loss
                    yield _failed(task, err)

    def close(self, cancel: bool = False) -> None:
        ray = self._ray
        if cancel:
            for ref in list(self._refs):
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # already finished
                    pass
        self._refs = {}
        if self._owned and ray.is_initialized():
            ray.shutdown()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


EXECUTORS: Registry[Callable[..., Executor]] = Registry("executor")
EXECUTORS.register("inline")(InlineExecutor)
EXECUTORS.register("local")(LocalExecutor)
EXECUTORS.register("ray")(RayExecutor)


def make_executor(
    kind: str, workers: int | None = None, threads: int = 1, ray_address: str | None = None
) -> Executor:
    """``local`` with ``workers=0`` runs inline."""
    if kind == "local" and workers == 0:
        kind = "inline"
    return EXECUTORS.get(kind)(workers=workers, threads=threads, ray_address=ray_address)
