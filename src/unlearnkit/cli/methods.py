"""``unlearnkit methods list`` and ``unlearnkit unlearn``.

``unlearn`` reads a saved model (:func:`unlearnkit.api.load`); the data come from its manifest
(the data plan written by ``unlearnkit train``, or the older ``dataset`` + ``split`` entries).
The forget spec (``random:0.1``, ``class:3``, ``ids:@file``, ...) selects the forget set from
the **train** split; retain = train minus forget; the method gets retain, forget and val (never
test). The unlearned model is saved with the source's data entries, the ``unlearn`` record
(method, config, seed, seconds, device, forget spec, seed and ids hash, counts, source
fingerprint, method info) and ``accuracy`` per split (:func:`unlearnkit.api.unlearn`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from unlearnkit import api
from unlearnkit.cli.app import Device, Overwrite, app, console, friendly_errors, show
from unlearnkit.cli.options import SEED_MAX, check_forget_spec, parse_config

__all__ = ["parse_config"]

methods_app = typer.Typer(help="Unlearning methods.", no_args_is_help=True)
app.add_typer(methods_app, name="methods")


@methods_app.command("list")
@friendly_errors
def list_methods(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    max_epochs: Annotated[
        int, typer.Option(help="E* of the search spaces (ceil(0.2 * training epochs))", min=1)
    ] = 10,
) -> None:
    """Print every method: abbreviation, source paper, data used, requirements, defaults."""
    rows = api.catalog.methods(max_epochs)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in rows], indent=2, default=str))
        return
    table = Table(title=f"unlearnkit methods ({len(rows)})", show_lines=True)
    table.add_column("method", min_width=14)
    for col in ("paper", "uses", "requires", "defaults"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            f"{r.abbreviation} {r.name}\n{r.key} · {r.family}",
            r.paper,
            r.uses_text,
            r.requires_text,
            r.defaults_text.replace(", ", "\n"),
        )
    show(table)


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
    seed: Annotated[
        int, typer.Option(help="seed of the unlearning run", min=0, max=SEED_MAX)
    ] = 123,
    forget_seed: Annotated[
        int, typer.Option(help="seed of random forget selectors", min=0, max=SEED_MAX)
    ] = 0,
    device: Device = "auto",
    overwrite: Overwrite = False,
) -> None:
    """Unlearn a forget set from a saved model with one method; save and report accuracies."""
    user_cfg = parse_config(config)
    check_forget_spec(forget)
    api.check_output(out, overwrite=overwrite, inputs=[model])
    api.resolve_device(device)
    source = api.load(model)
    split = source.split.with_forget(forget, forget_seed)
    with console.status(f"unlearning {len(split.forget)} samples with {method}"):
        res = api.unlearn(source, split, method, user_cfg, seed, device=device)
    written = api.save(res, out, overwrite=overwrite, inputs=[model])
    table = Table(
        title=f"{res.record['abbreviation']} unlearned {res.record['n_forget']} samples "
        f"in {res.seconds:.2f} s"
    )
    table.add_column("split")
    table.add_column("samples", justify="right")
    table.add_column("accuracy", justify="right")
    sizes = {k: len(d) for k, d in split.parts().items()}
    for name, value in res.accuracy.items():
        table.add_row(name, str(sizes[name]), f"{value:.4f}")
    show(table)
    console.print(f"saved {written}")
