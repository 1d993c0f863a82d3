"""The two reference rows of every table: Original (no unlearning) and Retrain (the gold
standard: the Original's training and initial weights, applied to the retain set only).

Retrain works with any model. It needs two things, each given or derived:

- **the initial weights**: ``Retrain(model_factory=f)`` (``f()`` returns the untrained model,
  the same weights on every call) or ``Retrain(initial_model=m)`` (a copy is trained); else, for
  a model built by :func:`unlearnkit.models.build_model`, the recorded build spec
  (:func:`unlearnkit.models.spec_of`: name, input shape, outputs, seed) rebuilds them;
- **the training**: ``Retrain(train_fn=t)``, a user :data:`~unlearnkit.training.TrainFn`
  ``(model_factory, dataset, seed) -> model``; else the SGD recipe of :class:`RetrainConfig`.

Both are called with ``RetrainConfig.train_seed``, the seed the Original was trained with.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from pydantic import Field

from unlearnkit.errors import ConfigError
from unlearnkit.methods.base import METHODS, MethodConfig, UnlearnData, Unlearner
from unlearnkit.models import ModelSpec, build_from_spec
from unlearnkit.training import ModelFactory, SGDRecipe, TrainFn, recipe_train_fn, run_train_fn


@METHODS.register("original")
class Original(Unlearner):
    """Returns the model unchanged (a copy): the upper bound on what must be forgotten."""

    name = "Original"
    abbreviation = "O"
    family = "reference"
    paper = "reference row: the trained model, no unlearning"
    uses = ()

    def run(
        self,
        model: torch.nn.Module,
        data: UnlearnData,
        config: MethodConfig,
        generator: torch.Generator,
    ) -> torch.nn.Module:
        return model


class RetrainConfig(MethodConfig):
    """The SGD recipe of the Original (Deep Unlearn's defaults, arXiv 2410.01276), used when no
    ``train_fn`` is given, and the training seed (used by either)."""

    epochs: int = Field(50, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    train_seed: int = Field(123, description="the seed the Original was trained with")


@METHODS.register("retrain")
class Retrain(Unlearner):
    """Train from the Original's initial weights on the retain set only (the gold standard).

    ``train_fn``: the user's training function (default: the recipe of the config);
    ``model_factory`` or ``initial_model``: the Original's untrained model (default: rebuilt
    from the build spec of a model made by :func:`~unlearnkit.models.build_model`).
    """

    name = "Retrain"
    abbreviation = "R"
    family = "reference"
    paper = "reference row: the gold standard, the Original's training on retain only"
    uses = ("retain",)
    requires = ("train_fn",)
    Config = RetrainConfig

    def __init__(
        self,
        train_fn: TrainFn | None = None,
        model_factory: ModelFactory | None = None,
        initial_model: torch.nn.Module | None = None,
    ) -> None:
        if model_factory is not None and initial_model is not None:
            raise ConfigError("Retrain takes model_factory or initial_model, not both")
        self.train_fn = train_fn
        self.model_factory = model_factory
        self.initial_model = initial_model

    def factory(self, model: torch.nn.Module) -> ModelFactory:
        """The factory of the Original's initial weights (see the class docstring)."""
        if self.model_factory is not None:
            return self.model_factory
        initial = self.initial_model
        if initial is not None:
            return lambda: copy.deepcopy(initial)
        spec = getattr(model, "build_spec", None)
        if isinstance(spec, ModelSpec):
            return lambda: build_from_spec(spec)
        raise ConfigError(
            f"Retrain cannot rebuild the initial weights of this {type(model).__name__}: it was "
            "not built by unlearnkit.models.build_model. Pass Retrain(model_factory=<function "
            "returning the untrained model>) or Retrain(initial_model=<the untrained model>), "
            "and train_fn=<your (model_factory, dataset, seed) -> model> to train it your way"
        )

    def check(self, model: torch.nn.Module, data: UnlearnData) -> None:
        super().check(model, data)
        self.factory(model)  # raises ConfigError when the initial weights are unknown

    def run(
        self,
        model: torch.nn.Module,
        data: UnlearnData,
        config: MethodConfig,
        generator: torch.Generator,
    ) -> torch.nn.Module:
        assert isinstance(config, RetrainConfig)
        device = next(model.parameters()).device
        train_fn = self.train_fn or recipe_train_fn(
            SGDRecipe(
                epochs=config.epochs,
                batch_size=config.batch_size,
                lr=config.lr,
                momentum=config.momentum,
                weight_decay=config.weight_decay,
                device=str(device),
            )
        )
        retrained = run_train_fn(train_fn, self.factory(model), data.retain, config.train_seed)
        self.run_info["train_fn"] = "recipe" if self.train_fn is None else "user"
        return retrained.to(device).eval()

    def search_space(self, max_epochs: int = 10) -> dict[str, Any]:
        return {}
