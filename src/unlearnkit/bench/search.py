"""Hyper-parameter search against the retrain reference (Deep Unlearn, docs/methods.md).

One Optuna study per (dataset, model, method, search seed), stored in any Optuna storage
(default ``sqlite:///DIR/optuna.db``). Trials run one at a time through Optuna's ask/tell
interface, with the method's declared search space (``Unlearner.search_space(E*)``) as fixed
distributions, until the study holds ``trials`` finished (COMPLETE or PRUNED) trials; the same
command resumes a study where it stopped (trials left RUNNING by a crash are marked FAIL first).

Sampler seed (:func:`sampler_seed`): derived from the study's key (dataset, model, method,
search seed), so two studies never share a proposal stream merely because they share a search
seed; the seed is a pure function of the key, so a study resumes with the same stream.

Pruning (:mod:`unlearnkit.bench.pruning`): a trial whose model is hopeless (non-finite,
collapsed, or weakly dominated by the Original on all four objectives) is told PRUNED, with its
objective values kept as the user attribute ``values`` and the reason as ``pruned``; it counts
towards the budget but is never selected.

Objective of a trial (all four minimised; R = the retrained model of the same seed, on
validation data only, never test):

    o = (⅓|RA_U − RA_R|, ⅓|FA_U − FA_R|, ⅓|VA_U − VA_R|, 1 − Indisc(ValMIA_U))

(:func:`unlearnkit.evaluation.deep_unlearn_objectives`). A trial whose method raises
:class:`~unlearnkit.errors.NumericalError` (diverged) is marked FAIL and the search goes on,
up to ``max_failed`` failures; any other error stops the study and fails the run.

Selection (:func:`select_best`): in each study the COMPLETE trials among the first ``trials``
finished ones by number, score ‖o‖₂, the minimum per study (ties: lowest trial number), then
the minimum over the studies (ties: first study); its parameters are used for every seed of the
final runs. If every trial was pruned, the same rule runs over the pruned trials' stored values.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from unlearnkit.bench.config import SearchConfig
from unlearnkit.errors import NumericalError
from unlearnkit.registry import Registry

SAMPLERS: Registry[Callable[[SearchConfig, int], optuna.samplers.BaseSampler]] = Registry(
    "search sampler"
)
SAMPLERS.register("nsga3")(
    lambda cfg, seed: optuna.samplers.NSGAIIISampler(population_size=cfg.population_size, seed=seed)
)
SAMPLERS.register("random")(lambda cfg, seed: optuna.samplers.RandomSampler(seed=seed))

DIRECTIONS = ["minimize"] * 4
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def sampler_seed(dataset: str, model: str, method: str, search_seed: int) -> int:
    """The sampler seed of one study: the first 4 bytes (big-endian) of
    SHA-256(``"unlearnkit-study|<dataset>|<model>|<method>|<search seed>"``), in [0, 2³²)."""
    text = f"unlearnkit-study|{dataset}|{model}|{method}|{int(search_seed)}"
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big")


def open_study(
    name: str, storage: optuna.storages.BaseStorage, cfg: SearchConfig, seed: int
) -> optuna.Study:
    """Create or load the study ``name`` with ``cfg``'s sampler seeded with ``seed``
    (:func:`sampler_seed`) and Deep Unlearn's four minimised objectives."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=SAMPLERS.get(cfg.sampler)(cfg, seed),
        directions=DIRECTIONS,
        load_if_exists=True,
    )
    study.set_metric_names(list(OBJECTIVE_NAMES))
    return study


OBJECTIVE_NAMES = ("o_ra", "o_fa", "o_va", "o_indisc")


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage; SQLite URLs get a 60 s lock timeout (several workers share it)."""
    if url.startswith("sqlite"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60.0}})
    return optuna.storages.RDBStorage(url)


def score(values: Sequence[float]) -> float:
    """Deep Unlearn's selection score ‖o‖₂ (infinite if any objective is)."""
    return math.sqrt(sum(float(v) ** 2 for v in values))


@dataclass(frozen=True)
class Selection:
    """The chosen trial: its parameters, objective vector, score and provenance."""

    params: dict[str, Any]
    values: tuple[float, ...]
    score: float
    study: int
    trial: int


def first_finished(trials: Sequence[FrozenTrial], n: int) -> list[FrozenTrial]:
    """The first ``n`` finished (COMPLETE or PRUNED) trials by trial number."""
    done = sorted((t for t in trials if t.state in FINISHED), key=lambda t: t.number)
    return done[:n]


def first_complete(trials: Sequence[FrozenTrial], n: int) -> list[FrozenTrial]:
    """The COMPLETE trials among the first ``n`` finished ones, by trial number."""
    return [t for t in first_finished(trials, n) if t.state == TrialState.COMPLETE]


def select_best(studies: Sequence[Sequence[FrozenTrial]], n: int) -> Selection | None:
    """Min-L2 selection (module docstring). If no study has a COMPLETE trial, the same
    selection over the PRUNED trials with finite stored ``values`` (so a method whose every
    trial was hopeless still gets a configuration; the report's flag shows a do-nothing one);
    ``None`` if there is none either."""
    best: Selection | None = None
    for state in (TrialState.COMPLETE, TrialState.PRUNED):
        for i, trials in enumerate(studies):
            for t in first_finished(trials, n):
                values = t.values if state == TrialState.COMPLETE else t.user_attrs.get("values")
                if t.state != state or values is None:
                    continue
                s = score(values)
                if math.isfinite(s) and (best is None or s < best.score):
                    best = Selection(dict(t.params), tuple(values), s, i, t.number)
        if best is not None:
            return best
    return None


def fail_stale(study: optuna.Study) -> int:
    """Mark trials left RUNNING (by a crash) as FAIL; one process owns a study at a time."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL)
    return len(stale)


def run_study(
    study: optuna.Study,
    space: dict[str, BaseDistribution],
    objective: Callable[[dict[str, Any]], tuple[tuple[float, ...], dict[str, float]]],
    trials: int,
    max_failed: int,
    prune: Callable[[Sequence[float], dict[str, float]], str | None] | None = None,
) -> dict[str, int]:
    """Ask/tell until ``trials`` finished trials exist (see the module docstring).

    ``objective(params) -> (values, extra)``; ``extra`` numbers are stored as user attributes.
    ``prune(values, extra)`` returns a reason to prune the trial, or ``None`` to keep it.
    Returns counts: complete and pruned (in the study), failed (this call), stale (marked
    FAIL), run (this call).
    """
    stale = fail_stale(study)
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    failed = ran = 0
    while finished < trials:
        trial = study.ask(space)
        t0 = time.perf_counter()
        try:
            values, extra = objective(dict(trial.params))
        except NumericalError as err:
            trial.set_user_attr("error", str(err))
            study.tell(trial, state=TrialState.FAIL)
            failed += 1
            ran += 1
            if failed > max_failed:
                raise NumericalError(
                    f"{failed} trials failed (last: {err}); raise search.max_failed or "
                    "narrow the method's search space"
                ) from None
            continue
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        for k, v in extra.items():
            trial.set_user_attr(k, v)
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        reason = prune(values, extra) if prune is not None else None
        if reason is not None:
            trial.set_user_attr("values", [float(v) for v in values])
            trial.set_user_attr("pruned", reason)
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, list(values))
        finished += 1
        ran += 1
    done = study.get_trials(deepcopy=False, states=FINISHED)
    complete = sum(t.state == TrialState.COMPLETE for t in done)
    return {
        "complete": complete,
        "pruned": len(done) - complete,
        "failed": failed,
        "stale": stale,
        "ran": ran,
    }
