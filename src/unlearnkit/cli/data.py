"""``unlearnkit data list``: the built-in and local datasets."""

from __future__ import annotations

import typer
from rich.table import Table

from unlearnkit.cli.app import app, console, friendly_errors

data_app = typer.Typer(help="Datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("list")
@friendly_errors
def list_datasets() -> None:
    """Print every dataset: name, task, size, input shape, classes or attributes."""
    from unlearnkit.data import dataset_info

    table = Table(title="unlearnkit datasets")
    for col in ("name", "task", "size", "input shape", "outputs", "description"):
        table.add_column(col)
    for row in dataset_info():
        table.add_row(
            row["name"],
            row["task"],
            str(row["size"]),
            str(row["input_shape"]),
            str(row["num_outputs"]),
            row["description"],
        )
    console.print(table)
