"""KLoM: KL divergence of margins between unlearned models and oracle (retrained) models.

Per example (x, y) and per model with logits z, the margin is

    m = z_y − log Σ_{j≠y} exp(z_j)                                     (Georgiev et al. 2024)

For one example, the margins of the U unlearned models form P and those of the M oracle
models (retrained on D∖S, each with its own seed) form Q. Both are clipped to [−100, 100]
and binned on 20 equal-width bins spanning the combined range of the two sets (a range of
width 0 becomes [lo, lo + 1]), then

    KLoM(x) = KL(P ‖ Q) = Σ_b p_b log(p_b / q̃_b),    q̃_b = max(q_b, 1e-5) where p_b > 0,

with p and q̃ renormalised to sum to one (``scipy.stats.entropy``). Direction: **lower is
better**; 0 means the unlearned models' margins are distributed as the oracles' on this
example. Summaries are the 95th percentile and the median over the examples of a split.

The constants and the direction follow the reference benchmark's published code
(data-unlearning-bench, ``src/eval.py``: ``compute_binned_KL_div`` called with the unlearned
margins first). One quirk of that code is kept by default so numbers can be put next to
theirs: bin edges come from ``numpy.linspace`` and samples are assigned with
``numpy.digitize``, which puts a sample equal to the upper edge outside the 20 bins, so the
largest margin of the combined set is not counted. ``include_upper_edge=True`` counts it in
the last bin instead (the histogram the method describes).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import entropy

from unlearnkit.errors import DataError


def margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """m_i = z_{i,y_i} − logsumexp_{j≠y_i} z_{i,j} for logits (n, K) and int labels (n,)."""
    if logits.dim() != 2 or labels.shape != (logits.shape[0],):
        raise DataError(f"margins need logits (n, K) and labels (n,), got {tuple(logits.shape)}")
    if logits.shape[1] < 2:
        raise DataError("margins need at least two classes")
    rows = torch.arange(logits.shape[0])
    correct = logits[rows, labels]
    others = logits.clone()
    others[rows, labels] = -torch.inf
    return correct - torch.logsumexp(others, dim=1)


def binned_kl(
    p_samples: np.ndarray,
    q_samples: np.ndarray,
    bins: int = 20,
    eps: float = 1e-5,
    clip: float = 100.0,
    include_upper_edge: bool = False,
) -> float:
    """KL(P ‖ Q) of two 1-D sample sets on shared equal-width bins (module docstring)."""
    p = np.clip(np.asarray(p_samples, dtype=np.float64), -clip, clip)
    q = np.clip(np.asarray(q_samples, dtype=np.float64), -clip, clip)
    if p.size == 0 or q.size == 0:
        raise DataError("binned_kl needs at least one sample on each side")
    lo = min(p.min(), q.min())
    hi = max(p.max(), q.max())
    if lo >= hi:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    if include_upper_edge:
        edges = edges.copy()
        edges[-1] = np.nextafter(hi, np.inf)
    p_counts = np.bincount(np.digitize(p, edges), minlength=bins + 2)[1 : bins + 1]
    q_counts = np.bincount(np.digitize(q, edges), minlength=bins + 2)[1 : bins + 1]
    p_prob = p_counts / p_counts.sum() if p_counts.sum() > 0 else np.zeros(bins)
    q_prob = q_counts / q_counts.sum() if q_counts.sum() > 0 else np.zeros(bins)
    q_safe = np.where(p_prob > 0, np.maximum(q_prob, eps), q_prob)
    if p_prob.sum() == 0:
        return 0.0
    return float(entropy(p_prob, q_safe))


def klom(
    unlearned_margins: np.ndarray | torch.Tensor,
    oracle_margins: np.ndarray | torch.Tensor,
    **options: float | bool,
) -> np.ndarray:
    """Per-example KLoM for margins of shape (U models, n examples) and (M models, n)."""
    u = np.asarray(unlearned_margins, dtype=np.float64)
    o = np.asarray(oracle_margins, dtype=np.float64)
    if u.ndim != 2 or o.ndim != 2 or u.shape[1] != o.shape[1]:
        raise DataError(
            f"klom needs (models, examples) arrays over the same examples, got {u.shape} and {o.shape}"
        )
    return np.array([binned_kl(u[:, i], o[:, i], **options) for i in range(u.shape[1])])


def klom_summary(values: np.ndarray) -> dict[str, float]:
    """The 95th percentile and the median of per-example KLoM values (lower is better)."""
    return {"klom_p95": float(np.percentile(values, 95)), "klom_median": float(np.median(values))}
