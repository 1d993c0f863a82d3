"""``unlearnkit train``: train an original (or, with ``--forget``, a retrained) model."""

from __future__ import annotations

from pathlib import Path

import typer

from unlearnkit import api
from unlearnkit.cli.app import Device, Overwrite, app, console, friendly_errors
from unlearnkit.cli.options import SEED_MAX, check_forget_spec, parse_assignments


@app.command("train")
@friendly_errors
def train_cmd(
    dataset: str = typer.Option(..., help="dataset name (see `unlearnkit data list`)"),
    model: str = typer.Option(..., help="model name: linear, logreg, mlp, cnn, resnet20, resnet18"),
    out: Path = typer.Option(..., help="output prefix or folder for <name>.safetensors + .json"),
    recipe: str = typer.Option(
        "sgd", help="sgd (SGD + momentum + cosine) or lbfgs (convex models)"
    ),
    epochs: int = typer.Option(15, help="sgd: epochs"),
    batch_size: int = typer.Option(64, help="sgd: batch size"),
    lr: float = typer.Option(0.05, help="sgd: learning rate"),
    weight_decay: float = typer.Option(5e-4, help="sgd: weight decay"),
    l2: float = typer.Option(1e-3, help="lbfgs: ℓ2 coefficient"),
    seed: int = typer.Option(
        0, help="seed of the initial weights and of training", min=0, max=SEED_MAX
    ),
    split_seed: int = typer.Option(0, help="seed of the train/val/test split", min=0, max=SEED_MAX),
    val_fraction: float = typer.Option(0.1),
    test_fraction: float = typer.Option(0.2),
    forget: list[str] = typer.Option(
        [],
        help="train on retain only (a retrain): forget spec, e.g. random:0.1; repeat it for a "
        "model that had several forget sets removed, in order",
    ),
    forget_seed: int = typer.Option(0, min=0, max=SEED_MAX),
    dataset_param: list[str] = typer.Option([], help="dataset parameter KEY=VALUE (repeatable)"),
    model_option: list[str] = typer.Option([], help="model option KEY=VALUE (repeatable)"),
    device: Device = "cpu",
    overwrite: Overwrite = False,
) -> None:
    """Train a model on a dataset's training split and save it with its manifest."""
    api.check_output(out, overwrite=overwrite)
    api.resolve_device(device)
    split = api.plan(
        dataset,
        params=parse_assignments(dataset_param, "--dataset-param"),
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        split_seed=split_seed,
        forget=[check_forget_spec(f) for f in forget] or None,
        forget_seed=forget_seed,
    )
    rec = (
        {"name": "sgd", "epochs": epochs, "batch_size": batch_size, "lr": lr,
         "weight_decay": weight_decay}
        if recipe == "sgd"
        else {"name": recipe, "l2": l2}
    )  # fmt: skip
    on = "retain" if forget else "train"
    n = len(split.retain if forget else split.train)
    with console.status(f"training {model} on {dataset} ({n} samples)"):
        res = api.train(
            model,
            split,
            rec,
            seed,
            device=device,
            on=on,
            model_options=parse_assignments(model_option, "--model-option"),
        )
    path = api.save(res, out, overwrite=overwrite)
    metrics = res.record["metrics"]
    console.print(f"saved {path}  " + "  ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
