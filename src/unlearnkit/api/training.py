"""``train`` and ``unlearn``: nn.Module in, a result holding a new nn.Module out.

Neither verb modifies its input model, and both leave the global python / numpy / torch RNG
states as they found them. A training step is a recipe of :mod:`unlearnkit.training`
(``"sgd"``, ``"lbfgs"``, a dict or a Recipe) or the user's own
:data:`~unlearnkit.training.TrainFn` ``train_fn(model_factory, dataset, seed) -> nn.Module``
(``dataset`` is a map-style torch Dataset of ``(x, y)``: wrap it in a ``DataLoader``).
Methods come from the one registry (:data:`unlearnkit.methods.METHODS`); Retrain uses the
user's ``train_fn`` and ``model_factory`` when given.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unlearnkit.api.inputs import as_split, resolve_device
from unlearnkit.api.models import ModelFactory, model_factory
from unlearnkit.api.saved import Saved, derived_provenance
from unlearnkit.data.base import DatasetLike
from unlearnkit.data.plan import Split
from unlearnkit.errors import ConfigError
from unlearnkit.io import ids_hash
from unlearnkit.manifest import Provenance
from unlearnkit.methods import METHODS, UnlearnData
from unlearnkit.methods.describe import find_method
from unlearnkit.models import build_model
from unlearnkit.seeding import preserved_rng_state
from unlearnkit.training import Recipe, TrainFn, evaluate_accuracy, make_recipe, run_train_fn
from unlearnkit.training import train as run_recipe

#: the Original's recorded SGD recipe -> Retrain's configuration
RECIPE_TO_RETRAIN = ("epochs", "batch_size", "lr", "momentum", "weight_decay")


def fitted_split(split: Split, on: str) -> Split:
    """The split whose plan describes a model fit to ``split.train`` (``on="train"``) or to
    its retain set (``on="retain"``: a retrain, or a model the forget set was removed from)."""
    if on == "train":
        return split
    plan = split.unlearned_plan
    if plan is not None:
        return plan.materialise()
    return Split.from_datasets(split.retain, val=split.val, test=split.test)


def accuracies(model: nn.Module, parts: dict[str, DatasetLike | None]) -> dict[str, float]:
    """Accuracy of ``model`` on every non-empty dataset of ``parts``."""
    return {k: evaluate_accuracy(model, d) for k, d in parts.items() if d is not None and len(d)}


@dataclass
class Trained:
    """A trained model, the split it came from, its seconds, accuracies and record."""

    model: nn.Module
    split: Split
    seconds: float
    metrics: dict[str, float]
    record: dict[str, Any] = field(default_factory=dict)
    on: str = "train"

    def save_args(self) -> tuple[Split, Provenance, dict[str, Any], Path | None]:
        """What :func:`~unlearnkit.api.save` records: data, provenance, the training record."""
        prov = Provenance.train(
            seed=self.record.get("seed"),
            method=self.record.get("recipe", {}).get("name") or self.record.get("train_fn"),
            config=self.record.get("recipe"),
        )
        return fitted_split(self.split, self.on), prov, self.record, None


@dataclass
class Unlearned:
    """An unlearned model, its split (forget set included), its record and accuracies."""

    model: nn.Module
    split: Split
    seconds: float
    record: dict[str, Any]
    accuracy: dict[str, float]
    source: nn.Module | Saved

    def save_args(self) -> tuple[Split, Provenance, dict[str, Any], Path | None]:
        prov = derived_provenance(
            "unlearn",
            self.source,
            method=self.record["method"],
            config=self.record["config"],
            seed=self.record["seed"],
        )
        extra = {"unlearning": self.record, "accuracy": self.accuracy, "seconds": self.seconds}
        parent = self.source.path if isinstance(self.source, Saved) else None
        return fitted_split(self.split, "retain"), prov, extra, parent


def fit(
    factory: ModelFactory,
    data: DatasetLike,
    recipe: Recipe | dict[str, Any] | str | TrainFn,
    seed: int,
    device: torch.device,
) -> tuple[nn.Module, float, dict[str, Any]]:
    """Train a model from ``factory`` on ``data``: (model in eval mode, seconds, record)."""
    if callable(recipe) and not isinstance(recipe, Recipe):
        t0 = time.perf_counter()
        model = run_train_fn(recipe, factory, data, seed)
        return model.eval(), time.perf_counter() - t0, {"train_fn": recipe.__name__}
    rec = make_recipe(recipe).model_copy(update={"device": str(device)})
    res = run_recipe(factory(), data, rec, seed=seed)
    info: dict[str, Any] = {"recipe": rec.model_dump(mode="json")}
    if res.grad_norm is not None:
        info["grad_norm"] = res.grad_norm
    if res.history:
        info["final_loss"] = float(res.history[-1].get("loss", float("nan")))
    return res.model.eval(), res.seconds, info


def train(
    model: str | nn.Module | ModelFactory,
    data: Split | Any,
    recipe: Recipe | dict[str, Any] | str | TrainFn = "sgd",
    seed: int = 0,
    *,
    device: str | torch.device = "cpu",
    on: str = "train",
    model_options: dict[str, Any] | None = None,
) -> Trained:
    """Train a model on a split's training data (``on="retain"``: a retrain without the forget set).

    ``model``: a registered name (built for the data's shape with initial-weight seed
    ``seed``), an initial nn.Module (copied, never modified) or a factory.
    """
    dev = resolve_device(device)
    split = as_split(data)
    if on not in ("train", "retain"):
        raise ConfigError(f"on must be 'train' or 'retain', got {on!r}")
    fit_on = split.train if on == "train" else split.retain
    if isinstance(model, str):
        name, opts, ds = model, dict(model_options or {}), split.train

        def factory() -> nn.Module:
            return build_model(name, ds.input_shape, ds.num_outputs, seed=seed, **opts)
    else:
        factory = model_factory(model)
    net, seconds, info = fit(factory, fit_on, recipe, seed, dev)
    metrics = accuracies(net, {"train": fit_on, "val": split.val, "test": split.test})
    record = {**info, "seed": seed, "seconds": seconds, "device": str(dev), "metrics": metrics}
    return Trained(net, split, seconds, metrics, record, on)


def retrain_defaults(manifest: dict[str, Any]) -> dict[str, Any]:
    """Retrain's config from an Original's recorded SGD recipe and training seed."""
    out: dict[str, Any] = {}
    recipe = manifest.get("recipe")
    if isinstance(recipe, dict) and recipe.get("name", "sgd") == "sgd":
        out.update({k: recipe[k] for k in RECIPE_TO_RETRAIN if k in recipe})
    seed = manifest.get("seed")
    if isinstance(seed, int):
        out["train_seed"] = seed
    return out


def unlearn(
    model: nn.Module | Saved,
    data: Split | Any = None,
    method: str = "ft",
    config: dict[str, Any] | None = None,
    seed: int = 123,
    *,
    forget_ids: Any = None,
    device: str | torch.device = "cpu",
    train_fn: TrainFn | None = None,
    model_factory: ModelFactory | None = None,
    head: str | None = None,
) -> Unlearned:
    """Unlearn the split's forget set from ``model`` with a registered method.

    ``data``: a :class:`~unlearnkit.data.plan.Split` whose ``train`` is what ``model`` was fit
    to and whose ``forget`` is to be removed (default: a saved model's split); or training
    data plus ``forget_ids``. ``method="retrain"`` with ``train_fn`` / ``model_factory``
    retrains any model with the user's own training. ``head`` names the classifier module.
    """
    key = find_method(method)
    cls = METHODS.get(key)
    unlearner = cls(train_fn=train_fn, model_factory=model_factory) if key == "retrain" else cls()
    user_cfg = dict(config or {})
    unlearner.make_config(user_cfg)  # malformed hyper-parameters fail before any work
    dev = resolve_device(device)
    net = model.model if isinstance(model, Saved) else model
    if data is None:
        if not isinstance(model, Saved):
            raise ConfigError("unlearn needs the data (a Split, or training data + forget_ids)")
        data = model.split
    split = as_split(data, forget_ids)
    if not len(split.forget):
        raise ConfigError("the forget set is empty: give forget ids or a split with a forget set")
    val = split.val if len(split.val) else None
    udata = UnlearnData(retain=split.retain, forget=split.forget, val=val)
    base = retrain_defaults(model.manifest) if key == "retrain" and isinstance(model, Saved) else {}
    cfg = unlearner.make_config({**base, **user_cfg})
    with preserved_rng_state():
        res = unlearner.unlearn(net, udata, cfg, seed=seed, device=dev, head=head)
    info = json.loads(json.dumps({k: v for k, v in res.info.items() if k != "config"}, default=str))
    record = {
        "method": key,
        "abbreviation": unlearner.abbreviation,
        "config": cfg.model_dump(mode="json"),
        "seed": seed,
        "seconds": res.seconds,
        "device": str(dev),
        "forget_ids_hash": ids_hash(udata.forget.ids),
        "n_forget": len(udata.forget),
        "n_retain": len(udata.retain),
        "info": info,
    }
    parts = {"retain": udata.retain, "forget": udata.forget, "val": split.val, "test": split.test}
    out = res.model.eval()
    return Unlearned(out, split, res.seconds, record, accuracies(out, parts), model)
