"""The two reference rows of every table: Original (no unlearning) and Retrain (the gold
standard: the Original's recipe and initial weights, trained on the retain set only).

Retrain rebuilds the Original's *initial* weights from the model's recorded build spec
(:func:`unlearnkit.models.spec_of`: name, input shape, outputs, seed), so it needs a model
built by :func:`unlearnkit.models.build_model`.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from unlearnkit.methods.base import METHODS, MethodConfig, UnlearnData, Unlearner
from unlearnkit.models import build_from_spec, spec_of
from unlearnkit.training import SGDRecipe, train


@METHODS.register("original")
class Original(Unlearner):
    """Returns the model unchanged (a copy): the upper bound on what must be forgotten."""

    name = "Original"
    abbreviation = "O"
    paper = "-"
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
    """The training recipe of the Original (spec methods.md §1.4 defaults)."""

    epochs: int = Field(50, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    train_seed: int = Field(123, description="the seed the Original was trained with")


@METHODS.register("retrain")
class Retrain(Unlearner):
    """Train from the Original's initial weights on the retain set only (the gold standard)."""

    name = "Retrain"
    abbreviation = "R"
    paper = "-"
    uses = ("retain",)
    requires = ("build_spec",)
    Config = RetrainConfig

    def check(self, model: torch.nn.Module, data: UnlearnData) -> None:
        super().check(model, data)
        spec_of(model)  # raises ConfigError when the initial weights cannot be rebuilt

    def run(
        self,
        model: torch.nn.Module,
        data: UnlearnData,
        config: MethodConfig,
        generator: torch.Generator,
    ) -> torch.nn.Module:
        assert isinstance(config, RetrainConfig)
        device = next(model.parameters()).device
        init = build_from_spec(spec_of(model)).to(device)
        recipe = SGDRecipe(
            epochs=config.epochs,
            batch_size=config.batch_size,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            device=str(device),
        )
        result = train(init, data.retain, recipe, seed=config.train_seed)
        self.run_info["train_seconds"] = result.seconds
        return result.model.eval()

    def search_space(self, max_epochs: int = 10) -> dict[str, Any]:
        return {}
