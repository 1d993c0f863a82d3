"""The user's own model: anything whose forward returns logits, or can be made to.

Hugging Face ``transformers`` classifiers return a ``ModelOutput`` with ``.logits``; the
engine (per-sample gradients, predictions) needs a plain ``(n, classes)`` tensor.
:func:`as_classifier` wraps such a model in :class:`LogitsOnly`, which forwards to it and
returns the logits. Parameter names keep the ``model.`` prefix, so a wrapped model's state
dict is the original's with that prefix.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from unlearnkit.errors import ConfigError

ModelFactory = Callable[[], nn.Module]


class LogitsOnly(nn.Module):
    """``forward(x) = model(x).logits`` (or ``model(x)[0]`` for tuple outputs).

    ``input_name``: pass the input as this keyword (``pixel_values``, ``input_ids``); by
    default it is passed positionally.
    """

    def __init__(self, model: nn.Module, input_name: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.input_name = input_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(**{self.input_name: x}) if self.input_name else self.model(x)
        if isinstance(out, torch.Tensor):
            return out
        logits = getattr(out, "logits", None)
        if isinstance(logits, torch.Tensor):
            return logits
        if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
            return out[0]
        raise ConfigError(
            f"{type(self.model).__name__} returned {type(out).__name__}; expected logits, an "
            "output with .logits, or a tuple whose first item is the logits"
        )


def as_classifier(model: nn.Module, input_name: str | None = None) -> nn.Module:
    """``model`` when its forward returns a tensor, else wrapped in :class:`LogitsOnly`.

    Recognised without a probe: ``transformers.PreTrainedModel`` (its ``config`` carries
    ``return_dict``) is wrapped; everything else is returned as is.
    """
    if isinstance(model, LogitsOnly):
        return model
    if hasattr(model, "config") and hasattr(getattr(model, "config", None), "return_dict"):
        return LogitsOnly(model, input_name)
    if input_name is not None:
        return LogitsOnly(model, input_name)
    return model


def model_factory(model: nn.Module | ModelFactory) -> ModelFactory:
    """A factory giving fresh models: a callable as is, or deep copies of a module."""
    if isinstance(model, nn.Module):
        return lambda: copy.deepcopy(model)
    if callable(model):
        return model
    raise ConfigError(f"expected an nn.Module or a model factory, got {type(model).__name__}")


def params_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def describe_model(model: nn.Module) -> dict[str, Any]:
    return {
        "class": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
