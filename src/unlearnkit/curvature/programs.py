"""Row programs: which scalar "pseudo-losses" of one sample to differentiate.

A row of sample i is ``d values(z_i(θ), y_i, aux_i)_k / dθ``. The empirical Fisher (SSSE eq. 2)
differentiates the loss at the true label, one row per sample; the true Fisher and the
Gauss-Newton matrix (``rows.py``) differentiate several pseudo-losses per sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from unlearnkit.errors import ConfigError
from unlearnkit.tasks import Task, get_task

#: A per-sample loss: ``loss_fn(logits_of_one_sample, label_of_one_sample) -> scalar``.
#: It must be written with vmappable torch operations (no ``.item()``, no data-dependent
#: Python control flow).
Loss = Callable[[Tensor, Tensor], Tensor]


def resolve_loss(loss: str | Task | Loss) -> Loss:
    """A task (name or :class:`~unlearnkit.tasks.Task`) or a per-sample loss callable -> the
    per-sample loss of one sample."""
    if isinstance(loss, str | Task):
        return get_task(loss).sample_loss
    if not callable(loss):
        raise ConfigError(f"loss must be a task or a callable, got {type(loss).__name__}")
    return loss


#: ``values(logits_one, y_one, aux_one) -> (r,)``: pseudo-losses of one sample whose gradients
#: w.r.t. the parameters are that sample's rows.
ValuesFn = Callable[[Tensor, Tensor, Tensor], Tensor]
#: ``prepare(logits, y, positions) -> aux``: per-sample constants computed without gradient
#: from a forward pass (label draws, Hessian factors); ``positions`` index the input samples.
PrepareFn = Callable[[Tensor, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class RowProgram:
    """What to differentiate for each sample: ``row_k = d values(z(theta), y, aux)_k / d theta``.

    ``prepare`` (optional) runs on detached logits before differentiation; its output is
    constant in theta, which is how Gauss-Newton factors and sampled labels stay fixed.
    """

    kind: str
    values: ValuesFn
    prepare: PrepareFn | None = None


def empirical_program(loss: str | Task | Loss) -> RowProgram:
    """Empirical Fisher rows: the gradient of the loss at the true label (SSSE eq. 2)."""
    fn = resolve_loss(loss)

    def values(z: Tensor, y: Tensor, aux: Tensor) -> Tensor:
        return fn(z, y).reshape(1)

    return RowProgram(kind="empirical", values=values)
