"""Commands that read versions: recall, export."""

from __future__ import annotations

import json

import click

from embstore.cli.state import State
from embstore.ids import typed_ids


@click.command()
@click.argument("ref")
@click.option("--id", "ids", multiple=True, required=True, help="query id (repeat for several)")
@click.option("-k", "k", type=int, default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def recall(state: State, ref: str, ids, k: int, as_json: bool) -> None:
    """Nearest neighbours of each --id in REF."""
    store = state.store()
    version = store.resolve(ref)
    typed = typed_ids(version.id_type, ids)
    results = store.recall(version, ids=typed, k=k)  # the version printed is the one that answered
    if as_json:
        click.echo(json.dumps({"ref": version.ref, "results": [r.as_dict() for r in results]}, default=str))
        return
    for r in results:
        click.echo(f"{r.query!s} ({version.ref}):")
        for rank, (i, s) in enumerate(zip(r.ids, r.scores), 1):
            click.echo(f"  {rank:>3}. {i!s:<24} {s:.4f}")


@click.command()
@click.argument("ref")
@click.argument("out", type=click.Path(dir_okay=False))
@click.pass_obj
def export(state: State, ref: str, out: str) -> None:
    """Write REF's vectors to OUT.parquet (columns id, vector)."""
    path = state.store().export(ref, out)
    click.echo(str(path))
