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

Datasets are read through ``batches(batch_size)`` when they have one (streamed, never
concatenated into one tensor), else through their in-memory ``x``/``y``/``ids``.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

from unlearnkit.curvature.gradients import per_sample_gradients
from unlearnkit.curvature.layout import ParamLayout
from unlearnkit.curvature.matrix import GradientMatrix
from unlearnkit.curvature.rows import curvature_rows, curvature_rows_stream
from unlearnkit.errors import DataError, NumericalError
from unlearnkit.ssse.config import ErasureConfig
from unlearnkit.tasks import Task, get_task

#: Samples per batch read from a dataset that streams (``batches``).
STREAM_BATCH = 512


class SampleData(Protocol):
    """What preparing and erasing read from a dataset: ids, targets, task, classes, length and
    subsets by id; inputs through ``batches(batch_size) -> Iterator[(x, y, ids)]`` when it has
    one (streamed), else through an in-memory ``x`` (e.g.
    :class:`~unlearnkit.data.base.ArrayDataset`)."""

    @property
    def ids(self) -> Tensor: ...

    @property
    def y(self) -> Tensor: ...

    @property
    def task(self) -> str: ...

    @property
    def classes(self) -> tuple[str, ...]: ...

    def __len__(self) -> int: ...

    def subset(self, ids: Tensor) -> SampleData: ...


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


def dataset_rows(
    model: nn.Module,
    data: SampleData,
    cfg: ErasureConfig,
    group_size: int | None = None,
    batch_size: int = STREAM_BATCH,
) -> GradientMatrix:
    """Rows of ``cfg.curvature`` for a dataset. A dataset with ``batches(batch_size)`` (yielding
    ``(x, y, ids)``) is read batch by batch and never concatenated; otherwise its in-memory
    ``x``/``y``/``ids`` are indexed chunk by chunk (:func:`build_rows`)."""
    if not hasattr(data, "batches"):
        return build_rows(model, data.x, data.y, data.ids, cfg, group_size)
    g = cfg.group_size if group_size is None else group_size
    if g == 1 and has_closed_form_rows(model, cfg):
        return _closed_form_stream(model, data, cfg, batch_size)
    return curvature_rows_stream(
        cfg.curvature,
        model,
        data.batches(batch_size),
        len(data),
        cfg.task,
        group_size=g,
        seed=cfg.seed,
        chunk_size=cfg.chunk_size,
        compute_dtype=next(model.parameters()).dtype,
    )


def _closed_form_stream(
    model: nn.Module, data: SampleData, cfg: ErasureConfig, batch_size: int
) -> GradientMatrix:
    """:func:`linear_head_rows` batch by batch into one preallocated (n, d) matrix."""
    layout = ParamLayout.from_model(model)
    n = len(data)
    G = torch.empty(n, layout.d, dtype=torch.float32)
    ids, start = [], 0
    for xb, yb, idb in data.batches(batch_size):
        part = linear_head_rows(model, xb, yb, torch.as_tensor(idb), cfg.curvature, cfg.task)
        G[start : start + part.m] = part.G.to(G.device)
        ids.append(part.sample_ids)
        start += part.m
    if start != n:
        raise DataError(f"the batches held {start} samples, expected {n}")
    all_ids = torch.cat(ids)
    return GradientMatrix(
        G=G,
        row_group=torch.arange(n),
        row_output=torch.zeros(n, dtype=torch.int64),
        group_members=all_ids.reshape(n, 1).clone(),
        group_sizes=torch.ones(n, dtype=torch.int64),
        sample_ids=all_ids,
        layout=layout,
        kind=cfg.curvature,
        group_size=1,
        seed=0,
    )


def sample_gradients(
    model: nn.Module, data: SampleData, task: str, batch_size: int = STREAM_BATCH
) -> GradientMatrix:
    """Per-sample loss gradients (one row per sample, in the model's dtype) of a dataset,
    streamed through ``batches`` when it has one."""
    dtype = next(model.parameters()).dtype
    if not hasattr(data, "batches"):
        return per_sample_gradients(model, data.x, data.y, task, ids=data.ids, compute_dtype=dtype)
    return curvature_rows_stream(
        "empirical", model, data.batches(batch_size), len(data), task, compute_dtype=dtype
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


__all__ = [
    "STREAM_BATCH",
    "SampleData",
    "build_rows",
    "dataset_rows",
    "estimate_rows_bytes",
    "has_closed_form_rows",
    "linear_head_rows",
    "sample_gradients",
]
