"""``unlearnkit methods list`` and ``unlearnkit unlearn``.

``unlearn`` reads a model artifact (:mod:`unlearnkit.artifacts`) whose manifest names its data:

- ``"dataset"``: a registered dataset name, or ``{"name": ..., "params": {...}}``;
- ``"split"``: the keyword arguments of :func:`~unlearnkit.data.train_val_test_split`
  (``val_fraction``, ``test_fraction``, ``seed``, ``stratify``, ``use_official``; missing ones
  take that function's defaults, other keys are ignored). When the split also records
  ``"train_ids_hash"`` (:func:`~unlearnkit.io.ids_hash` of the train ids), the rebuilt split
  must match it.

The forget spec (``random:0.1``, ``class:3``, ``ids:@file``, ...) selects the forget set from
the **train** split; retain = train minus forget; the method gets retain, forget and val (never
test). The unlearned model is saved as a new artifact whose manifest repeats ``dataset`` and
``split`` (so it can be unlearned or evaluated again) and adds ``unlearn`` (method, config,
seed, seconds, device, forget spec and seed, forget-ids hash, counts, source fingerprint,
method info) and ``accuracy`` (per split).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from pydantic import BaseModel, ConfigDict, ValidationError
from rich.markup import escape
from rich.table import Table

from unlearnkit.cli.app import app, console, friendly_errors
from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import ConfigError, StateMismatchError

methods_app = typer.Typer(help="Unlearning methods.", no_args_is_help=True)
app.add_typer(methods_app, name="methods")


# ----------------------------------------------------------------------------- methods list


@methods_app.command("list")
@friendly_errors
def list_methods(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    max_epochs: Annotated[
        int, typer.Option(help="E* of the search spaces (ceil(0.2 * training epochs))", min=1)
    ] = 10,
) -> None:
    """Print every method: abbreviation, source paper, data used, requirements, defaults."""
    import unlearnkit.methods  # noqa: F401  (registers the methods)
    from unlearnkit.methods.describe import method_table

    rows = method_table(max_epochs)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in rows], indent=2, default=str))
        return
    table = Table(title=f"unlearnkit methods ({len(rows)})", show_lines=True)
    table.add_column("method", overflow="fold", min_width=14)
    for col in ("paper", "uses", "requires", "defaults"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            f"[bold]{escape(r.abbreviation)}[/] {escape(r.name)}\n[dim]{r.key} · {r.family}[/]",
            escape(r.paper),
            escape(r.uses_text),
            escape(r.requires_text),
            escape(r.defaults_text.replace(", ", "\n")),
        )
    console.print(table)


# ----------------------------------------------------------------------------- data of a model


class SplitRecord(BaseModel):
    """The ``split`` entry of a model manifest (train_val_test_split's arguments)."""

    model_config = ConfigDict(extra="ignore")

    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    stratify: bool = True
    use_official: bool = True
    train_ids_hash: str | None = None


@dataclass(frozen=True)
class ModelData:
    """The data a model artifact was trained on, rebuilt from its manifest."""

    dataset: ArrayDataset
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    dataset_record: Any
    split_record: dict[str, Any]


def data_from_manifest(manifest: dict[str, Any]) -> ModelData:
    """Load the dataset and rebuild the train/val/test split a manifest records.

    Raises :class:`StateMismatchError` when the manifest does not say which data the model
    was trained on, or when the rebuilt train split does not match ``train_ids_hash``.
    """
    from unlearnkit.data import load_dataset, train_val_test_split
    from unlearnkit.io import ids_hash

    if "data" in manifest:  # written by `unlearnkit train` / the demo (unlearnkit.workflow)
        from unlearnkit.data.plan import data_from_manifest as plan_data

        plan, mat = plan_data(manifest)
        return ModelData(mat.full, mat.train, mat.val, mat.test, plan.dataset, plan.to_dict())
    record = manifest.get("dataset")
    if isinstance(record, str):
        name, params = record, {}
    elif isinstance(record, dict) and isinstance(record.get("name"), str):
        name, params = record["name"], dict(record.get("params") or {})
    else:
        raise StateMismatchError(
            'the model manifest does not name its dataset (expected "dataset": NAME or '
            '{"name": NAME, "params": {...}}); save the model with `unlearnkit train` or '
            'artifacts.save_model(..., manifest={"dataset": ..., "split": {...}})'
        )
    split_raw = manifest.get("split")
    if not isinstance(split_raw, dict):
        raise StateMismatchError(
            'the model manifest has no "split" entry (train_val_test_split\'s arguments: '
            "val_fraction, test_fraction, seed, ...)"
        )
    try:
        split = SplitRecord(**split_raw)
    except ValidationError as e:
        raise StateMismatchError(f'malformed "split" entry in the model manifest: {e}') from None
    dataset = load_dataset(name, **params)
    splits = train_val_test_split(
        dataset,
        val_fraction=split.val_fraction,
        test_fraction=split.test_fraction,
        seed=split.seed,
        stratify=split.stratify,
        use_official=split.use_official,
    )
    if split.train_ids_hash is not None and ids_hash(splits.train.ids) != split.train_ids_hash:
        raise StateMismatchError(
            f"the train split rebuilt from dataset {name!r} does not match the one the model "
            "was trained on (train_ids_hash differs)"
        )
    return ModelData(dataset, splits.train, splits.val, splits.test, record, split_raw)


# ----------------------------------------------------------------------------- configs


def parse_config(text: str | None) -> dict[str, Any]:
    """``--config``: inline JSON (``'{"num_epochs": 2}'``) or the path of a JSON file.

    Dotted keys (the search-space names, ``"retain_optimizer.learning_rate"``) are nested.
    Anything but a JSON object raises :class:`ConfigError`.
    """
    from unlearnkit.methods.toolkit.search_space import nest_params

    if text is None or not text.strip():
        return {}
    body, where = text, "--config"
    path = Path(text)
    if not text.lstrip().startswith(("{", "[")):
        if not path.is_file():
            raise ConfigError(
                f"--config {text!r} is neither inline JSON (starting with '{{') nor a file"
            )
        try:
            body, where = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read config file {path}: {e}") from None
    try:
        value = json.loads(body)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a JSON object of hyper-parameters, got {value!r}")
    return nest_params(value)


RECIPE_TO_RETRAIN = {
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "momentum": "momentum",
    "weight_decay": "weight_decay",
}


def retrain_defaults(manifest: dict[str, Any]) -> dict[str, Any]:
    """Retrain's config from the Original's recorded SGD recipe (``manifest["recipe"]``) and
    training seed (``manifest["train_seed"]`` or ``manifest["seed"]``), so that ``--method
    retrain`` re-runs the Original's recipe by default."""
    out: dict[str, Any] = {}
    recipe = manifest.get("recipe")
    if isinstance(recipe, dict) and recipe.get("name", "sgd") == "sgd":
        out.update({dst: recipe[src] for src, dst in RECIPE_TO_RETRAIN.items() if src in recipe})
    seed = manifest.get("train_seed", manifest.get("seed"))
    if isinstance(seed, int):
        out["train_seed"] = seed
    return out


# ----------------------------------------------------------------------------- unlearn


def _json_safe(value: Any) -> Any:
    """A JSON round trip (unknown objects as strings)."""
    return json.loads(json.dumps(value, default=str))


def split_accuracies(model: torch.nn.Module, parts: dict[str, ArrayDataset]) -> dict[str, float]:
    """Accuracy of ``model`` on every non-empty split."""
    from unlearnkit.training import evaluate_accuracy

    return {k: evaluate_accuracy(model, ds) for k, ds in parts.items() if len(ds)}


@app.command("unlearn")
@friendly_errors
def unlearn(
    method: Annotated[str, typer.Option(help="method key or abbreviation (`methods list`)")],
    model: Annotated[Path, typer.Option(help="model artifact (dir, prefix or manifest path)")],
    forget: Annotated[str, typer.Option(help="forget spec: random:0.1, class:3, ids:@f.txt, ...")],
    out: Annotated[Path, typer.Option(help="where to write the unlearned model artifact")],
    config: Annotated[
        str | None, typer.Option(help="hyper-parameters: inline JSON or a JSON file")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the unlearning run")] = 123,
    forget_seed: Annotated[int, typer.Option(help="seed of random forget selectors")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:0 ... or auto")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="replace an existing --out artifact")] = False,
) -> None:
    """Unlearn a forget set from a saved model with one method; save and report accuracies."""
    import unlearnkit.methods  # noqa: F401  (registers the methods)
    from unlearnkit.artifacts import artifact_paths, load_model, save_model
    from unlearnkit.data import parse_forget_spec
    from unlearnkit.io import ids_hash, model_fingerprint
    from unlearnkit.methods import METHODS, UnlearnData
    from unlearnkit.methods.describe import find_method
    from unlearnkit.training import resolve_device

    key = find_method(method)
    unlearner = METHODS.get(key)()
    user_cfg = parse_config(config)
    unlearner.make_config(user_cfg)  # malformed hyper-parameters fail before any loading
    spec = parse_forget_spec(forget)
    src_weights, src_manifest = artifact_paths(model)
    out_weights, out_manifest = artifact_paths(out)
    if {out_weights.resolve(), out_manifest.resolve()} & {
        src_weights.resolve(),
        src_manifest.resolve(),
    }:
        raise ConfigError("--out names the input model; write the unlearned model elsewhere")
    if not overwrite and (out_weights.exists() or out_manifest.exists()):
        raise ConfigError(f"{out_manifest} already exists; pass --overwrite to replace it")
    dev = resolve_device(None if device == "auto" else device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine")

    net, manifest = load_model(model)
    base_cfg = retrain_defaults(manifest) if key == "retrain" else {}
    cfg = unlearner.make_config({**base_cfg, **user_cfg})  # ConfigError before any work
    data = data_from_manifest(manifest)
    split = spec.select(data.train, seed=forget_seed)
    udata = UnlearnData(
        retain=split.retain(data.train), forget=split.forget(data.train), val=data.val
    )
    with console.status(f"unlearning {len(udata.forget)} samples with {unlearner.abbreviation}"):
        result = unlearner.unlearn(net, udata, cfg, seed=seed, device=dev)
    parts = {"retain": udata.retain, "forget": udata.forget, "val": data.val, "test": data.test}
    acc = split_accuracies(result.model, parts)
    record = {
        "method": key,
        "abbreviation": unlearner.abbreviation,
        "config": cfg.model_dump(mode="json"),
        "seed": seed,
        "seconds": result.seconds,
        "device": str(dev),
        "forget": spec.to_text(),
        "forget_seed": forget_seed,
        "forget_ids_hash": ids_hash(split.forget_ids),
        "n_forget": len(udata.forget),
        "n_retain": len(udata.retain),
        "source": {"path": str(src_manifest), "fingerprint": model_fingerprint(net)},
        "info": _json_safe({k: v for k, v in result.info.items() if k != "config"}),
    }
    written = save_model(
        out,
        result.model.cpu(),
        manifest={
            "dataset": data.dataset_record,
            "split": data.split_record,
            "unlearn": record,
            "accuracy": acc,
        },
    )
    table = Table(
        title=f"{unlearner.abbreviation} unlearned {len(udata.forget)} samples "
        f"in {result.seconds:.2f} s"
    )
    table.add_column("split")
    table.add_column("samples", justify="right")
    table.add_column("accuracy", justify="right")
    for name, value in acc.items():
        table.add_row(name, str(len(parts[name])), f"{value:.4f}")
    console.print(table)
    console.print(f"saved {written}")
