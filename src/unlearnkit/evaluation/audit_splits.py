"""Who trains on what in a U-LiRA audit: the split schemes (registry :data:`SPLIT_SCHEMES`).

A scheme turns the population (the ids shadow models may train on) into a :class:`SplitPlan`:

* ``splits``: one shadow *original* per split, trained on ``train_ids`` with its seeds;
* ``runs``: unlearning runs, each forgetting ``forget_ids`` ⊂ its split's ``train_ids``
  (retain = ``train_ids`` minus ``forget_ids``); one *retrain* model per run (same initial
  weights and seed as the original, trained on retain) when the audit needs it;
* ``targets``: the ids the attack is scored on.

``hayes`` (Hayes et al. 2024 with LiRA's shadow design, Carlini et al. 2022; spec §3.4, §3.5):
  * targets T: ``round(target_fraction · n)`` population ids, ``default_rng(seed)``;
  * split k trains on a random half of the population: ``⌊n/2⌋`` ids drawn by
    ``default_rng([seed, k])``, independently per split, so a pool can grow;
  * run k forgets every target in its half, F_k = H_k ∩ T, so each target is unlearned by
    about half the shadows and never seen by the other half;
  * split k's initial weights and training seed are ``seed + k`` (shadows differ in data
    *and* randomness).

``deepunlearn`` (Deep Unlearn's released ``munl/lira`` split scheme; spec "Deep Unlearn's own
evaluation" §3.8 (a), steps 2-3):
  * split s: ``default_rng(s).permutation`` of the population (ids ascending); the first
    ``⌊n/2⌋`` are "in", the rest "out";
  * forget set f of split s: ``default_rng(f).permutation`` of the in-half; the last
    ``round(forget_fraction · |in|)`` are forgotten (``forget_fraction`` 0.1 in the paper);
  * every model starts from the same initial weights (seed ``seed``, Deep Unlearn uses 0) and
    trains with seed 123;
  * targets: the whole population.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from unlearnkit.errors import ConfigError
from unlearnkit.registry import Registry

#: Deep Unlearn's training seed (its setup_seed(123) before every run).
DEEP_UNLEARN_TRAIN_SEED = 123


@dataclass(frozen=True)
class Split:
    """One shadow original: its training ids (sorted) and seeds."""

    index: int
    train_ids: np.ndarray
    init_seed: int
    train_seed: int


@dataclass(frozen=True)
class Run:
    """One unlearning run on split ``split``: forget ``forget_ids`` (sorted)."""

    index: int
    split: int
    forget_ids: np.ndarray


@dataclass(frozen=True)
class SplitPlan:
    """Population ids (sorted), target ids (sorted), the splits and the runs."""

    population: np.ndarray
    targets: np.ndarray
    splits: list[Split]
    runs: list[Run]

    def retain_ids(self, run: Run) -> np.ndarray:
        return np.setdiff1d(self.splits[run.split].train_ids, run.forget_ids, assume_unique=True)

    def masks(self) -> dict[str, np.ndarray]:
        """Boolean (runs, targets) matrices.

        * ``forgotten``: x ∈ F_r (trained on by the original, then unlearned);
        * ``unseen``: x ∉ H_{split(r)} (never seen by any model of that split);
        * ``retained``: x ∈ H_{split(r)} \\ F_r.
        """
        n_runs, n_t = len(self.runs), self.targets.size
        forgotten = np.zeros((n_runs, n_t), dtype=bool)
        unseen = np.zeros((n_runs, n_t), dtype=bool)
        for r in self.runs:
            forgotten[r.index] = np.isin(self.targets, r.forget_ids)
            unseen[r.index] = ~np.isin(self.targets, self.splits[r.split].train_ids)
        return {"forgotten": forgotten, "unseen": unseen, "retained": ~(forgotten | unseen)}


@dataclass(frozen=True)
class SchemeOptions:
    """Knobs of the schemes (each scheme reads the ones it documents)."""

    shadows: int
    seed: int = 0
    target_fraction: float = 0.1
    forget_sets: int = 1
    forget_fraction: float = 0.1


SPLIT_SCHEMES: Registry[Callable[[np.ndarray, SchemeOptions], SplitPlan]] = Registry(
    "U-LiRA split scheme"
)


def _half(n: int) -> int:
    if n < 4:
        raise ConfigError(f"a population of {n} samples is too small to split in halves")
    return n // 2


@SPLIT_SCHEMES.register("hayes")
def hayes_plan(population: np.ndarray, opts: SchemeOptions) -> SplitPlan:
    """Random halves of the population; each split forgets the targets it trained on."""
    pop = np.sort(np.asarray(population, dtype=np.int64))
    n_targets = round(opts.target_fraction * pop.size)
    if n_targets < 2 or n_targets > pop.size:
        raise ConfigError(
            f"target_fraction {opts.target_fraction} of {pop.size} samples gives {n_targets} "
            "targets; need at least 2"
        )
    targets = np.sort(np.random.default_rng(opts.seed).choice(pop, n_targets, replace=False))
    half = _half(pop.size)
    splits, runs = [], []
    for k in range(opts.shadows):
        rng = np.random.default_rng([opts.seed, k])
        train = np.sort(rng.choice(pop, half, replace=False))
        splits.append(Split(k, train, opts.seed + k, opts.seed + k))
        runs.append(Run(k, k, np.intersect1d(train, targets, assume_unique=True)))
    return SplitPlan(pop, targets, splits, runs)


@SPLIT_SCHEMES.register("deepunlearn")
def deepunlearn_plan(population: np.ndarray, opts: SchemeOptions) -> SplitPlan:
    """Deep Unlearn's splits: ``default_rng(s)`` halves, ``default_rng(f)`` forget sets."""
    pop = np.sort(np.asarray(population, dtype=np.int64))
    half = _half(pop.size)
    if opts.forget_sets < 1:
        raise ConfigError("forget_sets must be at least 1")
    splits, runs = [], []
    for s in range(opts.shadows):
        perm = pop[np.random.default_rng(s).permutation(pop.size)]
        inside = perm[:half]
        splits.append(Split(s, np.sort(inside), opts.seed, DEEP_UNLEARN_TRAIN_SEED))
        n_forget = round(opts.forget_fraction * inside.size)
        if not 1 <= n_forget < inside.size:
            raise ConfigError(
                f"forget_fraction {opts.forget_fraction} of {inside.size} gives {n_forget} samples"
            )
        for f in range(opts.forget_sets):
            order = inside[np.random.default_rng(f).permutation(inside.size)]
            runs.append(Run(len(runs), s, np.sort(order[-n_forget:])))
    return SplitPlan(pop, pop.copy(), splits, runs)
