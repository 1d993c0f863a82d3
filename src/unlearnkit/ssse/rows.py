"""Curvature rows for the erasure state: the generic torch.func path and a closed form for
the SSSE paper's no-bias linear multi-attribute model.

For ``z = W·vec(x)`` with sigmoid/BCE heads (task ``multilabel``) the rows of sample i, one
entry per output head k, live in disjoint blocks (block k = row k of W). With the paper's
per-output-head blocks, summing a sample's rows into one row leaves every block's Gram
unchanged, so each sample needs one row of length d = A·p:

* empirical Fisher (SSSE eq. 2): r_i = (σ(z_i) − y_i) ⊗ x_i, the per-sample gradient itself;
* Gauss–Newton (= the exact Hessian of the BCE loss, logits being linear in W):
  r_i = sqrt(σ(z_i)(1 − σ(z_i))) ⊗ x_i, so that Σ_i r_i,k r_i,kᵀ = Xᵀ diag(p_k(1−p_k)) X.

This avoids A rows per sample (A× the memory) and one backward pass per head.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from unlearnkit.curvature.gradients import PAD_ID, GradientMatrix, ParamLayout
from unlearnkit.curvature.rows import curvature_rows
from unlearnkit.errors import NumericalError
from unlearnkit.ssse.config import ErasureConfig


def is_linear_multilabel(model: nn.Module, cfg: ErasureConfig) -> bool:
    """True when the closed form applies: one trainable no-bias Linear on flattened inputs,
    multilabel task, per-output-head blocks, no grouping."""
    layout = ParamLayout.from_model(model)
    fc = getattr(model, "fc", None)
    return (
        cfg.task == "multilabel"
        and cfg.blocks == "per_output_head"
        and cfg.group_size == 1
        and cfg.curvature in ("empirical", "ggn")
        and isinstance(fc, nn.Linear)
        and fc.bias is None
        and layout.names == ("fc.weight",)
        and len(list(model.children())) == 1
    )


def linear_multilabel_rows(
    model: nn.Module, x: Tensor, y: Tensor, ids: Tensor, kind: str
) -> GradientMatrix:
    """Closed-form rows (one per sample) for the no-bias linear multilabel model."""
    fc: nn.Linear = model.fc  # type: ignore[assignment]
    W = fc.weight.detach()
    X = x.reshape(x.shape[0], -1).to(W.device, W.dtype)
    with torch.no_grad():
        p = torch.sigmoid(X @ W.T)
        w = p - y.to(p.dtype) if kind == "empirical" else torch.sqrt(p * (1 - p))
        G = (w.unsqueeze(2) * X.unsqueeze(1)).reshape(X.shape[0], -1).float()
    bad = ~torch.isfinite(G).all(dim=1)
    if bool(bad.any()):
        raise NumericalError(f"NaN/Inf {kind} rows for sample id(s) {ids[bad][:20].tolist()}")
    n = X.shape[0]
    return GradientMatrix(
        G=G,
        row_group=torch.arange(n),
        row_output=torch.zeros(n, dtype=torch.int64),
        group_members=ids.reshape(n, 1).clone(),
        group_sizes=torch.ones(n, dtype=torch.int64),
        sample_ids=ids.clone(),
        layout=ParamLayout.from_model(model),
        kind=kind,
        group_size=1,
        seed=0,
    )


def build_rows(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    ids: Tensor,
    cfg: ErasureConfig,
    group_size: int | None = None,
) -> GradientMatrix:
    """Rows of ``cfg.curvature`` for (x, y): the closed form when it applies, else torch.func."""
    g = cfg.group_size if group_size is None else group_size
    if g == 1 and is_linear_multilabel(model, cfg):
        return linear_multilabel_rows(model, x, y, ids, cfg.curvature)
    return curvature_rows(
        cfg.curvature,
        model,
        x,
        y,
        cfg.task,
        ids=ids,
        group_size=g,
        seed=cfg.seed,
        chunk_size=cfg.chunk_size,
        compute_dtype=next(model.parameters()).dtype,
    )


__all__ = ["PAD_ID", "build_rows", "is_linear_multilabel", "linear_multilabel_rows"]
