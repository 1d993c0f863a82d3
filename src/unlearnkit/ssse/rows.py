"""Curvature rows for the erasure state: the generic torch.func path and a closed form for
the SSSE paper's no-bias linear multi-attribute model.

For ``z = W·vec(x)`` and a task whose outputs are independent given the logits
(:attr:`~unlearnkit.tasks.Task.independent_outputs`, e.g. sigmoid/BCE heads of ``multilabel``)
the rows of sample i, one entry per output head k, live in disjoint blocks (block k = row k of
W). With the paper's per-output-head blocks, summing a sample's rows into one row leaves every
block's Gram unchanged, so each sample needs one row of length d = A·p:

* empirical Fisher (SSSE eq. 2): r_i = (dℓ/dz_i) ⊗ x_i (multilabel: (σ(z_i) − y_i) ⊗ x_i), the
  per-sample gradient itself (:meth:`~unlearnkit.tasks.Task.logit_gradient`);
* Gauss–Newton (= the exact Hessian of the loss, logits being linear in W): r_i = diag(L_i) ⊗
  x_i with the task's diagonal factor (multilabel: sqrt(σ(z_i)(1 − σ(z_i)))), so that
  Σ_i r_i,k r_i,kᵀ = Xᵀ diag(p_k(1−p_k)) X (:meth:`~unlearnkit.tasks.Task.ggn_aux`).

This avoids A rows per sample (A× the memory) and one backward pass per head.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from unlearnkit.curvature.layout import ParamLayout
from unlearnkit.curvature.matrix import GradientMatrix
from unlearnkit.curvature.rows import curvature_rows
from unlearnkit.errors import NumericalError
from unlearnkit.ssse.config import ErasureConfig
from unlearnkit.tasks import Task, get_task


def has_closed_form_rows(model: nn.Module, cfg: ErasureConfig) -> bool:
    """True when the closed form applies: one trainable no-bias Linear ``fc`` on flattened
    inputs, a task with independent outputs, per-output-head blocks, no grouping."""
    layout = ParamLayout.from_model(model)
    fc = getattr(model, "fc", None)
    return (
        get_task(cfg.task).independent_outputs
        and cfg.blocks == "per_output_head"
        and cfg.group_size == 1
        and cfg.curvature in ("empirical", "ggn")
        and isinstance(fc, nn.Linear)
        and fc.bias is None
        and layout.names == ("fc.weight",)
        and len(list(model.children())) == 1
    )


def linear_head_rows(
    model: nn.Module, x: Tensor, y: Tensor, ids: Tensor, kind: str, task: str | Task
) -> GradientMatrix:
    """Closed-form rows (one per sample) for the no-bias linear model with independent heads."""
    spec = get_task(task)
    fc: nn.Linear = model.fc  # type: ignore[assignment]
    W = fc.weight.detach()
    X = x.reshape(x.shape[0], -1).to(W.device, W.dtype)
    with torch.no_grad():
        z = X @ W.T
        w = spec.logit_gradient(z, y) if kind == "empirical" else spec.ggn_aux(z, y)
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
    if g == 1 and has_closed_form_rows(model, cfg):
        return linear_head_rows(model, x, y, ids, cfg.curvature, cfg.task)
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


def estimate_rows_bytes(
    model: nn.Module, n: int, num_outputs: int, cfg: ErasureConfig, d: int
) -> int:
    """fp32 bytes of the rows matrix: ceil(n/g) groups × rows per group × d."""
    n_groups = -(-n // cfg.group_size)
    per_group = 1
    if cfg.curvature == "ggn" and not has_closed_form_rows(model, cfg):
        per_group = num_outputs
    return n_groups * per_group * d * 4


__all__ = ["build_rows", "estimate_rows_bytes", "has_closed_form_rows", "linear_head_rows"]
