"""The serve command: recall over HTTP and the explorer page, in one process (embstore.server)."""

from __future__ import annotations

import click

from embstore.cli.state import State

DEFAULT_PORT = 8750


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to bind; anything but loopback exposes the embeddings to the network (no auth)")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="TCP port (0 picks a free one)")
@click.option("--metadata", "metadata", multiple=True, metavar="SET=PATH[:ID_COLUMN]",
              help="side information for the explorer, CSV or parquet, for every version of SET; ID_COLUMN "
                   "holds the set's ids (default: id or item_id, else the first column), e.g. "
                   "movies_item2vec=ml-latest-small/movies.csv:movieId. Repeat for several sets.")
@click.option("--max-k", default=1000, show_default=True, type=click.IntRange(1, 100_000),
              help="largest k a request may ask for")
@click.option("--preload/--no-preload", default=True, show_default=True,
              help="load every set's latest and aliased versions before accepting requests")
@click.option("--watch", default=2.0, show_default=True, type=click.FloatRange(0),
              help="seconds between checks for newly published or aliased versions, which are then loaded in "
                   "the background (0: off; requests still resolve refs each time and load on first use)")
@click.option("--search-threads", type=click.IntRange(1), default=None,
              help="OpenMP threads per index search [default: 1, or OMP_NUM_THREADS if set]; concurrent "
                   "requests already use the cores, and several threads per single-query search make it "
                   "slower (measured 5x on 2 cores)")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.pass_obj
def serve(state: State, host: str, port: int, metadata, max_k: int, preload: bool, watch: float,
          search_threads: int | None, log_level: str) -> None:
    """Serve recall endpoints (JSON, OpenAPI at /docs) and the explorer page (/explorer).

    Refs in URLs are set, set@3 or set@prod; an alias move is picked up by the next request,
    without a restart. Binds 127.0.0.1 unless --host says otherwise.
    """
    import logging
    import os

    # before faiss (or anything else) loads OpenMP, which reads this once
    if search_threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(search_threads)
    else:
        os.environ.setdefault("OMP_NUM_THREADS", "1")

    import uvicorn

    from embstore.server.app import create_app
    from embstore.server.metadata import Metadata, parse_metadata_arg
    from embstore.store import EmbeddingStore

    tables = {}
    for arg in metadata:
        set_name, path, id_column = parse_metadata_arg(arg)
        tables[set_name] = Metadata.load(path, id_column)
    store = EmbeddingStore(state.home, progress=False)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s:     %(name)s: %(message)s")
    logging.getLogger("embstore").setLevel(log_level.upper())
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: binding {host}: anyone who reaches this host can read the embeddings "
                   "(embstore serve has no authentication)", err=True)
    app = create_app(store, tables, max_k=max_k, warm_interval=watch, preload=preload)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False)
    server = uvicorn.Server(config)
    try:
        server.run()
    finally:
        store.close()
