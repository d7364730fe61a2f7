"""Commands that read versions: recall, export."""

from __future__ import annotations

import atexit
import gc
import json

import click

from embstore.cli.state import State
from embstore.ids import typed_ids


@click.command()
@click.argument("ref")
@click.option("--id", "ids", multiple=True, required=True, help="query id (repeat for several)")
@click.option("-k", "k", type=int, default=10, show_default=True)
@click.option("--metadata", "metadata", metavar="FILE[:ID_COLUMN]",
              help="CSV or parquet of side information printed beside each id (title first, then the other "
                   "columns); ID_COLUMN holds the ids (default: id or item_id, else the first column), e.g. "
                   "movies.csv:movieId")
@click.option("--json", "as_json", is_flag=True, help="print JSON; with --metadata each result also has "
              "query_metadata and metadata (one row or null per id, in order)")
@click.pass_obj
def recall(state: State, ref: str, ids, k: int, metadata: str | None, as_json: bool) -> None:
    """Nearest neighbours of each --id in REF."""
    _quick_exit()
    table = None
    if metadata is not None:  # read first: a wrong path or column fails before any work
        from embstore.server.metadata import Metadata, parse_metadata_path

        table = Metadata.load(*parse_metadata_path(metadata), prepare_search=False)
    from embstore.versions.reader import VersionReader

    reader = VersionReader.open(state.home)  # reading needs neither Feast nor the publisher: starts fast
    try:
        version = reader.resolve(ref)
        typed = typed_ids(version.id_type, ids)
        results = reader.recall(version, ids=typed, k=k)  # the version printed is the one that answered
    finally:
        reader.close()
    if as_json:
        rows = []
        for r in results:
            row = r.as_dict()
            if table is not None:
                row.update(query_metadata=table.row(r.query), metadata=table.rows(r.ids))
            rows.append(row)
        click.echo(json.dumps({"ref": version.ref, "results": rows}, default=str))
        return
    for r in results:
        about = f"  {_described(table, r.query)}" if table is not None else ""
        click.echo(f"{r.query!s} ({version.ref}):{about}")
        for rank, (i, s) in enumerate(zip(r.ids, r.scores), 1):
            line = f"  {rank:>3}. {i!s:<24} {s:.4f}"
            if table is not None:
                line += f"  {_described(table, i)}"
            click.echo(line)


def _described(table, item_id) -> str:
    """An id's metadata on one line: its title, then the other columns' values."""
    row = table.row(item_id)
    if row is None:
        return "(no metadata)"
    title = table.title_column
    parts = [str(row[title]) if row.get(title) is not None else ""] if title else []
    parts += [f"{c}: {v}" for c, v in row.items() if c != title and v is not None]
    return "  ".join(p for p in parts if p) or "(no metadata)"


@click.command()
@click.argument("ref")
@click.argument("out", type=click.Path(dir_okay=False))
@click.pass_obj
def export(state: State, ref: str, out: str) -> None:
    """Write REF's ids and vectors to OUT: .parquet (columns id, vector) or .npz (arrays ids, vectors)."""
    from embstore.versions.reader import VersionReader

    _quick_exit()
    reader = VersionReader.open(state.home)
    try:
        path = reader.export(ref, out)
    finally:
        reader.close()
    click.echo(str(path))


def _quick_exit() -> None:
    """At exit, keep the collector away from every object alive then: the final collections over
    numpy's, pandas's and the plugins' objects cost a read-only command 0.2-0.5 s after its output
    (atexit runs before them; finalizers and exit handlers still run)."""
    atexit.register(gc.freeze)
