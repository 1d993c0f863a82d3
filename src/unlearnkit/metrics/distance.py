"""Parameter-space distances between models (raw and normalised Euclidean).

Sources: SSSE paper (Figure 1b; the text's formula has a typo, the intended quantity is)
    d_norm(θ̂) = ‖θ̂ − θ_R‖₂ / ‖θ_O − θ_R‖₂,
with θ_R the retrained model and θ_O the original; Deep Unlearn's L2 helper
(docs/evaluation.md of its own evaluation). Direction: *lower is better*; d_norm = 0 is
retrain, d_norm = 1 is as far from retrain as the original is (a no-op unlearner).

Parameters can be given as flat vectors (NumPy/torch), state dicts, or ``nn.Module``\\ s:
  * a state dict contributes its floating-point entries (integer buffers such as BatchNorm's
    ``num_batches_tracked`` are skipped), concatenated in sorted-key order;
  * a module contributes ``named_parameters()`` only (no buffers).
Both operands must have the same keys and shapes, else :class:`StateMismatchError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from unlearnkit.errors import DataError, NumericalError, StateMismatchError
from unlearnkit.metrics._arrays import as_float, to_numpy
from unlearnkit.metrics.inputs import MetricInputs
from unlearnkit.metrics.registry import Direction, metric

Params = torch.nn.Module | Mapping[str, Any] | np.ndarray | torch.Tensor


def _as_mapping(p: torch.nn.Module | Mapping[str, Any]) -> dict[str, np.ndarray]:
    items = p.named_parameters() if isinstance(p, torch.nn.Module) else p.items()
    out: dict[str, np.ndarray] = {}
    for k, v in items:
        arr = to_numpy(v)
        if arr.dtype.kind in "fc":
            out[k] = np.asarray(arr, dtype=np.float64)
    return out


def flatten_parameters(params: Params, like: Params | None = None) -> np.ndarray:
    """The parameters as one float64 vector (see the module docstring for the key order).

    If ``like`` is given (a mapping or module), the key sets and shapes must match it.
    """
    if isinstance(params, torch.nn.Module | Mapping):
        m = _as_mapping(params)
        if like is not None and isinstance(like, torch.nn.Module | Mapping):
            ref = _as_mapping(like)
            if set(m) != set(ref):
                diff = sorted(set(m) ^ set(ref))[:5]
                raise StateMismatchError(f"parameter names differ between models: {diff}")
            bad = [k for k in m if m[k].shape != ref[k].shape]
            if bad:
                raise StateMismatchError(f"parameter shapes differ for {bad[:5]}")
        if not m:
            raise DataError("no floating-point parameters to compare")
        flat = np.concatenate([m[k].ravel() for k in sorted(m)])
        return as_float(flat, "parameters")
    return as_float(params, "parameters").ravel()


def _stack(candidates: Params | Sequence[Params], like: Params) -> tuple[np.ndarray, bool]:
    """(k, d) matrix of candidates and whether a single candidate was given."""
    if isinstance(candidates, list | tuple):
        return np.stack([flatten_parameters(c, like) for c in candidates]), False
    if isinstance(candidates, np.ndarray | torch.Tensor) and to_numpy(candidates).ndim == 2:
        return as_float(candidates, "candidates", ndim=2), False
    return flatten_parameters(candidates, like)[None, :], True


def parameter_distance(a: Params, b: Params) -> float:
    """‖a − b‖₂ over all parameters (raw L2 distance; lower = closer)."""
    va, vb = flatten_parameters(a, b), flatten_parameters(b, a)
    if va.shape != vb.shape:
        raise StateMismatchError(f"parameter vectors have sizes {va.size} and {vb.size}")
    return float(np.linalg.norm(va - vb))


def normalized_parameter_distance(
    unlearned: Params | Sequence[Params], retrained: Params, original: Params
) -> float | np.ndarray:
    """‖θ̂ − θ_R‖₂ / ‖θ_O − θ_R‖₂ (SSSE Fig. 1b). Lower is better; 1 = as far as the original.

    ``unlearned`` may be one model, a list of models, or a (k, d) matrix of flat candidates
    (e.g. SSSE's θ̂_ε over an ε grid); a list/matrix gives a (k,) array. Raises
    :class:`NumericalError` if θ_O = θ_R (the normalisation is undefined).
    """
    r = flatten_parameters(retrained, original)
    o = flatten_parameters(original, retrained)
    if r.shape != o.shape:
        raise StateMismatchError(f"retrained ({r.size}) and original ({o.size}) sizes differ")
    den = float(np.linalg.norm(o - r))
    if den == 0.0:
        raise NumericalError(
            "original and retrained parameters are identical; "
            "the normalised distance ‖θ̂−θ_R‖/‖θ_O−θ_R‖ is undefined"
        )
    u, single = _stack(unlearned, retrained)
    if u.shape[1] != r.size:
        raise StateMismatchError(f"unlearned has {u.shape[1]} parameters, retrained {r.size}")
    d = np.linalg.norm(u - r[None, :], axis=1) / den
    return float(d[0]) if single else d


@metric(
    "l2_to_retrain",
    label="‖θ−θ_R‖",
    direction=Direction.LOWER,
    needs=("model:params", "retrain:params"),
    group="distance",
)
def l2_to_retrain(x: MetricInputs) -> float:
    """‖θ − θ_R‖₂ over all parameters (:func:`parameter_distance`). Lower is better."""
    return parameter_distance(x.model.parameters, x.outputs("retrain").parameters)


@metric(
    "l2_to_original",
    label="‖θ−θ_O‖",
    direction=Direction.NONE,
    needs=("model:params", "original:params"),
    group="movement",
)
def l2_to_original(x: MetricInputs) -> float:
    """‖θ − θ_O‖₂: how far the method moved the original (descriptive)."""
    return parameter_distance(x.model.parameters, x.outputs("original").parameters)


@metric(
    "dist_to_retrain",
    label="‖θ−θ_R‖/‖θ_O−θ_R‖",
    direction=Direction.LOWER,
    needs=("model:params", "original:params", "retrain:params"),
    group="distance",
)
def dist_to_retrain(x: MetricInputs) -> float:
    """‖θ − θ_R‖₂ / ‖θ_O − θ_R‖₂ (SSSE Fig. 1b): 0 = retrain, 1 = as far as the original.
    Lower is better. Undefined (a :class:`NumericalError`) when θ_O = θ_R."""
    return float(
        normalized_parameter_distance(
            x.model.parameters, x.outputs("retrain").parameters, x.outputs("original").parameters
        )
    )
