"""The ``Unlearner`` interface shared by every unlearning method, and the method registry.

``unlearn(model, data, config, seed) -> UnlearnResult``: the input model is never mutated
(methods work on a deep copy); the RNGs are seeded right before the work starts, as in Deep
Unlearn (Cadet et al., arXiv 2410.01276), and the caller's global RNG state is restored
afterwards (:func:`~unlearnkit.seeding.preserved_rng_state`); methods draw their randomness from
the ``generator`` they are given. Requirements (:mod:`unlearnkit.methods.requirements`) are
checked before any work, and only the unlearning work is timed (CUDA synchronised when used).

Methods register themselves with ``@METHODS.register(key)``; importing
:mod:`unlearnkit.methods` imports every method module, so a new method is one new file.
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
from unlearnkit.methods.requirements import REQUIREMENTS, Subject
from unlearnkit.registry import Registry
from unlearnkit.seeding import preserved_rng_state, seed_everything


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
    family: ClassVar[str] = "other"
    """Deep Unlearn's grouping (arXiv 2410.01276): baseline, literature, kaggle; or closed
    form, reference; the method table sorts by it."""
    paper: ClassVar[str]
    uses: ClassVar[tuple[str, ...]] = ("retain", "forget")
    requires: ClassVar[tuple[str, ...]] = ()
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    head: str | None = None
    """Module path of the classifier head for this run (``None``: found automatically)."""

    def search_space(self, max_epochs: int = 10) -> dict[str, Any]:
        """Optuna distributions for the hyper-parameters that change behaviour.

        ``max_epochs`` is E* = ceil(0.2 · training epochs), Deep Unlearn's epoch budget.
        """
        return {}

    inert_when_faithful: ClassVar[tuple[str, ...]] = ()
    """Keys of :meth:`search_space` that have no effect with ``faithful=True`` (e.g. NG+'s
    ``l2_weight``: Deep Unlearn's code never applies it); :meth:`search_space_for` leaves them
    out of that mode's space."""
    inert_when_corrected: ClassVar[tuple[str, ...]] = ()
    """Keys of :meth:`search_space` that have an effect only with ``faithful=True``."""

    def search_space_for(self, max_epochs: int = 10, faithful: bool = False) -> dict[str, Any]:
        """:meth:`search_space` of one mode: the keys that have no effect in that mode
        (:attr:`inert_when_faithful` or :attr:`inert_when_corrected`) are not sampled. For a
        method without a ``faithful`` switch both modes give :meth:`search_space`."""
        if "faithful" not in self.Config.model_fields:
            return self.search_space(max_epochs)
        inert = set(self.inert_when_faithful if faithful else self.inert_when_corrected)
        return {k: v for k, v in self.search_space(max_epochs).items() if k not in inert}

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
        """Raise :class:`UnsupportedError` if the method cannot handle ``model``/``data``.

        Checks that validation data is present when ``"val"`` is in ``uses`` and every
        requirement in ``requires``; the classifier head is the one named by ``self.head``
        (set by :meth:`unlearn`) or found automatically.
        """
        if "val" in self.uses and data.val is None:
            raise UnsupportedError(f"{self.abbreviation} needs validation data (data.val is None)")
        subject = Subject(model, self.abbreviation, self.head, _num_outputs(data))
        for req in self.requires:
            if req in REQUIREMENTS:  # others concern the caller; the method checks them itself
                REQUIREMENTS.get(req).check(subject)

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
        head: str | None = None,
    ) -> UnlearnResult:
        """Validate, copy, seed, time and run. The input model and the caller's global RNG
        state are left unchanged; ``head`` names the classifier module (e.g. ``"classifier"``)
        when it cannot be found automatically (:func:`unlearnkit.models.find_classifier_head`).
        """
        cfg = self.make_config(config)
        self.head = head
        self.check(model, data)
        device = torch.device(device)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        with preserved_rng_state(cuda=device.type == "cuda"):
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


def _num_outputs(data: UnlearnData) -> int | None:
    """The number of outputs (classes/attributes) of the data, if any split is given."""
    for ds in (data.retain, data.forget, data.val):
        if ds is not None:
            return ds.num_outputs
    return None


class MulticlassUnlearner(Unlearner):
    """An :class:`Unlearner` for multiclass classifiers (every zoo method).

    :meth:`check` adds to the base checks: every split in ``uses`` must be present, non-empty
    and multiclass (int64 class labels, at least 2 classes), so a method fails with
    :class:`UnsupportedError` before any work. Splits listed in ``unlabelled`` (KDE's val) must
    be present and non-empty, but their labels are never read, not even by the checks.
    """

    unlabelled: ClassVar[tuple[str, ...]] = ()

    def check(self, model: torch.nn.Module, data: UnlearnData) -> None:
        who = self.abbreviation
        for split in self.uses:
            ds: ArrayDataset | None = getattr(data, split, None)
            if ds is None:
                raise UnsupportedError(f"{who} needs {split} data (got None)")
            if ds.x.shape[0] == 0:
                raise UnsupportedError(f"{who} needs a non-empty {split} set")
            if split in self.unlabelled:
                continue
            if ds.task != "multiclass" or ds.y.dtype != torch.int64 or ds.y.ndim != 1:
                raise UnsupportedError(
                    f"{who} handles multiclass data only (int64 class labels); "
                    f"{split} set {ds.name!r} has task {ds.task!r}"
                )
            if ds.num_outputs < 2:
                raise UnsupportedError(
                    f"{who} needs at least 2 classes; {split} set {ds.name!r} has {ds.num_outputs}"
                )
        super().check(model, data)


METHODS: Registry[type[Unlearner]] = Registry("unlearning method")
