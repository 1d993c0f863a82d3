"""Did a reference model train? The acceptance rule for Originals, Retrains and pool members.

A model is accepted when its training did not diverge and its test accuracy is at least

    threshold = chance + min_gain · (1 − chance),    chance = max(1/K, max_c share_c(test))

(K classes; share_c the fraction of test samples of class c, so chance is the accuracy of
the best constant predictor). ``min_gain`` is a fraction of the room above chance (default
0.1: on a balanced 10-class set the threshold is 0.19). Only multiclass tasks are checked.
A rejected model is trained again with the next data-order seed: attempt a uses
``train_seed + a · REPLACEMENT_STRIDE`` (the initial weights are kept), so a replacement
never reuses another benchmark seed's data order.
"""

from __future__ import annotations

import math
from typing import Any

import torch

#: data-order seed offset between two attempts of one reference model (a prime far above
#: any benchmark seed count)
REPLACEMENT_STRIDE = 1_000_003


def chance_accuracy(test: Any) -> float | None:
    """max(1/K, largest class share) of a multiclass dataset; None for other tasks."""
    if getattr(test, "task", "multiclass") != "multiclass" or len(test) == 0:
        return None
    y = test.targets_for_class() if hasattr(test, "targets_for_class") else test.y
    counts = torch.bincount(torch.as_tensor(y).long().flatten(), minlength=test.num_outputs)
    return max(1.0 / int(test.num_outputs), float(counts.max()) / float(counts.sum()))


def threshold(chance: float | None, min_gain: float) -> float | None:
    """chance + min_gain · (1 − chance), or None when there is no chance level."""
    return None if chance is None else chance + min_gain * (1.0 - chance)


def verdict(test_accuracy: float | None, bar: float | None, diverged: bool = False) -> str | None:
    """None if accepted, else the reason (a sentence for the report)."""
    if diverged:
        return "training diverged (non-finite loss)"
    if bar is None or test_accuracy is None:
        return None
    if not math.isfinite(test_accuracy) or test_accuracy < bar:
        return f"test accuracy {test_accuracy:.4f} below {bar:.4f} (chance + margin)"
    return None


def attempt_seed(train_seed: int, attempt: int) -> int:
    """The data-order seed of attempt ``attempt`` (0: the seed itself)."""
    return train_seed + attempt * REPLACEMENT_STRIDE
