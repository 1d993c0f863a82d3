"""What a method may require of a model, each requirement with its check and its text.

Methods declare requirement names in ``Unlearner.requires``; :meth:`Unlearner.check` runs the
checks before any work, and the method table (:mod:`unlearnkit.methods.describe`) shows the
text. Adding a requirement is one :func:`register_requirement` call here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from unlearnkit.errors import UnsupportedError
from unlearnkit.methods.toolkit.layout import CONV_TYPES, conv_layers
from unlearnkit.models import find_classifier_head
from unlearnkit.registry import Registry


@dataclass(frozen=True)
class Subject:
    """What a requirement check looks at: the model, who asks, the named head (if any) and the
    number of outputs of the data (if known)."""

    model: nn.Module
    who: str
    head: str | None = None
    num_outputs: int | None = None


@dataclass(frozen=True)
class Requirement:
    """A check raising :class:`UnsupportedError`, and its plain-English text."""

    check: Callable[[Subject], None]
    text: str


REQUIREMENTS: Registry[Requirement] = Registry("method requirement")


Check = Callable[[Subject], None]


def register_requirement(name: str, text: str) -> Callable[[Check], Check]:
    """Decorator: register ``check`` under ``name`` with ``text``; returns ``check``."""

    def deco(check: Check) -> Check:
        REQUIREMENTS.register(name)(Requirement(check, text))
        return check

    return deco


@register_requirement("conv", "convolution layers")
def _conv(s: Subject) -> None:
    if not any(isinstance(m, nn.modules.conv._ConvNd) for m in s.model.modules()):
        raise UnsupportedError(f"{s.who} needs a model with convolution layers")


@register_requirement("conv2d", "Conv2d layers")
def _conv2d(s: Subject) -> None:
    if not conv_layers(s.model):
        raise UnsupportedError(f"{s.who} needs a model with Conv2d layers")


@register_requirement("convnd", "Conv1d/2d/3d layers")
def _convnd(s: Subject) -> None:
    if not conv_layers(s.model, CONV_TYPES):
        raise UnsupportedError(f"{s.who} needs a model with Conv1d/Conv2d/Conv3d layers")


@register_requirement("square_conv2d", "Conv2d layers with square kernels")
def _square_conv2d(s: Subject) -> None:
    _conv2d(s)
    for name, m in conv_layers(s.model):
        kh, kw = m.weight.shape[-2:]
        if kh != kw:
            raise UnsupportedError(
                f"{s.who} transposes kernels and needs square ones; {name} has {kh}x{kw}"
            )


@register_requirement("conv_or_linear", "Conv or Linear layers")
def _conv_or_linear(s: Subject) -> None:
    if not any(isinstance(m, (*CONV_TYPES, nn.Linear)) for m in s.model.modules()):
        raise UnsupportedError(f"{s.who} needs a model with Conv or Linear layers")


@register_requirement(
    "classifier", "a Linear classifier head (found automatically, or named with head=)"
)
def _classifier(s: Subject) -> None:
    try:
        find_classifier_head(s.model, s.head, s.num_outputs)
    except UnsupportedError as e:
        raise UnsupportedError(f"{s.who} needs a Linear classifier head: {e}") from None
