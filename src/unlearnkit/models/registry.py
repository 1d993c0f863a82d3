"""The model registry: build any model by name for an input shape and an output count.

``build_model(name, input_shape, num_outputs, seed, **options)`` validates the options (each model
has a pydantic options class), checks that the model fits the input shape (else
:class:`~unlearnkit.errors.UnsupportedError`), and initialises the weights from ``seed`` alone:
the same arguments give bit-identical weights, and the global RNG state is left untouched.

Every model exposes its final classifier ``nn.Linear`` as the attribute ``fc`` (Deep Unlearn's
methods reset or fine-tune it), and carries its :class:`ModelSpec` as ``model.build_spec`` so
that it can be saved and rebuilt (:mod:`unlearnkit.artifacts`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from torch import nn

from unlearnkit.errors import ConfigError, UnsupportedError
from unlearnkit.registry import Registry

Shape = tuple[int, ...]


class ModelOptions(BaseModel):
    """Base class of every model's options (unknown keys are refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(BaseModel):
    """Everything needed to rebuild a model's architecture and initial weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    input_shape: tuple[int, ...]
    num_outputs: int
    seed: int
    options: dict[str, Any] = {}

    @field_validator("input_shape")
    @classmethod
    def _positive_shape(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(v) == 0 or any(int(s) < 1 for s in v):
            raise ValueError(f"input_shape must be a non-empty tuple of positive ints, got {v}")
        return v

    @field_validator("num_outputs")
    @classmethod
    def _positive_outputs(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"num_outputs must be >= 1, got {v}")
        return v


Builder = Callable[[Shape, int, Any], nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: builder, options class, input-shape check and a description."""

    build: Builder
    options: type[ModelOptions]
    check: Callable[[Shape], None]
    description: str
    inputs: str
    convex: bool = False


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(
    name: str,
    *,
    options: type[ModelOptions],
    check: Callable[[Shape], None],
    description: str,
    inputs: str,
    convex: bool = False,
) -> Callable[[Builder], Builder]:
    """Decorator registering a builder ``(input_shape, num_outputs, options) -> nn.Module``."""

    def deco(fn: Builder) -> Builder:
        MODELS.register(name)(
            ModelEntry(fn, options, check, description, inputs=inputs, convex=convex)
        )
        return fn

    return deco


# ---------------------------------------------------------------- input-shape checks


def flat_dim(shape: Shape) -> int:
    """Number of features after flattening: ``Π shape``."""
    return int(math.prod(shape))


def any_shape(shape: Shape) -> None:
    """Check for flattening models: every non-empty shape fits."""


def require_image(min_hw: int, model: str) -> Callable[[Shape], None]:
    """A check accepting ``(C, H, W)`` with ``H, W >= min_hw``."""

    def check(shape: Shape) -> None:
        if len(shape) != 3 or min(shape[1:]) < min_hw:
            raise UnsupportedError(
                f"{model} needs image inputs (C, H, W) with H, W >= {min_hw}; got {shape}. "
                "Use 'mlp', 'logreg' or 'linear' for flat feature vectors."
            )

    return check


def spec_of(model: nn.Module) -> ModelSpec:
    """The :class:`ModelSpec` a model was built from (models from :func:`build_model` only)."""
    spec = getattr(model, "build_spec", None)
    if not isinstance(spec, ModelSpec):
        raise ConfigError(
            f"{type(model).__name__} was not built by unlearnkit.models.build_model, so its "
            "architecture is unknown; build it with build_model or pass a ModelSpec"
        )
    return spec


def _make(spec: ModelSpec, device: torch.device | str | None = None) -> nn.Module:
    entry = MODELS.get(spec.name)
    try:
        opts = entry.options(**spec.options)
    except ValidationError as e:
        raise ConfigError(f"bad options for model {spec.name!r}: {e}") from None
    entry.check(spec.input_shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        if device is None:
            model = entry.build(spec.input_shape, spec.num_outputs, opts)
        else:
            with torch.device(device):
                model = entry.build(spec.input_shape, spec.num_outputs, opts)
    if not isinstance(getattr(model, "fc", None), nn.Linear):  # pragma: no cover - dev guard
        raise ConfigError(f"model {spec.name!r} does not expose its classifier as Linear 'fc'")
    model.build_spec = spec.model_copy(update={"options": opts.model_dump()})
    return model


def build_from_spec(spec: ModelSpec) -> nn.Module:
    """Build the model a :class:`ModelSpec` describes, with its seeded initial weights."""
    return _make(spec)


def build_on_meta(spec: ModelSpec, max_tensors: int | None = None) -> nn.Module:
    """Build the architecture ``spec`` describes on the meta device: every parameter and buffer
    has its shape and dtype but no memory, so a manifest's spec can be compared with a weights
    file before anything is allocated (:func:`unlearnkit.artifacts.load_model`).

    ``max_tensors``: the build is stopped with :class:`ConfigError` as soon as it registers
    more than ``2 * max_tensors + 64`` parameters and buffers (slack for non-persistent buffers),
    so that even a spec asking for a million layers costs next to nothing to refuse.
    """
    if max_tensors is None:
        return _make(spec, device="meta")
    limit = 2 * max_tensors + 64
    count = 0
    owner = threading.get_ident()

    def on_tensor(module: nn.Module, name: str, tensor: torch.Tensor | None) -> None:
        nonlocal count
        if threading.get_ident() != owner:  # the hooks are global: leave other threads alone
            return
        count += tensor is not None
        if count > limit:
            raise _TooManyTensors

    hooks = [
        nn.modules.module.register_module_parameter_registration_hook(on_tensor),
        nn.modules.module.register_module_buffer_registration_hook(on_tensor),
    ]
    try:
        return _make(spec, device="meta")
    except _TooManyTensors:
        raise ConfigError(
            f"a {spec.name!r} model with options {str(spec.options)[:200]} has more than {limit} "
            f"parameter and buffer tensors; the weights hold {max_tensors}"
        ) from None
    finally:
        for hook in hooks:
            hook.remove()


class _TooManyTensors(Exception):
    """Stops :func:`build_on_meta` from inside a registration hook."""


def build_model(
    name: str, input_shape: tuple[int, ...], num_outputs: int, seed: int, **options: Any
) -> nn.Module:
    """Build model ``name`` for inputs of ``input_shape`` (without the batch dimension).

    The weights are initialised under ``torch.manual_seed(seed)`` inside a forked RNG, so the
    same ``(name, input_shape, num_outputs, seed, options)`` always gives identical weights.
    Raises :class:`ConfigError` for unknown names/options and :class:`UnsupportedError` when
    the model does not fit ``input_shape``.
    """
    try:
        spec = ModelSpec(
            name=name,
            input_shape=tuple(int(s) for s in input_shape),
            num_outputs=int(num_outputs),
            seed=int(seed),
            options=options,
        )
    except ValidationError as e:
        raise ConfigError(f"bad arguments for model {name!r}: {e}") from None
    return _make(spec)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_info(
    input_shape: tuple[int, ...] | None = None, num_outputs: int = 10
) -> list[dict[str, Any]]:
    """One row per registered model: name, description, inputs, convexity, default options.

    With ``input_shape``, each row also says whether the model fits it and, if so, its
    parameter count for ``num_outputs`` outputs (counted on the meta device: no memory used).
    """
    rows: list[dict[str, Any]] = []
    for name, entry in MODELS.items():
        row: dict[str, Any] = {
            "name": name,
            "description": entry.description,
            "inputs": entry.inputs,
            "convex": entry.convex,
            "options": entry.options().model_dump(),
        }
        if input_shape is not None:
            spec = ModelSpec(
                name=name, input_shape=tuple(input_shape), num_outputs=num_outputs, seed=0
            )
            try:
                row["parameters"] = count_parameters(_make(spec, device="meta"))
                row["fits"] = True
            except UnsupportedError as e:
                row["parameters"] = None
                row["fits"] = False
                row["reason"] = str(e)
        rows.append(row)
    return rows
