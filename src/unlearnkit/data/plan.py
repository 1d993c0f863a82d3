"""THE data plan: everything that determines which samples a model was fit to.

A :class:`DataPlan` names a registered dataset and its loader parameters, the train / val /
test split (fractions, seed, stratification, official split), an ordered list of forget steps
and which part the model is fit to (``fit_on``). :meth:`DataPlan.materialise` loads the
dataset and derives a :class:`Split`:

1. ``train, val, test`` = :func:`~unlearnkit.data.splits.train_val_test_split` of the dataset
   (sizes and draws documented there; they depend only on the set of ids, never on row order);
   ``relabel`` steps (:mod:`unlearnkit.data.relabel`, seeded) then corrupt training labels;
2. forget step k (a forget spec, :mod:`unlearnkit.data.forget`, with its own seed) selects
   ``F_k`` from the samples still retained, ``R_{k-1}`` (``R_0 = train``); ``R_k = R_{k-1} \\ F_k``;
3. ``forget = F_1 ∪ … ∪ F_m`` and ``retain = R_m`` (so ``forget ∪ retain = train``, disjoint);
4. ``fit_on`` is ``train`` for an original and ``retain`` for a retrain, or for a model the
   forget set was unlearned or erased from (it stands for a model trained on ``retain``).

The same plan always gives the same ids: the manifest of a saved model stores the plan and
SHA-256 hashes of the id sets (:func:`split_hashes`); :func:`verify_split` re-checks them, so
a changed dataset file or code path is detected instead of silently training on other data.

Typical use (the plan each model's manifest records)::

    plan = DataPlan("mnist5k", forget="random:0.1", split_seed=3)   # the original: fit on train
    split = plan.materialise()
    plan.retrained()             # the retrain, and a model that unlearned split.forget
    plan.forgetting("class:3")   # a model that unlearned class 3 from the original instead
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from typing import Any, Literal

from unlearnkit.data.base import ArrayDataset, DatasetLike
from unlearnkit.data.forget import ForgetSpec, ForgetStep, as_forget, forget_steps, steps_of
from unlearnkit.data.registry import load_source
from unlearnkit.data.relabel import apply_relabel, relabel_in, relabel_steps
from unlearnkit.data.splits import train_val_test_split
from unlearnkit.errors import ConfigError, StateMismatchError

FitOn = Literal["train", "retain"]
PARTS = ("train", "val", "test", "retain", "forget")


@dataclass(frozen=True)
class DataPlan:
    """Dataset + parameters, split, forget steps and the part the model is fit to.

    ``forget`` accepts a spec (``"class:3"``, a dict, a ForgetSpec; drawn with ``forget_seed``),
    a :class:`ForgetStep` or a sequence of them; it is stored as a tuple of steps.
    ``relabel``: label corruption of the training part (:class:`~unlearnkit.data.relabel.Relabel`
    steps), recorded so every model and rerun sees the same labels.
    ``fit_on`` defaults to ``"train"`` (an original: the forget steps only say what is to be
    forgotten); :meth:`retrained` and :meth:`forgetting` give the plan of a model fit to
    ``retain``. Bad values raise :class:`~unlearnkit.errors.ConfigError`.
    """

    dataset: str
    params: Mapping[str, Any] = field(default_factory=dict)
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0
    forget: Any = ()
    forget_seed: InitVar[int] = 0
    fit_on: FitOn = "train"
    stratify: bool = True
    use_official: bool = True
    relabel: Any = ()

    def __post_init__(self, forget_seed: int) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError(f"a data plan needs a dataset name, got {self.dataset!r}")
        try:
            params = json.loads(json.dumps(dict(self.params or {})))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"dataset parameters must be JSON values: {err}") from None
        object.__setattr__(self, "params", params)
        for name in ("val_fraction", "test_fraction"):
            value = float(getattr(self, name))
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{name} must lie in [0, 1), got {value}")
            object.__setattr__(self, name, value)
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError("val_fraction + test_fraction must be below 1 to leave a train set")
        object.__setattr__(self, "split_seed", int(self.split_seed))
        object.__setattr__(self, "forget", steps_of(self.forget, forget_seed))
        object.__setattr__(self, "relabel", relabel_steps(self.relabel))
        if self.fit_on not in ("train", "retain"):
            raise ConfigError(f"fit_on must be 'train' or 'retain', got {self.fit_on!r}")
        if self.fit_on == "retain" and not self.forget:
            raise ConfigError("fit_on='retain' needs a forget set in the plan")

    # ----------------------------------------------------------------- derived plans

    def split_only(self) -> DataPlan:
        """The same split with no forget step (fit to ``train``): an original's plan."""
        return dataclasses.replace(self, forget=(), fit_on="train")

    @property
    def removed(self) -> tuple[ForgetStep, ...]:
        """The forget steps already taken out of what the model is fit to (none when
        ``fit_on`` is ``"train"``)."""
        return self.forget if self.fit_on == "retain" else ()

    def forgetting(self, spec: ForgetSpec | str | dict[str, Any], seed: int = 0) -> DataPlan:
        """The plan of a model obtained by unlearning ``spec`` (drawn with ``seed`` from what
        this plan's model is fit to) from this plan's model: :attr:`removed` plus one step,
        fit to ``retain``."""
        step = ForgetStep.make(spec, seed)
        return dataclasses.replace(self, forget=(*self.removed, step), fit_on="retain")

    def retrained(self) -> DataPlan:
        """The same plan fit to ``retain`` (the retrain reference's plan)."""
        return dataclasses.replace(self, fit_on="retain")

    # ----------------------------------------------------------------- (de)serialisation

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that :meth:`from_dict` reads back."""
        out = {
            "dataset": self.dataset,
            "params": dict(self.params),
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "split_seed": self.split_seed,
            "stratify": self.stratify,
            "use_official": self.use_official,
            "forget": [s.to_dict() for s in self.forget],
            "fit_on": self.fit_on,
        }
        if self.relabel:  # only when set: the keys of plans without corruption are unchanged
            out["relabel"] = [r.to_dict() for r in self.relabel]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataPlan:
        """Read :meth:`to_dict`'s form, or the older one of ``unlearnkit.workflow``
        (``dataset_params``; ``forget`` a text spec or None with ``forget_seed``; a forget spec
        there meant the model was fit to retain)."""
        if not isinstance(data, Mapping) or "dataset" not in data:
            raise ConfigError(f"a data plan needs at least a 'dataset', got {data!r}")
        d = dict(data)
        legacy = "dataset_params" in d or isinstance(d.get("forget"), str)
        params = d.pop("dataset_params", None) if "params" not in d else d.pop("params")
        forget_seed = int(d.pop("forget_seed", 0) or 0)
        forget = d.pop("forget", None)
        if legacy and forget is not None and "fit_on" not in d:
            d["fit_on"] = "retain"
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown data plan keys {unknown}")
        return cls(params=params or {}, forget=forget, forget_seed=forget_seed, **d)

    def key(self) -> str:
        """SHA-256 of the canonical JSON of :meth:`to_dict` (equal plans, equal keys)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def __hash__(self) -> int:
        return hash(self.key())

    def describe(self) -> str:
        """One line for messages: ``digits(size=500) split 0.1/0.2 seed 3, forget class:3@0``."""
        params = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        poison = "".join(f", relabel {r.spec}@{r.seed}->{r.to}" for r in self.relabel)
        return (
            f"{self.dataset}({params}) split {self.val_fraction}/{self.test_fraction} "
            f"seed {self.split_seed}{poison}, forget {_steps_text(self.forget)}, fit on {self.fit_on}"
        )

    # ----------------------------------------------------------------- materialise

    def materialise(self) -> Split:
        """Load the dataset (cached per process) and derive the split the plan describes."""
        full = load_source(self.dataset, self.params)
        parts = train_val_test_split(
            full,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            seed=self.split_seed,
            stratify=self.stratify,
            use_official=self.use_official,
        )
        train, _ = apply_relabel(parts.train, self.relabel)
        if self.relabel:
            full = relabel_in(full, train)
        forget = forget_steps(train, self.forget)
        return Split(
            train=train,
            val=parts.val,
            test=parts.test,
            retain=forget.retain(train),
            forget=forget.forget(train),
            plan=self,
            full=full,
            official=parts.official,
        )


@dataclass(frozen=True)
class Split:
    """The parts of a split: ``retain ∪ forget = train`` (disjoint; ids sorted when
    materialised from a plan).

    ``plan`` and ``full`` are set by :meth:`DataPlan.materialise`; a split built by hand (user
    data, the benchmark's stored splits) may leave them out.
    """

    train: DatasetLike
    val: DatasetLike
    test: DatasetLike
    retain: DatasetLike
    forget: DatasetLike
    plan: DataPlan | None = None
    full: ArrayDataset | None = None
    official: bool = False
    after: DataPlan | None = None

    @property
    def unlearned_plan(self) -> DataPlan | None:
        """The plan of a model from which this split's ``forget`` was removed: the plan itself
        fit to ``retain`` (or, for a :meth:`since` view, the later plan); None without a plan."""
        if self.after is not None:
            return self.after
        return self.plan.retrained() if self.plan is not None and self.plan.forget else None

    @property
    def holdout(self) -> DatasetLike | None:
        """Data no model of this split trained on: ``val`` if it has samples, else ``test``."""
        for part in (self.val, self.test):
            if len(part):
                return part
        return None

    def parts(self) -> dict[str, DatasetLike]:
        """The evaluation parts that have samples: retain, forget, val, test."""
        named = {"retain": self.retain, "forget": self.forget, "val": self.val, "test": self.test}
        return {k: d for k, d in named.items() if len(d)}

    def with_forget(self, forget: ForgetSpec | str | dict[str, Any], seed: int = 0) -> Split:
        """This split with ``forget`` (a spec, or sample ids) as the forget set, drawn
        from what the split's model was fit to. A plan that already removed steps gets one more
        step, seen from that model (:meth:`since`); a split without a plan re-selects from
        :attr:`fit_on`."""
        forget = as_forget(forget)
        if self.plan is None:
            return Split.from_datasets(
                self.fit_on, forget, forget_seed=seed, val=self.val, test=self.test
            )
        if not self.plan.removed:
            step = ForgetStep.make(forget, seed)
            return dataclasses.replace(self.plan, forget=(step,), fit_on="train").materialise()
        later = self.plan.forgetting(forget, seed)
        return later.materialise().since(self.plan)

    @property
    def fit_on(self) -> DatasetLike:
        """What the model the plan describes was fit to (``train`` or ``retain``)."""
        return self.retain if self.plan is not None and self.plan.fit_on == "retain" else self.train

    @classmethod
    def from_datasets(
        cls,
        train: DatasetLike,
        forget: ForgetSpec | str | dict[str, Any] | None = None,
        *,
        forget_seed: int = 0,
        val: DatasetLike | None = None,
        test: DatasetLike | None = None,
    ) -> Split:
        """A split of a user's own datasets (no plan): ``forget`` (a spec, e.g.
        ``"ids:3,17"``, drawn with ``forget_seed``) selects from ``train``; missing ``val`` /
        ``test`` are empty."""
        chosen = forget_steps(train, steps_of(forget, forget_seed))
        empty = train.subset([], name=f"{train.name}:empty")
        return cls(
            train,
            val if val is not None else empty,
            test if test is not None else empty,
            chosen.retain(train),
            chosen.forget(train),
        )

    def part(self, name: str) -> DatasetLike:
        """``train``, ``val``, ``test``, ``retain``, ``forget`` or ``fit_on`` by name."""
        if name not in (*PARTS, "fit_on"):
            raise ConfigError(f"unknown split part {name!r}; known: {', '.join(PARTS)}, fit_on")
        return getattr(self, name)

    def since(self, earlier: DataPlan) -> Split:
        """This split seen from a model with plan ``earlier`` (same split; its
        :attr:`~DataPlan.removed` steps the first of this plan's): ``train`` = what ``earlier``
        was fit to, ``forget`` = the samples removed since, ``retain`` unchanged. Used to
        evaluate an unlearned model against an original that was itself unlearned. The result
        has no plan: its ``fit_on`` is its ``train``."""
        if self.plan is None:
            raise ConfigError("Split.since needs a split materialised from a DataPlan")
        check_prefix(earlier, self.plan)
        fit = self.train.subset(forget_steps(self.train, earlier.removed).retain_ids)
        gone = forget_steps(fit, self.plan.removed[len(earlier.removed) :])
        return Split(
            fit,
            self.val,
            self.test,
            self.retain,
            gone.forget(fit),
            None,
            self.full,
            after=self.plan,
        )


# --------------------------------------------------------------------------- verification


_BASE_FIELDS = (
    ("dataset", "dataset"),
    ("params", "dataset parameters"),
    ("val_fraction", "validation fraction"),
    ("test_fraction", "test fraction"),
    ("split_seed", "split seed"),
    ("stratify", "stratification"),
    ("use_official", "use of the official split"),
    ("relabel", "label corruption"),
)


def split_differences(a: DataPlan, b: DataPlan) -> list[str]:
    """Human-readable differences between two plans' datasets and splits (forget ignored)."""
    return [
        f"{label} {getattr(a, name)!r} vs {getattr(b, name)!r}"
        for name, label in _BASE_FIELDS
        if getattr(a, name) != getattr(b, name)
    ]


def plan_differences(a: DataPlan, b: DataPlan) -> list[str]:
    """:func:`split_differences` plus the forget steps and ``fit_on``."""
    out = split_differences(a, b)
    if a.forget != b.forget:
        out.append(f"forget set {_steps_text(a.forget)} vs {_steps_text(b.forget)}")
    if a.fit_on != b.fit_on:
        out.append(f"fit on {a.fit_on} vs {b.fit_on}")
    return out


def check_same_split(a: DataPlan, b: DataPlan, what_a: str, what_b: str) -> None:
    """Raise :class:`StateMismatchError` naming every difference of dataset and split."""
    diff = split_differences(a, b)
    if diff:
        raise StateMismatchError(f"{what_b} does not use the data of {what_a}: " + "; ".join(diff))


def check_same_plan(a: DataPlan, b: DataPlan, what_a: str, what_b: str) -> None:
    """Raise :class:`StateMismatchError` naming every difference, forget set included."""
    diff = plan_differences(a, b)
    if diff:
        raise StateMismatchError(
            f"{what_b} has another data plan than {what_a}: " + "; ".join(diff)
        )


def check_prefix(earlier: DataPlan, later: DataPlan) -> None:
    """Raise unless ``later``'s model can descend from ``earlier``'s: same split, and the steps
    ``earlier`` removed (:attr:`DataPlan.removed`) are the first ``later`` removed, strictly
    fewer of them (a model is not its own ancestor's successor)."""
    check_same_split(later, earlier, "the later model", "the earlier model")
    a, b = earlier.removed, later.removed
    if len(a) >= len(b) or b[: len(a)] != a:
        raise StateMismatchError(
            f"the earlier model's removed forget steps ({_steps_text(a)}) are not the first "
            f"steps of the later model's ({_steps_text(b)})"
        )


def _steps_text(steps: tuple[ForgetStep, ...]) -> str:
    return "; ".join(f"{s.spec}@{s.seed}" for s in steps) or "none"
