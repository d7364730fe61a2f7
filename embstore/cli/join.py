"""The join command: embeddings onto a file of training rows, point in time correct, for jobs."""

from __future__ import annotations

import click

from embstore.cli.state import State

FORMATS = (".parquet", ".pq", ".csv", ".csv.gz")


def table_format(path: str, what: str) -> str:
    name = path.lower()
    for ending in FORMATS:
        if name.endswith(ending):
            return "csv" if ".csv" in ending else "parquet"
    raise click.UsageError(f"{what} {path!r}: use a .parquet or .csv file")


@click.command("join")
@click.argument("ref")
@click.argument("rows", type=click.Path(dir_okay=False, exists=True))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--as-of", "as_of", is_flag=True, help="REF is a set: each row gets the newest version valid at its time")
@click.option("--live", is_flag=True, help="REF is set@alias: each row gets the version the alias named at its time")
@click.option("--on", "on", metavar="COLUMN", help="the rows' id column (default: the set's entity, e.g. item_id)")
@click.option("--timestamp-column", "timestamp_column", default="event_timestamp", show_default=True,
              help="the rows' time column: datetimes, ISO-8601 text or unix seconds (naive times are UTC)")
@click.option("--column", "column", metavar="NAME", help="name of the vector column (default: <set>_embedding)")
@click.option("--wide", is_flag=True, help="one float32 column per dimension, NAME_0 ... NAME_{d-1}, instead of a list column")
@click.pass_obj
def join(state: State, ref: str, rows: str, out: str, as_of: bool, live: bool, on: str | None,
         timestamp_column: str, column: str | None, wide: bool) -> None:
    """Join REF's vectors onto the training ROWS (parquet or CSV) and write OUT (parquet or CSV).

    Rows at or after a version's valid-from get its vector, earlier rows and unknown ids get
    none (null); every row comes back in order. In CSV a list column is written as JSON arrays."""
    import json
    import time

    import pandas as pd

    rows_format, out_format = table_format(rows, "ROWS"), table_format(out, "OUT")
    frame = pd.read_parquet(rows) if rows_format == "parquet" else pd.read_csv(rows)
    started = time.perf_counter()
    joined = state.store().join(frame, ref, column=column, timestamp_column=timestamp_column, on=on,
                                as_of=as_of, live=live, wide=wide)
    seconds = time.perf_counter() - started
    if out_format == "csv":
        lists = [c for c in joined.columns if joined[c].dtype == object and joined[c].map(
            lambda v: hasattr(v, "tolist")).any()]
        for c in lists:
            joined[c] = joined[c].map(lambda v: None if v is None else json.dumps(v.tolist()))
        joined.to_csv(out, index=False)
    else:
        joined.to_parquet(out, index=False)
    vector_columns = [c for c in joined.columns if c not in frame.columns]
    found = int(joined[vector_columns[0]].notna().sum()) if vector_columns else 0
    click.echo(f"{out}: {len(joined)} rows, {found} with a vector ({seconds:.2f} s)", err=True)
    click.echo(out)
