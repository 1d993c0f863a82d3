"""EU-k: Exact Unlearning of the last k layers (Goel et al. 2022; Deep Unlearn, arXiv 2410.01276).

CF-k (:mod:`unlearnkit.methods.cfk`: same loss, optimizer, step decay and frozen stem/early
blocks) with two changes:

1. before training, the last k blocks and the classifier are **re-initialised**: Conv
   Kaiming-uniform (fan_out, ReLU), bias 0; BatchNorm weight 1, bias 0; Linear Xavier-uniform,
   bias 0 (:func:`~unlearnkit.methods.toolkit.reinit.kaiming_xavier_reinit`);
2. the retain batches are **augmented** with the training transform (``augmentation``: names
   of :mod:`unlearnkit.training.augmentation` applied in order; "auto" uses the dataset's
   ``meta["augment"]`` if set, else ``("crop4", "hflip")`` (RandomCrop(padding 4) + horizontal
   flip) for image arrays and nothing otherwise).

Difference from Deep Unlearn (``faithful=False``, the default): their re-initialised BatchNorm
layers keep O's running mean/variance, and because training runs in eval mode those statistics,
computed on retain ∪ forget, are never re-estimated, so the "exactly unlearned" blocks still
depend on the forget set (see docs/methods.md). We reset the running statistics of the re-initialised
BatchNorm layers and run the re-initialised modules in train mode (so they re-estimate their
statistics from retain batches) while the frozen part stays in eval mode. ``faithful=True``
keeps O's statistics and trains everything in eval mode, as their code does.

Search space: as CF-k; Deep Unlearn also samples ``training_epoch_factor``, which is unused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import optuna.distributions as od
import torch
from pydantic import Field, field_validator
from torch import nn

from unlearnkit.methods.base import METHODS, MethodConfig, MulticlassUnlearner, UnlearnData
from unlearnkit.methods.cfk import (
    CFkConfig,
    cfk_space,
    train_last_blocks,
    trained_modules,
    unique_params,
)
from unlearnkit.methods.toolkit.batches import Batch, make_loader, model_device
from unlearnkit.methods.toolkit.layout import model_layout
from unlearnkit.methods.toolkit.reinit import kaiming_xavier_reinit
from unlearnkit.methods.toolkit.search_space import DEFAULT_MAX_EPOCHS
from unlearnkit.training.augmentation import Pipeline, auto_pipeline, check_pipeline, compose


class EUkConfig(CFkConfig):
    """CF-k's defaults plus the augmentation name and the faithful switch."""

    augmentation: Literal["auto"] | Pipeline = Field(
        "auto", description="'auto', or augmentation names applied in order (e.g. crop4, hflip)"
    )
    faithful: bool = Field(False, description="keep O's BN running statistics (Deep Unlearn)")

    @field_validator("augmentation")
    @classmethod
    def _known(cls, v: str | Pipeline) -> str | Pipeline:
        return v if v == "auto" else check_pipeline(v)


@METHODS.register("euk")
class EUk(MulticlassUnlearner):
    """Re-initialise the last k blocks and the classifier, then train them on augmented retain."""

    name = "Exact Unlearning of the last k layers"
    abbreviation = "EU-k"
    family = "literature"
    paper = "Goel et al. 2022, Towards Adversarial Evaluations for Inexact Machine Unlearning"
    uses = ("retain",)
    requires = ("classifier",)
    Config = EUkConfig

    def search_space(self, max_epochs: int = DEFAULT_MAX_EPOCHS) -> dict[str, od.BaseDistribution]:
        return cfk_space(max_epochs)

    def run(
        self, model: nn.Module, data: UnlearnData, config: MethodConfig, generator: torch.Generator
    ) -> nn.Module:
        cfg = config if isinstance(config, EUkConfig) else EUkConfig(**config.model_dump())
        names = (
            auto_pipeline(data.retain.x, data.retain.meta)
            if cfg.augmentation == "auto"
            else cfg.augmentation
        )
        augment = compose(names)
        augment(data.retain.x[:1], torch.Generator())  # unsuitable data fails before any work
        modules = trained_modules(
            model_layout(model, self.head, data.retain.num_outputs), cfg.num_blocks
        )
        for m in modules:
            kaiming_xavier_reinit(m, generator, reset_running_stats=not cfg.faithful)
        params = unique_params(modules)
        loader = make_loader(data.retain, cfg.batch_size, shuffle=True, generator=generator)
        device = model_device(model)

        def batches() -> Iterator[Batch]:
            for x, y in loader:
                yield augment(x.to(device), generator), y.to(device)

        model.eval()
        if not cfg.faithful:
            for m in modules:
                m.train()
        train_last_blocks(model, params, batches, cfg)
        return model
