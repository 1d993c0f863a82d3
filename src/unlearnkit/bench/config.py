"""The experiment file: what a benchmark runs, validated by pydantic.

An experiment is a YAML or TOML file (or a preset shipped with the package, see
:mod:`unlearnkit.bench.presets`) with these sections; everything but ``name``, ``datasets``,
``models`` and ``methods`` has a default (Deep Unlearn's protocol, Cadet et al. 2024):

* ``datasets``: registry names with loader ``params``, split fractions and split seed; an
  optional ``training`` block overrides the experiment's recipe for that dataset.
* ``models``: registry names with ``options``.
* ``training``: the recipe of Original and Retrain (:mod:`unlearnkit.training`, default SGD).
* ``forget``: the forget spec (``"random:0.1"``, a dict: :mod:`unlearnkit.data.forget`) drawn
  from the training split with ``forget_seed``; ``vary_forget`` draws one per model seed.
* ``methods``: method names (or ``{name, config, search}`` entries); ``"all"`` means every
  registered method. Original and Retrain are always evaluated: they are the reference rows.
* ``seeds``: the model-initialisation seeds (a list, or a count ``n`` meaning ``0..n-1``).
* ``search``: the hyper-parameter search (Optuna, NSGA-III, ``trials`` per study, one study per
  search seed; ``trials: 0`` uses each method's defaults).
* ``metrics``: metric or group names of the suite (:data:`unlearnkit.metrics.METRICS`).
* ``ulira``: optional U-LiRA stage (shadow splits per dataset x model).
* ``executor``: ``local`` (process pool) or ``ray``; workers; torch threads per worker.

Bad files raise :class:`~unlearnkit.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from unlearnkit.bench.oracle_config import (  # issue 13: oracle pools, reference vetting
    OracleConfig,
    ReferenceConfig,
    check_oracles,
    check_references,
)
from unlearnkit.bench.trials import check_method_config, field_errors
from unlearnkit.data import DATASETS
from unlearnkit.data.forget import make_forget_spec
from unlearnkit.data.plan import DataPlan
from unlearnkit.errors import ConfigError
from unlearnkit.methods import METHODS
from unlearnkit.metrics import resolve
from unlearnkit.models.registry import MODELS
from unlearnkit.training import make_recipe

#: Rows that every report carries; they are not unlearning methods the harness runs.
REFERENCE_ROWS: tuple[str, ...] = ("original", "retrain")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetConfig(_Strict):
    """One dataset: registry name, loader parameters, split, optional recipe overrides."""

    name: str
    label: str | None = Field(None, description="name in tables; default: name")
    params: dict[str, Any] = Field(default_factory=dict)
    val_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    split_seed: int = 123
    stratify: bool = True
    use_official: bool = True
    training: dict[str, Any] = Field(
        default_factory=dict, description="overrides of the experiment's training recipe"
    )

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in DATASETS:
            raise ValueError(f"unknown dataset {v!r}; known: {', '.join(DATASETS.names())}")
        return v

    @model_validator(mode="after")
    def _params(self) -> DatasetConfig:
        # checked as written: ``$VAR`` and ``~`` are expanded where the data is loaded
        try:
            DATASETS.get(self.name).params.model_validate(self.params)
        except ValidationError as err:
            raise ValueError(
                f"bad parameters for dataset {self.name!r}: params.{field_errors(err)}"
            ) from None
        return self

    # --- issue 13: a forget set per dataset entry (memorise preset) -------------------
    forget: str | dict[str, Any] | None = Field(
        None, description="this entry's forget spec, instead of the experiment's"
    )

    @field_validator("forget")
    @classmethod
    def _forget_spec(cls, v: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if v is not None:
            make_forget_spec(v)  # raises ConfigError on a bad spec
        return v

    @model_serializer(mode="wrap")
    def _drop_unset_forget(self, handler: Any) -> dict[str, Any]:
        # without an override the dump (and so every content key) is as before the field
        out = handler(self)
        if isinstance(out, dict) and out.get("forget", 0) is None:
            out.pop("forget")
        return out

    # --- end issue 13 ---------------------------------------------------------------

    @property
    def tag(self) -> str:
        return self.label or self.name

    def plan(self, forget: str | dict[str, Any] | None = None, forget_seed: int = 0) -> DataPlan:
        """The :class:`~unlearnkit.data.plan.DataPlan` of this dataset's split, with ``forget``
        (this entry's own ``forget`` when set) drawn from its training split with
        ``forget_seed`` (fit on ``train``: the Original)."""
        return DataPlan(
            self.name,
            self.params,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            split_seed=self.split_seed,
            forget=self.forget if self.forget is not None else forget,
            stratify=self.stratify,
            use_official=self.use_official,
            forget_seed=forget_seed,
        )


class ModelConfig(_Strict):
    """One architecture: registry name and options."""

    name: str
    label: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in MODELS:
            raise ValueError(f"unknown model {v!r}; known: {', '.join(MODELS.names())}")
        return v

    @property
    def tag(self) -> str:
        return self.label or self.name


class MethodEntry(_Strict):
    """A method: fixed ``config`` overrides, whether its hyper-parameters are searched, and
    the row it makes in the tables (``label``, default: the method's name; give one to run a
    method twice, e.g. SSSE searched and SSSE with its retrain-free ``eps="auto"``)."""

    name: str
    label: str | None = Field(
        None, pattern=r"^[a-z0-9][a-z0-9_.+-]*$", max_length=40, description="row name"
    )
    config: dict[str, Any] = Field(default_factory=dict)
    search: bool = True

    @property
    def row(self) -> str:
        """The row's name in stores, tables and ``ulira.methods``: ``label`` or ``name``."""
        return self.label or self.name


class SearchConfig(_Strict):
    """Deep Unlearn's search (docs/methods.md, docs/harness.md): one study per (setting,
    method, search seed), ``trials`` finished trials each, NSGA-III with ``population_size``
    per generation (``trials / population_size`` generations), the sampler seeded from the
    study's key, hopeless trials pruned (``prune``, :mod:`unlearnkit.bench.pruning`).

    Objectives (all minimised, on validation data against the retrain reference):
    ``(⅓|RA_U − RA_R|, ⅓|FA_U − FA_R|, ⅓|VA_U − VA_R|, 1 − Indisc(ValMIA_U))``. Selection: the
    minimum L2 norm of the objective vector over each study's COMPLETE trials, then the best
    over the studies; its parameters serve every seed.
    """

    trials: int = Field(100, ge=0, description="finished trials per study; 0: defaults only")
    seeds: list[int] | None = Field(None, description="search seeds; default: first 3 seeds")
    sampler: Literal["nsga3", "random"] = "nsga3"
    population_size: int = Field(50, ge=2, description="NSGA-III population")
    prune: bool = Field(True, description="prune non-finite, collapsed, dominated trials")
    storage: str | None = Field(None, description="Optuna storage URL; default sqlite in DIR")
    max_epochs: int | None = Field(
        None, ge=1, description="E* of the epoch distributions; default ceil(0.2 * epochs)"
    )
    max_failed: int = Field(10, ge=0, description="failed trials tolerated per study")


class ULiraConfig(_Strict):
    """U-LiRA audits (Hayes et al. 2024) per dataset x model, run by
    :class:`unlearnkit.evaluation.audit.Auditor` with each method's chosen configuration.

    ``scheme="hayes"``: ``shadows`` random halves of the training split, a fixed target set
    (``target_fraction``) forgotten where it falls in a half, per-example Gaussians on LiRA's
    φ fitted on the other splits and scored on held-out ones; ``"deepunlearn"``: Deep
    Unlearn's released variant. Shadow pools are cached by content under ``DIR/ulira``.
    Original and Retrain are always audited.
    """

    methods: list[str] = Field(default_factory=list, description="beside original, retrain")
    scheme: Literal["hayes", "deepunlearn"] = "hayes"
    shadows: int = Field(16, ge=2)
    seed: int = 0
    target_fraction: float = Field(0.1, gt=0.0, le=1.0)
    forget_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="deepunlearn scheme")
    workers: int = Field(1, ge=1, description="processes inside the U-LiRA task")


class ExecutorConfig(_Strict):
    kind: Literal["local", "ray"] = "local"
    workers: int | None = Field(None, ge=0, description="0: run inline; default: CPU count")
    threads: int = Field(1, ge=1, description="torch threads per worker (1: deterministic)")
    ray_address: str | None = None


class Experiment(_Strict):
    """A whole benchmark (see the module docstring)."""

    name: str
    description: str = ""
    datasets: list[DatasetConfig] = Field(min_length=1)
    models: list[ModelConfig] = Field(min_length=1)
    training: dict[str, Any] = Field(default_factory=lambda: {"name": "sgd"})
    forget: str | dict[str, Any] = "random:0.1"
    forget_seed: int = 123
    vary_forget: bool = False
    methods: list[MethodEntry] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: list(range(10)), min_length=1)
    train_seed: int = 123
    unlearn_seed: int = 123
    search: SearchConfig = Field(default_factory=SearchConfig)
    metrics: list[str] = Field(default_factory=lambda: ["accuracy", "mia"])
    ulira: ULiraConfig | None = None
    device: str = Field("cpu", description="'cpu', 'cuda', 'cuda:N' or 'auto'")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    # -- oracle pools and reference vetting (issue 13; see bench/oracle_config.py) --
    oracles: OracleConfig = Field(default_factory=lambda: OracleConfig())
    references: ReferenceConfig = Field(default_factory=lambda: ReferenceConfig())

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_count(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            if v < 1:
                raise ValueError("seeds must be a positive count or a list of seeds")
            return list(range(v))
        return v

    @field_validator("methods", mode="before")
    @classmethod
    def _method_entries(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        out: list[Any] = []
        for item in v:
            if item == "all":
                out.extend({"name": n} for n in METHODS.names())
            elif isinstance(item, str):
                out.append({"name": item})
            else:
                out.append(item)
        return out

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: list[MethodEntry]) -> list[MethodEntry]:
        seen: dict[str, MethodEntry] = {}
        for entry in v:
            if entry.name not in METHODS:
                raise ValueError(
                    f"unknown method {entry.name!r}; known: {', '.join(METHODS.names())}, all"
                )
            if entry.row in seen or (entry.label and entry.label in REFERENCE_ROWS):
                what = "listed twice" if entry.row in seen else "a reference row"
                raise ValueError(
                    f"method row {entry.row!r} is {what}; give the entry another 'label'"
                )
            seen[entry.row] = entry
        return v

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, v: list[str]) -> list[str]:
        try:
            resolve(v)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return sorted(set(v), key=v.index)

    @field_validator("training")
    @classmethod
    def _recipe(cls, v: dict[str, Any]) -> dict[str, Any]:
        return make_recipe({"name": "sgd", **v}).model_dump(mode="json")

    @field_validator("forget")
    @classmethod
    def _forget(cls, v: str | dict[str, Any]) -> str | dict[str, Any]:
        make_forget_spec(v)  # raises ConfigError on a bad spec
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        for what, tags in (
            ("dataset", [d.tag for d in self.datasets]),
            ("model", [m.tag for m in self.models]),
        ):
            dup = sorted({t for t in tags if tags.count(t) > 1})
            if dup:
                raise ValueError(f"{what} labels must be unique; give 'label's to {dup}")
        for d in self.datasets:
            if d.val_fraction + d.test_fraction >= 1.0:
                raise ValueError(f"dataset {d.tag}: val_fraction + test_fraction must be < 1")
            self.recipe_for(d)  # validates the per-dataset overrides
        e_stars = [self.max_epochs_for(d) for d in self.datasets]
        for i, entry in enumerate(self.methods):
            searched = self.search.trials > 0 and entry.search
            try:
                check_method_config(entry.name, entry.config, e_stars if searched else [])
            except ValueError as err:
                raise ValueError(f"methods.{i}: {err}") from None
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must be distinct")
        if self.ulira is not None:
            unknown = [m for m in self.ulira.methods if m not in self.method_names()]
            if unknown:
                raise ValueError(f"ulira.methods {unknown} are not among the experiment's methods")
        check_oracles(self.oracles, self.model_seeds(), self.vary_forget)  # issue 13
        check_references(self.references, self.training, self.model_seeds())  # issue 13
        return self

    # ----------------------------------------------------------------- derived settings

    def method_names(self) -> list[str]:
        """Rows of the unlearning methods to run (their labels, default their names; the
        reference rows excluded), in file order."""
        return [m.row for m in self.methods if m.name not in REFERENCE_ROWS]

    def method(self, row: str) -> MethodEntry:
        """The entry of row ``row`` (a label or a method name)."""
        for m in self.methods:
            if m.row == row:
                return m
        return MethodEntry(name=row)

    def recipe_for(self, dataset: DatasetConfig) -> dict[str, Any]:
        """The training recipe (a dict) for ``dataset``: experiment recipe + overrides."""

        return make_recipe({**self.training, **dataset.training}).model_dump(mode="json")

    def max_epochs_for(self, dataset: DatasetConfig) -> int:
        """E* = ceil(0.2 · training epochs) (docs/methods.md), unless set in ``search``."""
        if self.search.max_epochs is not None:
            return self.search.max_epochs
        return max(1, math.ceil(0.2 * int(self.recipe_for(dataset).get("epochs", 10))))

    def search_seeds(self) -> list[int]:
        return list(self.search.seeds) if self.search.seeds is not None else self.seeds[:3]

    def train_seed_for(self, seed: int) -> int:
        """The data-order seed of model seed ``seed``'s Original and Retrain: ``train_seed +
        seed``, so every seed trains with its own seed (issue 13 block)."""
        return self.train_seed + seed

    def forget_seed_for(self, seed: int) -> int:
        return self.forget_seed + seed if self.vary_forget else self.forget_seed

    def model_seeds(self) -> list[int]:
        """Seeds needing an Original and a Retrain: evaluation seeds, then search seeds."""
        extra = [s for s in self.search_seeds() if s not in self.seeds]
        if self.search.trials == 0:
            extra = []
        return list(self.seeds) + extra
