"""The ``Unlearner`` interface shared by every unlearning method, and the method registry.

``unlearn(model, data, config, seed) -> UnlearnResult``: the input model is never mutated
(methods work on a deep copy), the RNGs are seeded right before the work starts (Deep Unlearn,
spec/methods.md §2.0), requirements are checked before any work, and only the unlearning work
is timed (CUDA synchronised when used).
"""

from __future__ import annotations

import copy
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import ConfigError, UnsupportedError
from unlearnkit.registry import Registry
from unlearnkit.seeding import seed_everything


@dataclass(frozen=True)
class UnlearnData:
    """What a method may read: retain and forget sets, optional validation data.

    The test set is never given to a method.
    """

    retain: ArrayDataset
    forget: ArrayDataset
    val: ArrayDataset | None = None


class MethodConfig(BaseModel):
    """Base class of every method's hyper-parameters (pydantic, unknown keys refused)."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class UnlearnResult:
    model: torch.nn.Module
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


class Unlearner(ABC):
    """One unlearning method. Subclasses set the class variables and implement :meth:`run`."""

    name: ClassVar[str]
    abbreviation: ClassVar[str]
    paper: ClassVar[str]
    uses: ClassVar[tuple[str, ...]] = ("retain", "forget")
    requires: ClassVar[tuple[str, ...]] = ()
    Config: ClassVar[type[MethodConfig]] = MethodConfig

    def search_space(self, max_epochs: int = 10) -> dict[str, Any]:
        """Optuna distributions for the hyper-parameters that change behaviour.

        ``max_epochs`` is E* = ceil(0.2 · training epochs) (spec methods.md §2.0).
        """
        return {}

    def make_config(self, config: MethodConfig | dict[str, Any] | None = None) -> MethodConfig:
        """Validate ``config`` into this method's ``Config``; bad values raise ConfigError."""
        if isinstance(config, self.Config):
            return config
        if isinstance(config, MethodConfig):
            config = config.model_dump()
        try:
            return self.Config(**(config or {}))
        except ValidationError as e:
            raise ConfigError(f"bad configuration for {self.abbreviation}: {e}") from None

    def check(self, model: torch.nn.Module, data: UnlearnData) -> None:
        """Raise :class:`UnsupportedError` if the method cannot handle ``model``/``data``."""
        if "val" in self.uses and data.val is None:
            raise UnsupportedError(f"{self.abbreviation} needs validation data (data.val is None)")
        if "conv" in self.requires and not any(
            isinstance(m, torch.nn.modules.conv._ConvNd) for m in model.modules()
        ):
            raise UnsupportedError(f"{self.abbreviation} needs a model with convolution layers")
        if "classifier" in self.requires and not isinstance(
            getattr(model, "fc", None), torch.nn.Linear
        ):
            raise UnsupportedError(
                f"{self.abbreviation} needs a model whose classifier is a Linear attribute named 'fc'"
            )

    @abstractmethod
    def run(
        self,
        model: torch.nn.Module,
        data: UnlearnData,
        config: MethodConfig,
        generator: torch.Generator,
    ) -> torch.nn.Module:
        """Unlearn in place on ``model`` (already a copy) and return it."""

    def unlearn(
        self,
        model: torch.nn.Module,
        data: UnlearnData,
        config: MethodConfig | dict[str, Any] | None = None,
        seed: int = 123,
        device: str | torch.device = "cpu",
    ) -> UnlearnResult:
        """Validate, copy, seed, time and run. The input model is left unchanged."""
        cfg = self.make_config(config)
        self.check(model, data)
        device = torch.device(device)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        work = copy.deepcopy(model).to(device)
        gen = seed_everything(seed)
        self.run_info: dict[str, Any] = {}
        out = self.run(work, data, cfg, gen)
        sync()
        seconds = time.perf_counter() - t0
        info = {"config": cfg.model_dump(), **self.run_info}
        return UnlearnResult(model=out, seconds=seconds, info=info)


METHODS: Registry[type[Unlearner]] = Registry("unlearning method")
