"""Curvature rows: the matrix R (m x d) with curvature ``F = lambda I + (1/N) R^T R``.

Conventions (SSSE paper, Peste, Alistarh & Lampert 2021):

* **Empirical Fisher** (eq. 2): ``F_hat = (1/n) sum_i g_i g_i^T`` with ``g_i = grad l_i(theta)``
  the gradient of the loss at the true label. Rows are the ``g_i`` (one per sample), N = n.
* **Dampening** (eq. 3): the paper's Sherman-Morrison recursion starts from ``F_0 = lambda I``
  and adds ``g_i g_i^T / n``, so its result is ``lambda I + (1/n) sum_i g_i g_i^T``: lambda is
  added once, *not* divided by N. The solvers take lambda; this module only builds R.
* **Normaliser**: N = :attr:`GradientMatrix.normalizer` = number of groups (= n for
  ``group_size=1``). With groups of g (the paper's CIFAR10 "mini-batches of 10 gradients") the
  rows are group means and N = ceil(n/g) (WoodFisher/M-FAC: the number of rank-1 terms). Rows
  of kinds with several rows per sample (true Fisher, GGN) still share one N per group, so that
  ``(1/N) R^T R = (1/N) sum_groups sum_{rows of group} r r^T``.

Kinds (registry :data:`ROW_KINDS`):

* ``empirical``: rows ``grad l(f(x_i), y_i)``; any per-sample loss.
* ``true``: the Fisher of the model's predictive distribution, ``E_{y~p(y|x)} [g g^T]``,
  estimated with S = ``samples_per_input`` labels drawn per input: rows
  ``grad[-log p(y_hat_s | x_i)] / sqrt(S)``. Draws are seeded and do not depend on chunking
  (one uniform per draw, generated for all samples at once from ``seed``; inverse-CDF
  sampling). Needs a :class:`~unlearnkit.tasks.Task` (it owns the label sampler).
* ``ggn``: the exact generalised Gauss-Newton ``sum_i J_i^T H_i J_i``, J_i = d logits / d theta
  and H_i the Hessian of the loss w.r.t. the logits, written ``H_i = L_i L_i^T`` so that the
  rows of sample i are ``J_i^T L_i[:, k]``:

  - multilabel (sigmoid + BCE): ``H = diag(p (1-p))``, so K rows per sample,
    ``sqrt(p_k (1 - p_k)) * grad z_k``. For a linear model ``z = W x`` this is exactly the
    Hessian of the summed BCE loss (the logits are linear in theta).
  - multiclass (softmax + cross-entropy): ``H = diag(p) - p p^T = L L^T`` with
    ``L = diag(sqrt p) - p sqrt(p)^T`` (check: ``L L^T = diag(p) - 2 p p^T + p (sum p) p^T``).
    C rows per sample, ``sqrt(p_k) * grad(z_k - p . z)`` with p held constant. This equals the
    true Fisher (expectation over all labels) exactly.
  - any other per-sample loss callable: ``H`` by ``torch.func`` (jacrev twice) at the logits and
    ``L = V diag(sqrt(max(w, 0)))`` from ``eigh(H) = V diag(w) V^T`` (C rows per sample).

Each row records its sample (``row_group`` -> ``group_members``) and its output/draw
(``row_output``), which exact deletion of samples needs later.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import jacrev, vmap

from unlearnkit.curvature.gradients import Backend, collect_rows
from unlearnkit.curvature.matrix import GradientMatrix
from unlearnkit.curvature.programs import Loss, RowProgram, empirical_program, resolve_loss
from unlearnkit.curvature.stream import Batch, collect_rows_stream
from unlearnkit.errors import ConfigError
from unlearnkit.registry import Registry
from unlearnkit.tasks import TASKS, Task, get_task

#: ``factory(task, *, n, seed, samples_per_input) -> RowProgram``.
RowKindFactory = Callable[..., RowProgram]
ROW_KINDS: Registry[RowKindFactory] = Registry("curvature kind")


@ROW_KINDS.register("empirical")
def empirical_rows(
    task: str | Task | Loss, *, n: int, seed: int, samples_per_input: int
) -> RowProgram:
    """Empirical Fisher rows (SSSE eq. 2): ``grad l_i`` at the true labels."""
    _only_one_sample("empirical", samples_per_input)
    return empirical_program(task)


@ROW_KINDS.register("true")
def true_fisher_rows(
    task: str | Task | Loss, *, n: int, seed: int, samples_per_input: int
) -> RowProgram:
    """True (model) Fisher rows: ``grad[-log p(y_hat_s|x)] / sqrt(S)``, ``y_hat_s ~ p(.|x)``."""
    if not isinstance(task, str | Task):
        raise ConfigError(
            "the true Fisher samples labels from the model's predictive distribution and needs "
            f"a task name or Task ({', '.join(TASKS.names())}), not a loss callable"
        )
    spec = get_task(task)
    nll = spec.sample_loss
    s = int(samples_per_input)
    if s < 1:
        raise ConfigError(f"samples_per_input must be >= 1, got {samples_per_input}")
    scale = 1.0 / math.sqrt(s)
    cache: dict[str, Tensor] = {}

    def uniforms(c: int) -> Tensor:
        if "u" not in cache:  # all n samples at once: independent of chunking
            gen = torch.Generator().manual_seed(int(seed))
            cache["u"] = torch.rand((n, s, *spec.uniform_shape(c)), generator=gen)
        return cache["u"]

    def prepare(logits: Tensor, y: Tensor, positions: Tensor) -> Tensor:
        u = uniforms(int(logits.shape[-1]))[positions.cpu()].to(logits.device)
        return spec.sample_labels(logits, u)

    def values(z: Tensor, y: Tensor, y_hat: Tensor) -> Tensor:
        return vmap(nll, in_dims=(None, 0))(z, y_hat) * scale

    return RowProgram(kind="true", values=values, prepare=prepare)


# --------------------------------------------------------------------------------------------
# Gauss-Newton: factors of the Hessian of the loss w.r.t. the logits
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogitHessianFactor:
    """``H(z, y) = L L^T``: ``prepare(logits, y) -> aux`` (constant), ``values(z, aux) -> L^T z``.

    The rows of one sample are ``grad_theta values(z(theta), aux)``, i.e. ``J^T L[:, k]``.
    """

    prepare: Callable[[Tensor, Tensor], Tensor]
    values: Callable[[Tensor, Tensor], Tensor]


def task_factor(task: Task) -> LogitHessianFactor:
    """The closed-form factor a :class:`~unlearnkit.tasks.Task` owns (``ggn_aux``/``ggn_values``)."""
    return LogitHessianFactor(task.ggn_aux, task.ggn_values)


def generic_factor(loss: Loss) -> LogitHessianFactor:
    """``H = hessian(loss)(z, y)``, ``L = V diag(sqrt(max(w, 0)))`` from ``eigh(H)``.

    The Hessian is ``jacrev(jacrev(loss))``: reverse-over-reverse avoids forward-mode AD, whose
    first use in a process compiles TorchScript decompositions (seconds).
    """

    def prepare(logits: Tensor, y: Tensor) -> Tensor:
        h = vmap(jacrev(jacrev(loss)))(logits, y)  # (b, C, C)
        w, v = torch.linalg.eigh(0.5 * (h + h.transpose(-1, -2)))
        return v * w.clamp(min=0).sqrt().unsqueeze(-2)

    def values(z: Tensor, lmat: Tensor) -> Tensor:
        return lmat.transpose(-1, -2) @ z

    return LogitHessianFactor(prepare, values)


@ROW_KINDS.register("ggn")
def ggn_rows(task: str | Task | Loss, *, n: int, seed: int, samples_per_input: int) -> RowProgram:
    """Exact Gauss-Newton rows ``J_i^T L_i`` with ``L_i L_i^T = d^2 loss / d z^2``."""
    _only_one_sample("ggn", samples_per_input)
    if isinstance(task, str | Task):
        factor = task_factor(get_task(task))
    else:
        factor = generic_factor(resolve_loss(task))

    def prepare(logits: Tensor, y: Tensor, positions: Tensor) -> Tensor:
        return factor.prepare(logits, y)

    def values(z: Tensor, y: Tensor, aux: Tensor) -> Tensor:
        return factor.values(z, aux)

    return RowProgram(kind="ggn", values=values, prepare=prepare)


def _only_one_sample(kind: str, samples_per_input: int) -> None:
    if samples_per_input != 1:
        raise ConfigError(f"samples_per_input applies to the true Fisher only, not {kind!r}")


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def curvature_rows(
    kind: str,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    task: str | Task | Loss,
    ids: Tensor | None = None,
    group_size: int = 1,
    seed: int = 0,
    chunk_size: int | None = None,
    *,
    max_bytes: int | None = None,
    device: str | torch.device | None = None,
    storage_device: str | torch.device | None = None,
    samples_per_input: int = 1,
    compute_dtype: torch.dtype | None = None,
    out_dtype: torch.dtype = torch.float32,
    backend: Backend = "func",
) -> GradientMatrix:
    """Rows R of curvature ``kind`` ("empirical", "true", "ggn") so that F = (1/N) R^T R.

    ``task`` is a task (name or :class:`~unlearnkit.tasks.Task`) or a per-sample loss callable
    (not for "true").
    ``seed`` fixes the group permutation and the true-Fisher label draws. See
    :func:`unlearnkit.curvature.gradients.collect_rows` for the other arguments.
    """
    program = ROW_KINDS.get(kind)(
        task, n=int(x.shape[0]), seed=seed, samples_per_input=samples_per_input
    )
    return collect_rows(
        model,
        x,
        y,
        program,
        ids=ids,
        group_size=group_size,
        seed=seed,
        chunk_size=chunk_size,
        max_bytes=max_bytes,
        device=device,
        storage_device=storage_device,
        compute_dtype=compute_dtype,
        out_dtype=out_dtype,
        backend=backend,
    )


def curvature_rows_stream(
    kind: str,
    model: nn.Module,
    batches: Iterable[Batch],
    n: int,
    task: str | Task | Loss,
    group_size: int = 1,
    seed: int = 0,
    chunk_size: int | None = None,
    *,
    samples_per_input: int = 1,
    compute_dtype: torch.dtype | None = None,
    out_dtype: torch.dtype = torch.float32,
    backend: Backend = "func",
) -> GradientMatrix:
    """:func:`curvature_rows` for ``n`` samples read from ``(x, y, ids)`` batches
    (:func:`~unlearnkit.curvature.stream.collect_rows_stream`)."""
    program = ROW_KINDS.get(kind)(task, n=n, seed=seed, samples_per_input=samples_per_input)
    return collect_rows_stream(
        model,
        batches,
        n,
        program,
        group_size=group_size,
        seed=seed,
        chunk_size=chunk_size,
        compute_dtype=compute_dtype,
        out_dtype=out_dtype,
        backend=backend,
    )
