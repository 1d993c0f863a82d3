"""Train and retrain: deterministic, never mutating their input; user training functions.

:func:`train` trains a deep copy of a model with a recipe (:mod:`unlearnkit.training.recipes`).

**Retrain.** Retrain is the same recipe, started from the same initial weights with the same
seed, on the retained data only: ``retrain(initial_model, retain, recipe, seed)`` is exactly
``train(initial_model, retain, recipe, seed)``. Because :func:`train` copies its input, keep the
untrained model (or rebuild it with ``build_model(..., seed=s)``) and pass it to both calls.
As in Deep Unlearn (Cadet et al., arXiv 2410.01276), the RNGs are seeded with ``seed`` right
before training (default 123), so data order and augmentation noise are a function of the seed,
and only the initial weights differ between model seeds. The caller's global RNG state is
restored afterwards.

**User training functions.** Anything that trains a model can stand in for a recipe: a
:data:`TrainFn` is ``(model_factory, dataset, seed) -> trained model``, where
``model_factory()`` returns the untrained model (the same initial weights on every call).
:func:`recipe_train_fn` turns a recipe into one, so Retrain and the audit's pools accept either.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import DataError, UnsupportedError
from unlearnkit.seeding import preserved_rng_state, seed_everything
from unlearnkit.training.predict import param_device, param_dtype, resolve_device
from unlearnkit.training.recipes import Recipe, make_recipe

ModelFactory = Callable[[], nn.Module]
"""Returns a fresh untrained model; every call gives the same initial weights."""

TrainFn = Callable[[ModelFactory, ArrayDataset, int], nn.Module]
"""A user training function: ``(model_factory, dataset, seed) -> trained model``."""


@dataclass
class TrainResult:
    """A trained model (a new object), wall-clock seconds, per-epoch/iteration history.

    ``grad_norm`` is ``‖∇J(θ)‖₂`` of the recipe's regularised full-batch objective at the
    returned weights (L-BFGS always; SGD only with ``report_grad_norm``), ``converged`` whether
    L-BFGS reached ``tol`` (``None`` for SGD).
    """

    model: nn.Module
    seconds: float
    history: list[dict[str, float]]
    grad_norm: float | None = None
    converged: bool | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _check_outputs(model: nn.Module, data: ArrayDataset) -> None:
    if len(data) == 0:
        raise DataError(f"{data.name}: cannot train on an empty dataset")
    probe = copy.deepcopy(model).eval()
    with torch.no_grad():
        x = data.x[:2].to(device=param_device(probe), dtype=param_dtype(probe))
        out = probe(x)
    if out.dim() != 2 or out.shape[1] != data.num_outputs:
        raise UnsupportedError(
            f"the model outputs shape {tuple(out.shape[1:])} per sample but {data.name} has "
            f"{data.num_outputs} {'classes' if data.task == 'multiclass' else 'attributes'}"
        )


def train(
    model: nn.Module,
    data: ArrayDataset,
    recipe: Recipe | dict[str, Any] | str,
    seed: int = 123,
) -> TrainResult:
    """Train a copy of ``model`` on ``data`` with ``recipe``; ``model`` itself is unchanged.

    Seeds python/numpy/torch with ``seed`` right before training (the caller's RNG state is
    restored afterwards) and draws every shuffle and augmentation from a ``torch.Generator``
    seeded with ``seed``: the same inputs give bit-identical weights on the same device. On
    CUDA, cuDNN is set deterministic.
    """
    recipe = make_recipe(recipe)
    recipe.check(model, data)
    _check_outputs(model, data)
    device = resolve_device(recipe.device)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    work = copy.deepcopy(model).to(device)
    with preserved_rng_state(cuda=device.type == "cuda"):
        gen = seed_everything(seed)
        sync()
        t0 = time.perf_counter()
        fit = recipe.fit(work, data, gen, device)
        sync()
        seconds = time.perf_counter() - t0
    return TrainResult(
        model=work,
        seconds=seconds,
        history=fit.history,
        grad_norm=fit.grad_norm,
        converged=fit.converged,
        info={"recipe": recipe.model_dump(), "seed": seed, "n": len(data), "device": str(device)},
    )


def retrain(
    initial_model: nn.Module,
    retain: ArrayDataset,
    recipe: Recipe | dict[str, Any] | str,
    seed: int = 123,
) -> TrainResult:
    """The gold standard: the Original's recipe, initial weights and seed, on retain only.

    Identical to ``train(initial_model, retain, recipe, seed)``; pass the *untrained* model
    the Original started from.
    """
    return train(initial_model, retain, recipe, seed)


def recipe_train_fn(recipe: Recipe | dict[str, Any] | str) -> TrainFn:
    """A :data:`TrainFn` that trains ``model_factory()`` with ``recipe`` (see :func:`train`)."""
    resolved = make_recipe(recipe)

    def train_fn(model_factory: ModelFactory, dataset: ArrayDataset, seed: int) -> nn.Module:
        return train(model_factory(), dataset, resolved, seed).model

    return train_fn


def run_train_fn(
    train_fn: TrainFn, model_factory: ModelFactory, dataset: ArrayDataset, seed: int
) -> nn.Module:
    """Call a user :data:`TrainFn` with the caller's global RNG state preserved; check that it
    returned an ``nn.Module``."""
    with preserved_rng_state(cuda=True):
        model = train_fn(model_factory, dataset, seed)
    if not isinstance(model, nn.Module):
        raise UnsupportedError(
            f"the training function returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model
