"""``unlearnkit data list``: the built-in and local datasets (a table, or ``--json``)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from unlearnkit import api
from unlearnkit.cli.app import app, friendly_errors, show

data_app = typer.Typer(help="Datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("list")
@friendly_errors
def list_datasets(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Print every dataset: name, task, size, input shape, classes or attributes."""
    rows = api.catalog.datasets()
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title="unlearnkit datasets")
    for col in ("name", "task", "size", "input shape", "outputs", "description"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            row["name"],
            row["task"],
            str(row["size"]),
            str(row["input_shape"]),
            str(row["num_outputs"]),
            row["description"],
        )
    show(table)
