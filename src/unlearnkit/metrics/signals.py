"""Per-example signals computed from model outputs: the inputs of every MIA.

All functions take logits (or probabilities) of shape (n, C) and integer labels (n,) as
NumPy arrays or torch tensors, and return a float64 NumPy array (n,).

* ``cross_entropy``: ℓ(x) = −log softmax(z)_y (population loss-LR MIA, spec §3.2/§3.3).
* ``logit_scaled_confidence``: LiRA's φ = log(p_y / (1 − p_y)) = z_y − logsumexp_{j≠y} z_j,
  computed in the stable logit form (Carlini et al. 2022; spec §3.5).
* ``challenge_confidence``: the same φ with the NeurIPS 2023 scorer's numerics (max-subtracted
  logits, float64 softmax, +1e-45 inside each log; spec §3.3), which caps |φ| at ≈ 103.6.
* ``logit_scale``: φ from a probability p, clipped to [clip, 1 − clip] first.
* ``true_class_confidence``, ``entropy``, ``modified_entropy``, ``correctness``: the SVC
  MIA-efficacy signals of Unlearn-Sparse / SalUn (spec §3.2); modified entropy is Song &
  Mittal (2021): −(1 − p_y) log p_y − Σ_{j≠y} p_j log(1 − p_j).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from unlearnkit.errors import DataError
from unlearnkit.metrics._arrays import as_float, as_int, to_numpy

_TINY = 1e-45  # the challenge scorer's additive constant inside each log


def _logits_and_labels(logits: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.from_numpy(as_float(logits, "logits", ndim=2))
    y = torch.from_numpy(as_int(labels, "labels", ndim=1))
    if z.shape[0] != y.shape[0]:
        raise DataError(f"{z.shape[0]} rows of logits for {y.shape[0]} labels")
    if z.shape[1] < 2:
        raise DataError("at least two classes are needed")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= z.shape[1]):
        raise DataError(f"labels must lie in [0, {z.shape[1] - 1}]")
    return z, y


def cross_entropy(logits: Any, labels: Any) -> np.ndarray:
    """Per-sample cross-entropy ℓ_i = logsumexp(z_i) − z_{i, y_i} (float64)."""
    z, y = _logits_and_labels(logits, labels)
    return torch.nn.functional.cross_entropy(z, y, reduction="none").numpy()


def logit_scaled_confidence(logits: Any, labels: Any) -> np.ndarray:
    """φ_i = z_{i,y} − logsumexp_{j≠y} z_{i,j} = log(p_y / (1 − p_y)), exact and stable."""
    z, y = _logits_and_labels(logits, labels)
    zy = z.gather(1, y[:, None]).squeeze(1)
    others = z.scatter(1, y[:, None], float("-inf"))
    return (zy - torch.logsumexp(others, dim=1)).numpy()


def challenge_confidence(logits: Any, labels: Any) -> np.ndarray:
    """φ with the NeurIPS 2023 scorer's numerics: log(p_y + 1e-45) − log(Σ_{j≠y} p_j + 1e-45).

    Logits are max-subtracted and the softmax is taken in float64, as in the challenge's
    ``compute_logit_scaled_confidence`` (spec §3.3).
    """
    z, y = _logits_and_labels(logits, labels)
    p = torch.softmax(z - z.max(dim=1, keepdim=True).values, dim=1)
    py = p.gather(1, y[:, None]).squeeze(1)
    wrong = p.scatter(1, y[:, None], 0.0).sum(dim=1)
    return (torch.log(py + _TINY) - torch.log(wrong + _TINY)).numpy()


def logit_scale(p: Any, clip: float = 1e-12) -> np.ndarray:
    """φ = log(p / (1 − p)) with p clipped to [clip, 1 − clip] (default 1e-12 → |φ| ≤ 27.6)."""
    if not 0.0 < clip < 0.5:
        raise DataError(f"clip must be in (0, 0.5), got {clip}")
    q = as_float(p, "p")
    if np.any((q < 0) | (q > 1)):
        raise DataError("p must be probabilities in [0, 1]")
    q = np.clip(q, clip, 1.0 - clip)
    return np.log(q) - np.log1p(-q)


def _probs(outputs: Any, labels: Any, probabilities: bool) -> tuple[np.ndarray, np.ndarray]:
    if probabilities:
        p = as_float(outputs, "probabilities", ndim=2)
        y = as_int(labels, "labels", ndim=1)
        if p.shape[0] != y.shape[0]:
            raise DataError(f"{p.shape[0]} rows of probabilities for {y.shape[0]} labels")
        return p, y
    z, y = _logits_and_labels(outputs, labels)
    return torch.softmax(z, dim=1).numpy(), y.numpy()


def true_class_confidence(outputs: Any, labels: Any, *, probabilities: bool = False) -> np.ndarray:
    """p_y(x): the softmax probability of the true class (SalUn's reported "confidence")."""
    p, y = _probs(outputs, labels, probabilities)
    return p[np.arange(y.size), y]


def entropy(outputs: Any, labels: Any | None = None, *, probabilities: bool = False) -> np.ndarray:
    """Prediction entropy H = −Σ_j p_j log p_j (labels unused; accepted for a uniform API)."""
    if probabilities:
        p = as_float(outputs, "probabilities", ndim=2)
    else:
        z = torch.from_numpy(as_float(outputs, "logits", ndim=2))
        logp = torch.log_softmax(z, dim=1)
        return -(logp.exp() * logp).sum(dim=1).numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=1)


def modified_entropy(
    outputs: Any, labels: Any, *, probabilities: bool = False, eps: float = 1e-30
) -> np.ndarray:
    """Mentr = −(1 − p_y) log p_y − Σ_{j≠y} p_j log(1 − p_j) (Song & Mittal 2021).

    Logs are clamped at ``eps`` as in the SalUn / Sparse implementations' intent (finite
    values for saturated probabilities).
    """
    p, y = _probs(outputs, labels, probabilities)
    idx = np.arange(y.size)
    py = p[idx, y]
    log_p = np.log(np.clip(p, eps, None))
    log_1mp = np.log(np.clip(1.0 - p, eps, None))
    own = -(1.0 - py) * log_p[idx, y]
    rest = -(p * log_1mp)
    rest[idx, y] = 0.0
    return own + rest.sum(axis=1)


def correctness(outputs: Any, labels: Any) -> np.ndarray:
    """z = 1[argmax = y] as float (Deep Unlearn's U-LiRA statistic; SalUn's ``correctness``)."""
    arr = as_float(outputs, "outputs", ndim=2)
    y = as_int(labels, "labels", ndim=1)
    if arr.shape[0] != y.shape[0]:
        raise DataError(f"{arr.shape[0]} rows of outputs for {y.shape[0]} labels")
    return (np.argmax(arr, axis=1) == y).astype(np.float64)


def as_signal(values: Any, name: str = "signal") -> np.ndarray:
    """A 1-D finite float64 copy of a precomputed signal (validation helper for MIAs)."""
    return as_float(to_numpy(values), name, ndim=1)
