"""``train`` and ``unlearn``: nn.Module in, a result holding a new nn.Module out.

Neither verb modifies its input model, and both leave the global python / numpy / torch RNG
states as they found them (:func:`~.inputs.preserved_rng`). A training step is either a
recipe of :mod:`unlearnkit.training` (``"sgd"``, ``"lbfgs"``, a dict or a Recipe) or the
user's own function ``train_fn(model_factory, dataset, seed) -> nn.Module``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

import unlearnkit.methods.catalog  # noqa: F401  (registers every method)
from unlearnkit.api.inputs import Split, as_split, preserved_rng, resolve_device
from unlearnkit.api.models import ModelFactory, model_factory
from unlearnkit.api.saved import Saved, data_record
from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import ConfigError, UnsupportedError
from unlearnkit.io import ids_hash, model_fingerprint
from unlearnkit.methods import METHODS, UnlearnData
from unlearnkit.methods.describe import find_method
from unlearnkit.models import build_model
from unlearnkit.training import Recipe, evaluate_accuracy, make_recipe
from unlearnkit.training import train as run_recipe

#: the user's training: ``train_fn(model_factory, dataset, seed) -> model``; ``dataset`` is a
#: ``TensorDataset(x, y)`` (plain PyTorch: wrap it in a DataLoader)
TrainFn = Callable[[ModelFactory, Dataset, int], nn.Module]

#: the Original's recorded SGD recipe -> Retrain's configuration
RECIPE_TO_RETRAIN = ("epochs", "batch_size", "lr", "momentum", "weight_decay")


@dataclass
class Trained:
    """A trained model, the split it came from, its seconds, accuracies and manifest record."""

    model: nn.Module
    split: Split | None
    seconds: float
    metrics: dict[str, float]
    record: dict[str, Any] = field(default_factory=dict)
    on: str = "train"

    def manifest(self) -> dict[str, Any]:
        """Data plan (when the split has one) and the training record."""
        return {**data_record(self.split, self.on), **self.record}


@dataclass
class Unlearned:
    """An unlearned model, its split (forget set included) and the manifest record."""

    model: nn.Module
    split: Split
    seconds: float
    record: dict[str, Any]
    accuracy: dict[str, float]
    source: Saved | None = None

    def manifest(self) -> dict[str, Any]:
        """The source's data entries (or the split's plan), the unlearning record, accuracies."""
        data = self.source.data_record() if self.source is not None else data_record(self.split)
        return {**data, "unlearn": self.record, "accuracy": self.accuracy}


def accuracies(model: nn.Module, parts: dict[str, ArrayDataset | None]) -> dict[str, float]:
    """Accuracy of ``model`` on every non-empty dataset of ``parts``."""
    return {k: evaluate_accuracy(model, d) for k, d in parts.items() if d is not None and len(d)}


def fit(
    factory: ModelFactory,
    data: ArrayDataset,
    recipe: Recipe | dict[str, Any] | str | TrainFn,
    seed: int,
    device: torch.device,
) -> tuple[nn.Module, float, dict[str, Any]]:
    """Train a model from ``factory`` on ``data``: (model in eval mode, seconds, record).

    A user ``train_fn`` gets ``TensorDataset(data.x, data.y)`` and runs with the global RNG
    states restored afterwards."""
    if callable(recipe) and not isinstance(recipe, Recipe):
        t0 = time.perf_counter()
        with preserved_rng():
            model = recipe(factory, TensorDataset(data.x, data.y), seed)
        if not isinstance(model, nn.Module):
            raise ConfigError(f"train_fn must return an nn.Module, got {type(model).__name__}")
        return model.eval(), time.perf_counter() - t0, {"train_fn": getattr(recipe, "__name__", "")}
    rec = make_recipe(recipe).model_copy(update={"device": str(device)})
    with preserved_rng():
        res = run_recipe(factory(), data, rec, seed=seed)
    info = {"recipe": rec.model_dump(mode="json")}
    if res.grad_norm is not None:
        info["grad_norm"] = res.grad_norm
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
        name, opts = model, dict(model_options or {})
        ds = split.train

        def factory() -> nn.Module:
            return build_model(name, ds.input_shape, ds.num_outputs, seed=seed, **opts)
    else:
        factory = model_factory(model)
    net, seconds, info = fit(factory, fit_on, recipe, seed, dev)
    metrics = accuracies(net, {"train": fit_on, "val": split.val, "test": split.test})
    record = {
        **info,
        "seed": seed,
        "seconds": seconds,
        "device": str(dev),
        "role": "retrain" if on == "retain" else "original",
        "metrics": {f"{k}_accuracy": v for k, v in metrics.items()} | {"seconds": seconds},
    }
    return Trained(net, split, seconds, metrics, record, on)


def retrain_defaults(manifest: dict[str, Any]) -> dict[str, Any]:
    """Retrain's config from an Original's recorded SGD recipe and training seed."""
    out: dict[str, Any] = {}
    recipe = manifest.get("recipe")
    if isinstance(recipe, dict) and recipe.get("name", "sgd") == "sgd":
        out.update({k: recipe[k] for k in RECIPE_TO_RETRAIN if k in recipe})
    seed = manifest.get("train_seed", manifest.get("seed"))
    if isinstance(seed, int):
        out["train_seed"] = seed
    return out


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def unlearn(
    model: nn.Module | Saved,
    data: Split | Any,
    method: str = "ft",
    config: dict[str, Any] | None = None,
    seed: int = 123,
    *,
    forget_ids: Any = None,
    device: str | torch.device = "cpu",
    train_fn: TrainFn | None = None,
    model_factory: ModelFactory | None = None,
) -> Unlearned:
    """Unlearn the split's forget set from ``model`` with a registered method.

    ``data``: a :class:`Split` with a forget set (or training data plus ``forget_ids``).
    ``method="retrain"`` with ``train_fn`` and ``model_factory`` retrains the user's model
    with the user's own training (the built-in Retrain needs a registered model).
    """
    key = find_method(method)
    unlearner = METHODS.get(key)()
    user_cfg = dict(config or {})
    unlearner.make_config(user_cfg)  # malformed hyper-parameters fail before any work
    dev = resolve_device(device)
    source = model if isinstance(model, Saved) else None
    net = model.model if isinstance(model, Saved) else model
    split = as_split(data, forget_ids)
    udata = UnlearnData(retain=split.retain, forget=split.forget, val=split.val)
    if key == "retrain" and train_fn is not None:
        if model_factory is None:
            raise ConfigError("retraining with train_fn needs model_factory (the initial model)")
        out, seconds, info = fit(model_factory, udata.retain, train_fn, seed, dev)
        cfg_dump: dict[str, Any] = {}
    else:
        base = retrain_defaults(source.manifest) if key == "retrain" and source else {}
        cfg = unlearner.make_config({**base, **user_cfg})
        if key == "retrain" and getattr(net, "build_spec", None) is None:
            raise UnsupportedError(
                "Retrain rebuilds a registered model's initial weights; for your own model pass "
                "train_fn=(model_factory, dataset, seed) -> model and model_factory="
            )
        with preserved_rng():
            res = unlearner.unlearn(net, udata, cfg, seed=seed, device=dev)
        out, seconds, info = res.model.eval(), res.seconds, res.info
        cfg_dump = cfg.model_dump(mode="json")
    src = {"fingerprint": model_fingerprint(net)}
    if source is not None:
        src["path"] = str(source.path)
    record = {
        "method": key,
        "abbreviation": unlearner.abbreviation,
        "config": cfg_dump,
        "seed": seed,
        "seconds": seconds,
        "device": str(dev),
        "forget": split.forget_spec,
        "forget_seed": split.forget_seed,
        "forget_ids_hash": ids_hash(udata.forget.ids),
        "n_forget": len(udata.forget),
        "n_retain": len(udata.retain),
        "source": src,
        "info": _json_safe({k: v for k, v in info.items() if k != "config"}),
    }
    parts = {"retain": udata.retain, "forget": udata.forget, "val": split.val, "test": split.test}
    return Unlearned(out, split, seconds, record, accuracies(out, parts), source)
