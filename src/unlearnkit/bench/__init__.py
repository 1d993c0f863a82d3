"""The benchmark harness: datasets x models x methods x seeds, resumable, local or on Ray.

>>> from unlearnkit.bench import load_experiment, run_benchmark, write_report  # doctest: +SKIP
>>> exp = load_experiment("smoke")                                              # doctest: +SKIP
>>> run_benchmark(exp, "out/smoke")          # writes out/smoke/results.db, report.html  # doctest: +SKIP

Modules: :mod:`.config` (the experiment file), :mod:`.presets`,
:mod:`.context` (content keys of every stage), :mod:`.planners` (the tasks of each stage),
:mod:`.stages` (the pipeline), :mod:`.tasks` (worker side), :mod:`.search` (Optuna),
:mod:`.trials` (method configurations: fixed, per trial, checked up front),
:mod:`.evaluate` (the evaluation suite on a split), :mod:`.runner` (the driver),
:mod:`.results`, :mod:`.stats`, :mod:`.plots`, :mod:`.report`. Keys, the SQLite store and the
executors (local, Ray) are the job system's (:mod:`unlearnkit.jobs`).
See docs/harness.md.
"""

from unlearnkit.bench.config import Experiment
from unlearnkit.bench.experiment_file import load_experiment, parse_experiment
from unlearnkit.bench.presets import PRESETS
from unlearnkit.bench.report import write_report
from unlearnkit.bench.runner import BenchSummary, run_benchmark
from unlearnkit.jobs.store import Store

__all__ = [
    "PRESETS",
    "BenchSummary",
    "Experiment",
    "Store",
    "load_experiment",
    "parse_experiment",
    "run_benchmark",
    "write_report",
]
