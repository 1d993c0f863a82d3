"""Forget-set selectors: which sample ids a deletion request names.

Each selector is a pydantic spec registered in :data:`FORGET_SELECTORS`; ``spec.select(dataset,
seed)`` returns a :class:`ForgetSplit` of sorted, disjoint int64 id tensors whose union is the
dataset's ids. A :class:`ForgetStep` (a spec in text form and its seed) is one deletion of a
data plan; :func:`forget_steps` applies several in order, each drawing from what the previous
ones retained.

=====================  =========================================  ================================
kind                   forget set                                 text form
=====================  =========================================  ================================
``random``             ``round(fraction * n)`` of all samples     ``random:0.1``
``class``              every sample of class ``label``            ``class:3`` or ``class:cat``
``class_fraction``     ``round(fraction * n_c)`` of class ``c``   ``class_fraction:3:0.5``
``attribute_fraction`` ``round(fraction * n_a)`` of the samples   ``attribute_fraction:wide:0.25``
                       having attribute ``a`` (multi-label)
``ids``                exactly the ids given                      ``ids:1,2,3`` or ``ids:@file.txt``
``memorised``          the most memorised samples (leave-out      ``memorised:0.1`` or
                       score of a pool on random halves,          ``memorised:50:@scores.st``
                       :mod:`unlearnkit.data.memorised`)
=====================  =========================================  ================================

Counts use Python's ``round`` (half to even) and must be at least 1. Random draws are
``numpy.random.default_rng(seed).choice(n_pool, k, replace=False)`` over the pool's ids in
increasing order, so the selection depends only on the set of ids, the spec and the seed.
An id file holds integers separated by commas or whitespace; ``#`` starts a comment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from unlearnkit.data.base import DatasetLike
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.io import read_text_file
from unlearnkit.registry import Registry


@dataclass(frozen=True)
class ForgetSplit:
    """Retain and forget ids: sorted int64 tensors, disjoint."""

    retain_ids: torch.Tensor
    forget_ids: torch.Tensor

    def __post_init__(self) -> None:
        for label, ids in (("retain_ids", self.retain_ids), ("forget_ids", self.forget_ids)):
            if ids.dtype != torch.int64 or ids.ndim != 1:
                raise DataError(f"{label} must be a 1-D int64 tensor")
            if ids.numel() > 1 and not bool((ids[1:] > ids[:-1]).all()):
                raise DataError(f"{label} must be sorted and unique")
        if np.intersect1d(self.retain_ids.numpy(), self.forget_ids.numpy()).size:
            raise DataError("retain and forget ids overlap")

    def retain(self, dataset: DatasetLike) -> DatasetLike:
        """The retained samples of ``dataset``."""
        return dataset.subset(self.retain_ids, name=f"{dataset.name}:retain")

    def forget(self, dataset: DatasetLike) -> DatasetLike:
        """The samples to forget."""
        return dataset.subset(self.forget_ids, name=f"{dataset.name}:forget")


def _split(dataset: DatasetLike, forget: np.ndarray) -> ForgetSplit:
    all_ids = np.sort(dataset.ids.numpy())
    forget = np.unique(forget.astype(np.int64))
    retain = np.setdiff1d(all_ids, forget, assume_unique=True)
    return ForgetSplit(torch.from_numpy(retain.copy()), torch.from_numpy(forget.copy()))


def _draw(pool: np.ndarray, fraction: float, seed: int, what: str) -> np.ndarray:
    """``round(fraction * len(pool))`` ids of ``pool`` drawn without replacement."""
    pool = np.sort(pool)
    k = round(fraction * len(pool))
    if k == 0:
        raise DataError(f"fraction {fraction} of {len(pool)} {what} selects no sample")
    picked = np.random.default_rng(seed).choice(len(pool), size=k, replace=False)
    return pool[picked]


def _column(names: Sequence[str], key: int | str, kind: str) -> int:
    """Index of class/attribute ``key`` (a name, or an index as int or digits)."""
    if isinstance(key, str) and key in names:
        return list(names).index(key)
    try:
        index = int(key)
    except ValueError:
        raise DataError(f"unknown {kind} {key!r}; known: {', '.join(names)}") from None
    if not 0 <= index < len(names):
        raise DataError(f"{kind} index {index} out of range 0..{len(names) - 1}")
    return index


class ForgetSpec(BaseModel):
    """Base of the selector specs. ``positional`` names the fields of the text form, in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    positional: ClassVar[tuple[str, ...]] = ()
    optional: ClassVar[int] = 0  # how many trailing positional fields may be left out
    usage: ClassVar[str] = ""

    def select(self, dataset: DatasetLike, seed: int = 0) -> ForgetSplit:
        """The retain/forget split of ``dataset`` this spec names."""
        return _split(dataset, self.forget_ids(dataset, seed))

    def forget_ids(self, dataset: DatasetLike, seed: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def to_text(self) -> str:
        """The text form, which :func:`parse_forget_spec` reads back."""
        parts = [self.kind]
        for name in self.positional:
            value = getattr(self, name)
            if value is None:  # an optional trailing field left out
                break
            parts.append(",".join(map(str, value)) if isinstance(value, tuple) else str(value))
        return ":".join(parts)


FORGET_SELECTORS: Registry[type[ForgetSpec]] = Registry("forget selector")

Fraction = Annotated[float, Field(gt=0.0, le=1.0)]


@FORGET_SELECTORS.register("random")
class RandomForget(ForgetSpec):
    """``round(fraction * n)`` samples drawn uniformly from the whole dataset."""

    kind: Literal["random"] = "random"
    fraction: Fraction
    positional: ClassVar[tuple[str, ...]] = ("fraction",)
    usage: ClassVar[str] = "random:FRACTION"

    def forget_ids(self, dataset: DatasetLike, seed: int) -> np.ndarray:
        return _draw(dataset.ids.numpy(), self.fraction, seed, "samples")


@FORGET_SELECTORS.register("class")
class ClassForget(ForgetSpec):
    """Every sample of class ``label`` (a class index or name; multi-class data)."""

    kind: Literal["class"] = "class"
    label: int | str
    positional: ClassVar[tuple[str, ...]] = ("label",)
    usage: ClassVar[str] = "class:CLASS"

    def forget_ids(self, dataset: DatasetLike, seed: int) -> np.ndarray:
        return _class_pool(dataset, self.label)


def _class_pool(dataset: DatasetLike, label: int | str) -> np.ndarray:
    c = _column(dataset.classes, label, "class")
    pool = dataset.ids.numpy()[dataset.targets_for_class().numpy() == c]
    if len(pool) == 0:
        raise DataError(f"class {label!r} has no sample in {dataset.name!r}")
    return pool


@FORGET_SELECTORS.register("class_fraction")
class ClassFractionForget(ForgetSpec):
    """``round(fraction * n_c)`` samples drawn from the ``n_c`` samples of class ``label``."""

    kind: Literal["class_fraction"] = "class_fraction"
    label: int | str
    fraction: Fraction
    positional: ClassVar[tuple[str, ...]] = ("label", "fraction")
    usage: ClassVar[str] = "class_fraction:CLASS:FRACTION"

    def forget_ids(self, dataset: DatasetLike, seed: int) -> np.ndarray:
        return _draw(_class_pool(dataset, self.label), self.fraction, seed, "class samples")


@FORGET_SELECTORS.register("attribute_fraction")
class AttributeFractionForget(ForgetSpec):
    """``round(fraction * n_a)`` samples drawn from the ``n_a`` samples with ``y[:, a] == 1``."""

    kind: Literal["attribute_fraction"] = "attribute_fraction"
    attribute: int | str
    fraction: Fraction
    positional: ClassVar[tuple[str, ...]] = ("attribute", "fraction")
    usage: ClassVar[str] = "attribute_fraction:ATTRIBUTE:FRACTION"

    def forget_ids(self, dataset: DatasetLike, seed: int) -> np.ndarray:
        if dataset.task != "multilabel":
            raise DataError(f"{dataset.name!r} is multi-class; attribute_fraction needs attributes")
        a = _column(dataset.classes, self.attribute, "attribute")
        pool = dataset.ids.numpy()[dataset.y[:, a].numpy() > 0.5]
        if len(pool) == 0:
            raise DataError(f"no sample of {dataset.name!r} has attribute {self.attribute!r}")
        return _draw(pool, self.fraction, seed, f"samples with {self.attribute!r}")


def _read_id_text(text: str) -> list[int]:
    body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    tokens = [t for t in re.split(r"[,\s]+", body) if t]
    try:
        return [int(t) for t in tokens]
    except ValueError:
        bad = next(t for t in tokens if not t.lstrip("+-").isdigit())
        raise ValueError(f"{bad!r} is not an integer id") from None


@FORGET_SELECTORS.register("ids")
class IdsForget(ForgetSpec):
    """Exactly the ids given (``"1,2,3"``, ``"@file.txt"`` or a list); unknown ids raise
    :class:`~unlearnkit.errors.UnknownIdsError`."""

    kind: Literal["ids"] = "ids"
    ids: tuple[int, ...]
    positional: ClassVar[tuple[str, ...]] = ("ids",)
    usage: ClassVar[str] = "ids:ID,ID,... or ids:@FILE"

    @field_validator("ids", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.startswith("@"):
                # bounded: a device (/dev/zero), a folder or a huge file is refused
                value = read_text_file(Path(value[1:]), "id file", error=ValueError)
            value = _read_id_text(value)
        return value

    @field_validator("ids")
    @classmethod
    def _nonempty(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("no ids given")
        return value

    def forget_ids(self, dataset: DatasetLike, seed: int) -> np.ndarray:
        ids = np.asarray(self.ids, dtype=np.int64)
        dataset.positions(ids)  # raises UnknownIdsError naming the first unknown ids
        return ids


AnyForgetSpec = Annotated[
    RandomForget | ClassForget | ClassFractionForget | AttributeFractionForget | IdsForget,
    Field(discriminator="kind"),
]
"""A discriminated union of every spec, for pydantic config models."""


def parse_forget_spec(text: str) -> ForgetSpec:
    """Read the text form ``KIND:ARG[:ARG]`` (see the module docstring); errors -> ConfigError."""
    kind, sep, rest = text.strip().partition(":")
    if not sep:
        raise ConfigError(f"forget spec {text!r} has no ':'; expected e.g. 'random:0.1'")
    cls = FORGET_SELECTORS.get(kind)
    args = rest.split(":", maxsplit=len(cls.positional) - 1)
    least = len(cls.positional) - cls.optional
    if not least <= len(args) <= len(cls.positional) or any(not a for a in args):
        raise ConfigError(f"forget spec {text!r}: expected {cls.usage}")
    return make_forget_spec({"kind": kind, **dict(zip(cls.positional, args, strict=False))})


def make_forget_spec(spec: ForgetSpec | str | dict[str, Any]) -> ForgetSpec:
    """A spec from a spec, its text form, or a dict with a ``kind`` key."""
    if isinstance(spec, ForgetSpec):
        return spec
    if isinstance(spec, str):
        return parse_forget_spec(spec)
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ConfigError(f"a forget spec needs a 'kind' ({', '.join(FORGET_SELECTORS.names())})")
    cls = FORGET_SELECTORS.get(str(spec["kind"]))
    try:
        return cls.model_validate(spec)
    except ValidationError as err:
        msgs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"bad forget spec {spec!r}: {msgs}; expected {cls.usage}") from None


def select_forget(
    dataset: DatasetLike, spec: ForgetSpec | str | dict[str, Any], seed: int = 0
) -> ForgetSplit:
    """Split ``dataset`` into retain and forget ids by ``spec`` (deterministic given ``seed``)."""
    return make_forget_spec(spec).select(dataset, seed)


# --------------------------------------------------------------------------- forget steps


@dataclass(frozen=True)
class ForgetStep:
    """One deletion: a forget spec in its text form (``random:0.1``) and the seed of its draw."""

    spec: str
    seed: int = 0

    @classmethod
    def make(cls, spec: ForgetSpec | str | dict[str, Any], seed: int = 0) -> ForgetStep:
        """A step from any spec form; the spec is validated and stored in canonical text."""
        return cls(make_forget_spec(spec).to_text(), int(seed))

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "seed": self.seed}


def steps_of(forget: Any, seed: int) -> tuple[ForgetStep, ...]:
    """Normalise ``forget``: None, a spec (str/dict/ForgetSpec, drawn with ``seed``), a
    :class:`ForgetStep`, a ``{"spec", "seed"}`` dict, or a sequence of those."""
    if forget is None:
        return ()
    if isinstance(forget, ForgetStep):
        return (forget,)
    if isinstance(forget, str | ForgetSpec):
        return (ForgetStep.make(forget, seed),)
    if isinstance(forget, Mapping):
        if "spec" in forget:
            return (ForgetStep.make(forget["spec"], int(forget.get("seed", 0))),)
        return (ForgetStep.make(dict(forget), seed),)
    if isinstance(forget, Iterable):
        return tuple(s for item in forget for s in steps_of(item, seed))
    raise ConfigError(f"forget must be a spec, a ForgetStep or a list of them, not {forget!r}")


def forget_steps(train: DatasetLike, steps: tuple[ForgetStep, ...]) -> ForgetSplit:
    """Apply the steps in order, each drawing from what the previous ones retained."""
    retained = train
    forgotten: list[np.ndarray] = []
    for step in steps:
        chosen = make_forget_spec(step.spec).select(retained, seed=step.seed)
        forgotten.append(chosen.forget_ids.numpy())
        retained = retained.subset(chosen.retain_ids)
    gone = np.unique(np.concatenate(forgotten)) if forgotten else np.zeros(0, dtype=np.int64)
    keep = np.sort(retained.ids.numpy())
    return ForgetSplit(torch.from_numpy(keep.copy()), torch.from_numpy(gone.astype(np.int64)))


def ids_spec(ids: Sequence[int] | torch.Tensor | np.ndarray) -> str:
    """The forget spec naming exactly these sample ids (``ids:3,17``)."""
    flat = np.asarray(ids, dtype=np.int64).reshape(-1)
    if flat.size == 0:
        raise ConfigError("no sample ids given for the forget set")
    return "ids:" + ",".join(str(int(i)) for i in flat)


def as_forget(forget: Any) -> Any:
    """A forget spec as given, or the ``ids:`` spec of a tensor / array / list of ids."""
    if isinstance(forget, torch.Tensor | np.ndarray):
        return ids_spec(forget)
    if isinstance(forget, list | tuple) and forget and all(isinstance(i, int) for i in forget):
        return ids_spec(list(forget))
    return forget
