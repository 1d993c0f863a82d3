"""Deterministic seeding of every RNG a run touches, and restoring the caller's RNG state."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch with ``seed``; return a torch Generator seeded the same.

    Deep Unlearn (Cadet et al., arXiv 2410.01276) calls its ``setup_seed(123)`` right before
    every training or unlearning run; unlearnkit does the same with the run's seed, inside
    :func:`preserved_rng_state` so that the caller's generators are left as they were.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


@contextlib.contextmanager
def preserved_rng_state(cuda: bool = False) -> Iterator[None]:
    """Restore the global RNG states on exit (also on error): python ``random``, numpy's legacy
    global generator, torch's CPU generator and every CUDA device's when CUDA is initialised
    on entry or ``cuda`` is set (pass ``cuda=True`` when the block will use CUDA: its
    generators are then captured before the block can seed them).

    A caller's draws after the block are the draws it would have made without the block.
    """
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = torch.get_rng_state()
    use_cuda = torch.cuda.is_initialized() or (cuda and torch.cuda.is_available())
    cuda_states = torch.cuda.get_rng_state_all() if use_cuda else None
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
