"""The ``memorised`` forget selector: the most memorised examples of the training split.

``memorised:AMOUNT`` picks the examples with the largest leave-out memorisation score
mem(i) = mean_{IN models} s(i) − mean_{OUT models} s(i) (Feldman & Zhang 2020; module
:mod:`unlearnkit.metrics.memorisation`), where the models are a pool trained on complementary
random halves of the dataset being split (:mod:`unlearnkit.jobs.memorisation`, default pool:
16 MLPs 2×256, memorising SGD, statistic = correctness). The pool is trained once per
(dataset, pool, seed) and cached by content key under ``$UNLEARNKIT_CACHE/memorisation``
(default ``~/.cache/unlearnkit/memorisation``); the selection seed seeds the halves.

``memorised:AMOUNT:@FILE`` takes the scores from a safetensors file with int64 ``ids`` and
float ``scores`` instead (e.g. the ``scores.safetensors`` of a custom pool made with
:func:`unlearnkit.jobs.memorisation.memorisation_pool`); it must score every sample of the
dataset.

AMOUNT is a fraction in (0, 1] (``round(fraction · n)`` samples) or a count k ≥ 1. Ties are
broken by the smaller id (:func:`unlearnkit.metrics.memorisation.most_memorised`), so the
selection is deterministic given the scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import field_validator

from unlearnkit.data.base import DatasetLike
from unlearnkit.data.forget import FORGET_SELECTORS, ForgetSpec
from unlearnkit.errors import DataError


@FORGET_SELECTORS.register("memorised")
class MemorisedForget(ForgetSpec):
    """The ``amount`` most memorised samples (module docstring); ``scores``: ``@FILE`` or
    None (train / reuse the default pool)."""

    kind: Literal["memorised"] = "memorised"
    amount: int | float
    scores: str | None = None
    positional: ClassVar[tuple[str, ...]] = ("amount", "scores")
    optional: ClassVar[int] = 1
    usage: ClassVar[str] = "memorised:FRACTION_OR_COUNT or memorised:FRACTION_OR_COUNT:@FILE"

    @field_validator("amount")
    @classmethod
    def _amount(cls, v: int | float) -> int | float:
        if isinstance(v, float) and v.is_integer() and v > 1:
            v = int(v)
        if isinstance(v, int) and v < 1 or isinstance(v, float) and not 0.0 < v <= 1.0:
            raise ValueError(f"amount must be a fraction in (0, 1] or a count >= 1, got {v}")
        return v

    @field_validator("scores")
    @classmethod
    def _file(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("@"):
            raise ValueError(f"scores must be '@FILE' (a safetensors file), got {v!r}")
        return v

    def count(self, n: int) -> int:
        """Samples selected out of ``n``."""
        k = self.amount if isinstance(self.amount, int) else round(self.amount * n)
        if not 1 <= k <= n:
            raise DataError(f"memorised:{self.amount} selects {k} of {n} samples")
        return k

    def score_of(self, dataset: DatasetLike, seed: int) -> np.ndarray:
        """mem(i) for the dataset's ids, in the order of ``dataset.ids``."""
        ids = dataset.ids.numpy()
        if self.scores is None:
            from unlearnkit.jobs.memorisation import MemorisationPool, memorisation_pool

            return memorisation_pool(dataset, MemorisationPool(seed=seed)).scores  # type: ignore[arg-type]
        return _file_scores(Path(self.scores[1:]).expanduser(), ids)

    def forget_ids(self, dataset: DatasetLike, seed: int) -> np.ndarray:
        from unlearnkit.metrics.memorisation import most_memorised

        ids = dataset.ids.numpy()
        k = self.count(len(ids))  # checked before any pool is trained
        return most_memorised(ids, self.score_of(dataset, seed), k)


def _file_scores(path: Path, ids: np.ndarray) -> np.ndarray:
    from unlearnkit.io import load_tensors

    if not path.is_file():
        raise DataError(f"memorisation score file {path} does not exist")
    try:
        t = load_tensors(path)
        file_ids, scores = t["ids"].numpy().astype(np.int64), t["scores"].double().numpy()
    except Exception as err:  # not safetensors, or keys missing
        raise DataError(
            f"{path} is not a score file (safetensors with 'ids' and 'scores'): {err}"
        ) from None
    if file_ids.shape != scores.shape or file_ids.ndim != 1:
        raise DataError(f"{path}: 'ids' and 'scores' must be 1-D of one length")
    order = np.argsort(file_ids)
    pos = np.searchsorted(file_ids[order], ids)
    pos = np.clip(pos, 0, max(len(order) - 1, 0))
    found = len(order) > 0 and file_ids[order][pos] == ids
    if not np.all(found):
        missing = ids[~np.asarray(found, dtype=bool)] if len(order) else ids
        raise DataError(f"{path} has no score for {len(missing)} sample(s), e.g. id {missing[0]}")
    out = scores[order][pos]
    if not np.isfinite(out).all():
        raise DataError(f"{path} holds non-finite scores")
    return out
