"""``unlearnkit train``: train an original (or, with ``--forget``, a retrained) model."""

from __future__ import annotations

from pathlib import Path

import typer

from unlearnkit.cli.app import app, console, friendly_errors
from unlearnkit.cli.options import parse_kv


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
    seed: int = typer.Option(0, help="seed of the initial weights and of training"),
    split_seed: int = typer.Option(0, help="seed of the train/val/test split"),
    val_fraction: float = typer.Option(0.1),
    test_fraction: float = typer.Option(0.2),
    forget: str | None = typer.Option(
        None, help="train on retain only (a retrain): forget spec, e.g. random:0.1"
    ),
    forget_seed: int = typer.Option(0),
    dataset_param: list[str] = typer.Option([], help="dataset parameter KEY=VALUE (repeatable)"),
) -> None:
    """Train a model on a dataset's training split and save it with its manifest."""
    from unlearnkit.artifacts import save_model
    from unlearnkit.data.plan import data_block, materialise
    from unlearnkit.data.plan import workflow_plan as DataPlan
    from unlearnkit.models import build_model
    from unlearnkit.training import LBFGSRecipe, SGDRecipe, evaluate_accuracy, train

    plan = DataPlan(
        dataset,
        parse_kv(dataset_param),
        val_fraction,
        test_fraction,
        split_seed,
        forget,
        forget_seed,
    )
    mat = materialise(plan)
    rec = (
        SGDRecipe(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay)
        if recipe == "sgd"
        else LBFGSRecipe(l2=l2)
    )
    net = build_model(model, mat.full.input_shape, mat.full.num_outputs, seed=seed)
    with console.status(f"training {model} on {dataset} ({len(mat.fit_on)} samples)"):
        res = train(net, mat.fit_on, rec, seed=seed)
    metrics = {
        "train_accuracy": evaluate_accuracy(res.model, mat.fit_on),
        "val_accuracy": evaluate_accuracy(res.model, mat.val),
        "test_accuracy": evaluate_accuracy(res.model, mat.test),
        "seconds": res.seconds,
    }
    if res.grad_norm is not None:
        metrics["grad_norm"] = res.grad_norm
    path = save_model(
        out,
        res.model,
        {
            "data": data_block(plan, mat),
            "recipe": rec.model_dump(),
            "seed": seed,
            "metrics": metrics,
            "role": "retrain" if forget else "original",
        },
    )
    console.print(f"saved {path}  " + "  ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
