"""Optuna distributions of the zoo's hyper-parameters (Deep Unlearn's search spaces, Cadet et
al., arXiv 2410.01276; see docs/methods.md).
"""

from __future__ import annotations

from typing import Any

import optuna.distributions as od

DEFAULT_MAX_EPOCHS = 10
"""E* = ceil(0.2 · training epochs) for MNIST/FashionMNIST/UTKFace; CIFAR uses 37."""

BATCH_SIZES: tuple[int, ...] = (64, 128, 256)
"""The batch-size choices."""


def lr_dist() -> od.FloatDistribution:
    """LR: log-uniform on [1e-5, 1e-1]."""
    return od.FloatDistribution(1e-5, 1e-1, log=True)


def wd_dist() -> od.FloatDistribution:
    """WD: log-uniform on [1e-5, 1e-1]."""
    return od.FloatDistribution(1e-5, 1e-1, log=True)


def mom_dist() -> od.FloatDistribution:
    """MOM: fixed at 0.9."""
    return od.FloatDistribution(0.9, 0.9)


def bs_dist() -> od.CategoricalDistribution:
    """BS: one of {64, 128, 256}."""
    return od.CategoricalDistribution(list(BATCH_SIZES))


def ep_dist(max_epochs: int = DEFAULT_MAX_EPOCHS) -> od.IntDistribution:
    """EP: integer uniform on [1, E*]."""
    return od.IntDistribution(1, max_epochs)


def epf_dist(max_epochs: int = DEFAULT_MAX_EPOCHS) -> od.FloatDistribution:
    """EPf: float uniform on [1, E*]."""
    return od.FloatDistribution(1.0, float(max_epochs))


def u01_dist() -> od.FloatDistribution:
    """U01: uniform on [0, 1]."""
    return od.FloatDistribution(0.0, 1.0)


def temp_dist() -> od.FloatDistribution:
    """TEMP: uniform on [0.01, 5]. Deep Unlearn's range is [0, 5], but every method that uses
    it divides by the temperature, so T = 0 (a sampler proposing the bound) would fail."""
    return od.FloatDistribution(0.01, 5.0)


def eta_dist() -> od.FloatDistribution:
    """ETA: log-uniform on [1e-6, 1e-1]."""
    return od.FloatDistribution(1e-6, 1e-1, log=True)


def int10_dist() -> od.IntDistribution:
    """INT10: integer uniform on [1, 10]."""
    return od.IntDistribution(1, 10)


def sgd_loop_space(max_epochs: int = DEFAULT_MAX_EPOCHS) -> dict[str, od.BaseDistribution]:
    """The space of :class:`~unlearnkit.methods.toolkit.optim.SGDLoopConfig`:
    {learning_rate: LR, momentum: MOM, weight_decay: WD, batch_size: BS, num_epochs: EP}."""
    return {
        "learning_rate": lr_dist(),
        "momentum": mom_dist(),
        "weight_decay": wd_dist(),
        "batch_size": bs_dist(),
        "num_epochs": ep_dist(max_epochs),
    }


def optim_space(prefix: str) -> dict[str, od.BaseDistribution]:
    """``{prefix.learning_rate: LR, prefix.momentum: MOM, prefix.weight_decay: WD}``."""
    return {
        f"{prefix}.learning_rate": lr_dist(),
        f"{prefix}.momentum": mom_dist(),
        f"{prefix}.weight_decay": wd_dist(),
    }


def nest_params(flat: dict[str, Any]) -> dict[str, Any]:
    """Turn dotted keys (``"retain_optimizer.learning_rate"``) into nested dicts for a Config."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out
