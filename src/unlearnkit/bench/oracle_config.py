"""Experiment sections for oracle pools, KLoM and reference vetting (issue 13).

Imported by :mod:`unlearnkit.bench.config` (fields ``oracles`` and ``references`` of
:class:`~unlearnkit.bench.config.Experiment`); kept apart so the two files change
independently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OracleConfig(_Strict):
    """A pool of retrained "oracle" models (and one of originals) per setting, trained with
    :func:`unlearnkit.training.batched.train_many` and cached as content-keyed pool members
    (:mod:`unlearnkit.jobs.pools`); every row's models over seeds are compared with the
    retrain pool by KLoM (:mod:`unlearnkit.metrics.klom`) and a pool-based U-LiRA
    (:mod:`unlearnkit.bench.oracle_audit`). ``size: 0`` turns the stage off.

    Member ``k`` is a benchmark Original / Retrain with model seed ``seed + k``: initial
    weights from that seed, data order from ``train_seed + seed + k``; members that do not
    train (:class:`ReferenceConfig`) are replaced by the next seeds.
    """

    size: int = Field(0, ge=0, description="retrained models in the pool; 0: no pools")
    originals: int | None = Field(None, ge=0, description="originals in the pool; default size")
    seed: int = Field(1000, ge=0, description="model seed of member 0 (not a benchmark seed)")
    chunk: int = Field(16, ge=1, description="members trained together by one train_many job")
    bins: int = Field(20, ge=2, description="KLoM histogram bins")
    max_rejected: int = Field(8, ge=0, description="members allowed to fail before giving up")

    def n_originals(self) -> int:
        return self.size if self.originals is None else self.originals


class InjectedFault(_Strict):
    """A recipe override for the *first* training attempt of one seed's Original or Retrain:
    a deliberately broken run that :class:`ReferenceConfig`'s check must catch (tests)."""

    seed: int
    role: Literal["original", "retrain"]
    training: dict[str, Any] = Field(min_length=1)


class ReferenceConfig(_Strict):
    """Reference models that did not train are replaced before anything uses them.

    A trained Original / Retrain (or oracle-pool member) is accepted when its test accuracy
    is at least ``chance + min_gain · (1 − chance)``, chance being the larger of ``1/K`` and
    the share of the test set's most frequent class (multiclass tasks; other tasks are not
    checked), and its training did not diverge. Otherwise it is trained again with the next
    data-order seed (``+ 1_000_003`` per attempt, the initial weights kept), at most
    ``replacements`` times; the run records every replaced attempt and why.
    """

    min_gain: float = Field(0.1, ge=0.0, lt=1.0)
    replacements: int = Field(3, ge=0)
    inject: list[InjectedFault] = Field(default_factory=list)


def check_oracles(o: OracleConfig, model_seeds: Sequence[int], vary_forget: bool) -> None:
    """Oracle seeds must not be benchmark seeds, and KLoM needs one forget set for all seeds
    (raises ``ValueError``, which the experiment's validation turns into a ConfigError)."""
    if o.size == 0 and o.n_originals() == 0:
        return
    if o.size == 0:
        raise ValueError("oracles.originals needs oracles.size > 0 (the retrain pool)")
    if vary_forget:
        raise ValueError(
            "oracles need one forget set for every seed; set vary_forget: false or oracles.size: 0"
        )
    pool = range(o.seed, o.seed + max(o.size, o.n_originals()) + o.max_rejected)
    clash = sorted(set(model_seeds) & set(pool))
    if clash:
        raise ValueError(
            f"oracle seeds {o.seed}..{pool.stop - 1} overlap the benchmark seeds {clash}; "
            "change oracles.seed"
        )


def check_references(
    r: ReferenceConfig, recipe: dict[str, Any], model_seeds: Sequence[int]
) -> None:
    """Injected faults name benchmark seeds and give valid recipe overrides."""
    from unlearnkit.training import make_recipe

    for i, fault in enumerate(r.inject):
        if fault.seed not in model_seeds:
            raise ValueError(f"references.inject.{i}: seed {fault.seed} is not a benchmark seed")
        try:
            make_recipe({**recipe, **fault.training})
        except Exception as err:  # ConfigError / ValidationError from the recipe
            raise ValueError(f"references.inject.{i}.training: {err}") from None
