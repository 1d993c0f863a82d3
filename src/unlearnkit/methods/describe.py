"""The method table: one row per registered unlearning method, and name look-up.

A row (:class:`MethodRow`) says what ``unlearnkit methods list`` shows: the registry key, the
display name and abbreviation, the source paper, the data the method reads, what it requires
of the model and data, its default configuration and the hyper-parameters of its search space.
Everything is read from the method classes themselves (``name``, ``abbreviation``,
``family``, ``paper``, ``uses``, ``requires``, ``Config``, ``search_space``), so the table
cannot drift from the code.

Families (``Unlearner.family``) follow Deep Unlearn's grouping (arXiv 2410.01276): baselines,
literature methods, the NeurIPS 2023 challenge ("Kaggle") solutions, plus SSSE and the two
reference rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from unlearnkit.errors import ConfigError
from unlearnkit.methods.base import METHODS, MulticlassUnlearner, Unlearner
from unlearnkit.methods.requirements import REQUIREMENTS

FAMILY_ORDER: tuple[str, ...] = (
    "reference",
    "closed form",
    "baseline",
    "literature",
    "kaggle",
    "other",
)


DATA_REQUIREMENT_TEXT: dict[str, str] = {
    "multiclass": "multiclass labels",
    "train_fn": "a training function and model factory, or a model built by build_model",
}
"""Plain-English text of requirements on the data or the caller (the model requirements carry
their own text in :data:`~unlearnkit.methods.requirements.REQUIREMENTS`)."""


def requirement_text(name: str) -> str:
    """The plain-English text of a requirement name (the name itself when unknown)."""
    if name in REQUIREMENTS:
        return REQUIREMENTS.get(name).text
    return DATA_REQUIREMENT_TEXT.get(name, name)


@dataclass(frozen=True)
class MethodRow:
    """One row of the method table."""

    key: str
    name: str
    abbreviation: str
    family: str
    paper: str
    uses: tuple[str, ...]
    requires: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict)
    search_space: tuple[str, ...] = ()

    @property
    def uses_text(self) -> str:
        """E.g. ``"retain + forget"``; ``"-"`` when the method reads no data."""
        return " + ".join(self.uses) or "-"

    @property
    def requires_text(self) -> str:
        """The requirements in words, ``"-"`` when there are none."""
        return "; ".join(requirement_text(r) for r in self.requires) or "-"

    @property
    def defaults_text(self) -> str:
        """``key=value`` pairs, nested configs as dotted keys; ``"-"`` when there are none."""
        return ", ".join(f"{k}={_short(v)}" for k, v in flatten(self.defaults).items()) or "-"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists), with the text forms added."""
        out = asdict(self)
        out["uses"], out["requires"] = list(self.uses), list(self.requires)
        out["search_space"] = list(self.search_space)
        out["requires_text"] = self.requires_text
        return out


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys: ``{"a": {"b": 1}} -> {"a.b": 1}`` (the search-space names)."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, name + "."))
        else:
            out[name] = v
    return out


def _short(value: Any) -> str:
    """Compact text of a default: floats in ``%g``, lists in brackets."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value)


def _requirements(cls: type[Unlearner]) -> tuple[str, ...]:
    """Declared ``requires`` plus ``multiclass`` for the zoo methods that check labels."""
    reqs = tuple(cls.requires)
    if issubclass(cls, MulticlassUnlearner) and "multiclass" not in reqs:
        reqs = ("multiclass", *reqs)
    return reqs


def _uses(cls: type[Unlearner]) -> tuple[str, ...]:
    """``uses`` with unlabelled splits marked (KDE reads val without its labels)."""
    unlabelled = set(getattr(cls, "unlabelled", ()))
    return tuple(f"{u} (unlabelled)" if u in unlabelled else u for u in cls.uses)


def describe_method(key: str, max_epochs: int = 10) -> MethodRow:
    """The table row of the registered method ``key`` (``max_epochs`` is E* of its space)."""
    cls = METHODS.get(key)
    return MethodRow(
        key=key,
        name=cls.name,
        abbreviation=cls.abbreviation,
        family=cls.family,
        paper=cls.paper,
        uses=_uses(cls),
        requires=_requirements(cls),
        defaults=cls.Config().model_dump(mode="json"),
        search_space=tuple(cls().search_space(max_epochs)),
    )


def method_table(max_epochs: int = 10) -> list[MethodRow]:
    """Every registered method (``import unlearnkit.methods`` first), by family, then
    abbreviation."""
    rows = [describe_method(k, max_epochs) for k in METHODS.names()]
    rank = {f: i for i, f in enumerate(FAMILY_ORDER)}
    return sorted(rows, key=lambda r: (rank.get(r.family, len(rank)), r.abbreviation.lower()))


def find_method(name: str) -> str:
    """The registry key of ``name``: a key (``"ngplus"``) or an abbreviation (``"NG+"``), any
    case. Unknown names raise :class:`ConfigError` listing the choices."""
    wanted = name.strip().lower()
    for key, cls in METHODS.items():
        if wanted in (key.lower(), cls.abbreviation.lower()):
            return key
    choices = ", ".join(f"{k} ({c.abbreviation})" for k, c in METHODS.items())
    raise ConfigError(f"unknown unlearning method {name!r}; known: {choices}")
