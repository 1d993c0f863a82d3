"""The model manifest's format: :class:`Provenance`, and upgrades of older manifests.

:mod:`unlearnkit.artifacts` writes and reads manifests; this module says what their ``data``
and ``provenance`` entries hold and turns what older unlearnkit versions wrote into the current
form (:func:`upgrade_manifest`, applied on reading and to the keys a caller passes on saving):

=========================================  =====================================================
older content                              becomes
=========================================  =====================================================
``"format": "unlearnkit.model/1"``         ``"format": "unlearnkit.model"``, ``format_version`` 2
``data`` of ``unlearnkit.workflow``        ``data.plan`` (:meth:`DataPlan.from_dict` reads the
(``plan`` + ``train_ids_sha256``)          old plan; a forget spec meant fit on retain),
                                           ``fit_ids_hash`` (that hash was of the fit ids)
``dataset`` (name or ``{name, params}``)   ``data.plan`` (split seed from ``seed``), plus the
+ ``split`` (split arguments or a plan)    forget step ``unlearn.forget``/``forget_seed`` when
+ ``unlearn`` record                       an ``unlearn`` record exists; ``train_ids_hash``,
                                           ``forget_ids_hash``
``unlearn`` record                         provenance ``unlearn`` (method, config, seed,
                                           parent = ``unlearn.source.fingerprint``)
``role: "ssse"`` / ``ssse``                provenance ``erase`` (``eps``)
``role`` original/retrain or ``recipe``    provenance ``train`` (recipe name, recipe, seed)
=========================================  =====================================================

Nothing else is changed; keys the upgrade does not know are kept as they are.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from unlearnkit.data.plan import DataPlan
from unlearnkit.errors import ConfigError, StateMismatchError

FORMAT = "unlearnkit.model"
FORMAT_VERSION = 2
LEGACY_FORMAT = "unlearnkit.model/1"


class Provenance(BaseModel):
    """How a saved model was made.

    ``kind``: ``train`` (from initial weights), ``unlearn`` (a method applied to ``parent``) or
    ``erase`` (an SSSE step of size ``eps`` applied to ``parent``). ``parent`` is the parent's
    :func:`~unlearnkit.io.model_fingerprint`; ``ancestors`` lists the fingerprints of every
    model this one descends from, oldest first, ending with ``parent``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["train", "unlearn", "erase"]
    parent: str | None = None
    ancestors: tuple[str, ...] = ()
    method: str | None = None
    config: dict[str, Any] | None = None
    seed: int | None = None
    eps: float | None = None
    time: str = Field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @classmethod
    def train(
        cls,
        seed: int | None = None,
        method: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> Provenance:
        """A model trained from its initial weights (``method``: the recipe's name)."""
        return cls(kind="train", seed=seed, method=method, config=config)

    @classmethod
    def derived(
        cls,
        kind: Literal["unlearn", "erase"],
        parent: Mapping[str, Any],
        *,
        method: str | None = None,
        config: dict[str, Any] | None = None,
        seed: int | None = None,
        eps: float | None = None,
    ) -> Provenance:
        """A model made from the model whose (read) manifest is ``parent``."""
        weights = parent.get("weights")
        fp = weights.get("fingerprint") if isinstance(weights, Mapping) else None
        if not isinstance(fp, str):
            raise ConfigError("the parent manifest records no weights fingerprint")
        return cls(
            kind=kind,
            parent=fp,
            ancestors=(*ancestors_of(parent), fp),
            method=method,
            config=config,
            seed=seed,
            eps=eps,
        )

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def ancestors_of(manifest: Mapping[str, Any]) -> tuple[str, ...]:
    """Fingerprints of the models a manifest's model descends from (empty when unknown)."""
    prov = manifest.get("provenance")
    if not isinstance(prov, Mapping):
        return ()
    chain = tuple(str(a) for a in prov.get("ancestors") or ())
    parent = prov.get("parent")
    if isinstance(parent, str) and parent not in chain:
        chain = (*chain, parent)
    return chain


# --------------------------------------------------------------------------- upgrades


def _legacy_split_plan(dataset: Any, split: Any) -> DataPlan | None:
    """The plan of ``unlearnkit unlearn``'s ``dataset`` + ``split`` entries (None if absent)."""
    if isinstance(dataset, str):
        name, params = dataset, {}
    elif isinstance(dataset, Mapping) and isinstance(dataset.get("name"), str):
        name, params = dataset["name"], dict(dataset.get("params") or {})
    else:
        return None
    if not isinstance(split, Mapping):
        return None
    if "split_seed" in split:  # a DataPlan's dict written as "split"
        return DataPlan.from_dict({**split, "dataset": name, "params": params})
    return DataPlan(
        name,
        params,
        val_fraction=split.get("val_fraction", 0.1),
        test_fraction=split.get("test_fraction", 0.2),
        split_seed=split.get("seed", 0),
        stratify=split.get("stratify", True),
        use_official=split.get("use_official", True),
    )


def _upgrade_data(manifest: dict[str, Any]) -> None:
    block = manifest.get("data")
    record = manifest.get("unlearn") if isinstance(manifest.get("unlearn"), Mapping) else {}
    if isinstance(block, Mapping) and "train_ids_sha256" in block:  # unlearnkit.workflow
        old = {"plan": DataPlan.from_dict(block["plan"]).to_dict()}
        old["fit_ids_hash"] = block["train_ids_sha256"]
        if "n_train" in block:
            old["n_fit"] = block["n_train"]
        manifest["data"] = old
    elif isinstance(block, Mapping):
        plan = block.get("plan")
        current = dict(block)
        current["plan"] = DataPlan.from_dict(plan).to_dict() if plan is not None else None
        manifest["data"] = current
    elif block is not None:
        raise StateMismatchError(f"the manifest's data entry is not a mapping: {block!r}")
    elif "dataset" in manifest or "split" in manifest:  # unlearnkit unlearn (cli/methods)
        split = manifest.pop("split", None)
        plan = _legacy_split_plan(manifest.pop("dataset", None), split)
        if plan is None:
            manifest["data"] = None
            return
        new: dict[str, Any] = {}
        if isinstance(record.get("forget"), str):
            plan = plan.forgetting(record["forget"], int(record.get("forget_seed", 0)))
            if len(plan.removed) == 1 and record.get("forget_ids_hash"):
                new["forget_ids_hash"] = record["forget_ids_hash"]
        if isinstance(split, Mapping) and split.get("train_ids_hash"):
            new["train_ids_hash"] = split["train_ids_hash"]
        manifest["data"] = {"plan": plan.to_dict(), **new}
    else:
        manifest["data"] = None


def _legacy_provenance(manifest: Mapping[str, Any], created: str | None) -> dict[str, Any] | None:
    stamp = {"time": created} if created else {}
    record = manifest.get("unlearn")
    if isinstance(record, Mapping) and isinstance(record.get("method"), str):
        source = record.get("source")
        parent = source.get("fingerprint") if isinstance(source, Mapping) else None
        config = record.get("config")
        seed = record.get("seed")
        return Provenance(
            kind="unlearn",
            parent=parent if isinstance(parent, str) else None,
            ancestors=(parent,) if isinstance(parent, str) else (),
            method=record["method"],
            config=dict(config) if isinstance(config, Mapping) else None,
            seed=seed if isinstance(seed, int) else None,
            **stamp,
        ).to_dict()
    role = manifest.get("role")
    ssse = manifest.get("ssse")
    if role == "ssse" or isinstance(ssse, Mapping):
        eps = ssse.get("eps") if isinstance(ssse, Mapping) else None
        return Provenance(
            kind="erase", method="ssse", eps=eps if isinstance(eps, int | float) else None, **stamp
        ).to_dict()
    recipe = manifest.get("recipe")
    if role in ("original", "retrain") or isinstance(recipe, Mapping):
        seed = manifest.get("train_seed", manifest.get("seed"))
        return Provenance(
            kind="train",
            method=recipe.get("name") if isinstance(recipe, Mapping) else None,
            config=dict(recipe) if isinstance(recipe, Mapping) else None,
            seed=seed if isinstance(seed, int) else None,
            **stamp,
        ).to_dict()
    return None


def upgrade_manifest(manifest: Any, created: str | None = None) -> dict[str, Any]:
    """``manifest`` in the current format (a new dict; see the module docstring).

    Raises :class:`StateMismatchError` for what is not a model manifest, a format newer than
    this unlearnkit reads, or a malformed data plan or provenance.
    """
    if not isinstance(manifest, Mapping):
        raise StateMismatchError(f"not an unlearnkit model manifest ({FORMAT})")
    out = dict(manifest)
    fmt, version = out.get("format"), out.get("format_version")
    if fmt == LEGACY_FORMAT:
        version = 1
    elif fmt is None and "weights" not in out:  # keys a caller passes to save_model
        version = FORMAT_VERSION
    elif fmt != FORMAT or not isinstance(version, int):
        raise StateMismatchError(f"not an unlearnkit model manifest ({FORMAT})")
    if version > FORMAT_VERSION:
        raise StateMismatchError(
            f"manifest format version {version} is newer than this unlearnkit reads "
            f"({FORMAT_VERSION}); upgrade unlearnkit"
        )
    try:
        _upgrade_data(out)
        if out.get("provenance") is None:
            out["provenance"] = _legacy_provenance(out, created or out.get("created"))
        else:
            out["provenance"] = Provenance.model_validate(out["provenance"]).to_dict()
    except ConfigError as err:
        raise StateMismatchError(f"malformed data plan: {err}") from None
    except ValidationError as err:
        raise StateMismatchError(f"malformed provenance: {err}") from None
    if fmt is not None:
        out["format"], out["format_version"] = FORMAT, FORMAT_VERSION
    return out
