"""Deterministic seeding of every RNG a run touches."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch with ``seed``; return a torch Generator seeded the same.

    Deep Unlearn calls its ``setup_seed(123)`` right before every training or unlearning run
    (spec/methods.md §1.4); callers do the same with their own seed.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g
