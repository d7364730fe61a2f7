"""The serve command: recall over HTTP and the explorer page (embstore.server)."""

from __future__ import annotations

import click

from embstore.cli.state import State

DEFAULT_PORT = 8750
SWITCH_INTERVAL = 0.0005  # seconds a thread holds the GIL before another may take it (Python's default: 0.005)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to bind; any address but loopback needs --token (the embeddings are then reachable "
                   "from the network)")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="TCP port (0 picks a free one)")
@click.option("--token", envvar="EMBSTORE_TOKEN", metavar="TOKEN",
              help="every request but /api/health must carry it: 'Authorization: Bearer TOKEN', or the cookie the "
                   "sign-in page (/login) sets in a browser [env EMBSTORE_TOKEN; required off loopback; at least "
                   "16 characters]")
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
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="server processes sharing the port; each loads the versions it serves (memory x N). More "
                   "than the cores rarely helps")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 256),
              help="request threads per process (index searches run there, outside the GIL); requests beyond "
                   "wait in the event loop")
@click.option("--search-threads", type=click.IntRange(1), default=None,
              help="OpenMP threads per index search [default: 1, or OMP_NUM_THREADS if set]; concurrent "
                   "requests already use the cores, and several threads per single-query search make it "
                   "slower (measured 5x on 2 cores)")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.pass_obj
def serve(state: State, host: str, port: int, token: str | None, metadata, max_k: int, preload: bool, watch: float,
          workers: int, threads: int, search_threads: int | None, log_level: str) -> None:
    """Serve recall endpoints (JSON, OpenAPI at /docs) and the explorer page (/explorer).

    Refs in URLs are set, set@3 or set@prod; an alias move is picked up by the next request,
    without a restart. Binds 127.0.0.1 unless --host says otherwise; any other address needs a
    token (--token or EMBSTORE_TOKEN), which browsers give once at /login.
    """
    import json
    import logging
    import os
    import sys

    from embstore.errors import ConfigError
    from embstore.server.auth import check_token, is_loopback

    if token is not None:
        check_token(token)
    elif not is_loopback(host):
        raise ConfigError(f"binding {host} exposes the embeddings to the network: give a token with --token or "
                          "EMBSTORE_TOKEN (e.g. export EMBSTORE_TOKEN=$(python -c 'import secrets; "
                          "print(secrets.token_urlsafe(32))'))")
    # before faiss (or anything else) loads OpenMP, which reads this once
    if search_threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(search_threads)
    else:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.setswitchinterval(SWITCH_INTERVAL)  # a thread back from a search waits less for the GIL: shorter tails

    import uvicorn

    from embstore.server.metadata import Metadata, parse_metadata_arg

    tables, specs = {}, []
    for arg in metadata:
        set_name, path, id_column = parse_metadata_arg(arg)
        tables[set_name] = Metadata.load(path, id_column)  # read here too: a bad file fails before serving
        specs.append((set_name, str(path), id_column))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s:     %(name)s: %(message)s")
    logging.getLogger("embstore").setLevel(log_level.upper())
    if workers > 1:
        from embstore.server.app import WORKER_ENV
        from embstore.settings import resolve_home

        state.store().close()  # the home opens (and says what is wrong) before the workers start
        os.environ[WORKER_ENV] = json.dumps({
            "home": str(resolve_home(state.home)), "metadata": specs, "max_k": max_k, "watch": watch,
            "preload": preload, "token": token, "threads": threads, "switch_interval": SWITCH_INTERVAL})
        uvicorn.run("embstore.server.app:worker_app", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, access_log=False)
        return

    from embstore.server.app import create_app
    from embstore.store import EmbeddingStore

    store = EmbeddingStore(state.home, progress=False)
    app = create_app(store, tables, max_k=max_k, warm_interval=watch, preload=preload, token=token, threads=threads,
                     freeze=True)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False)
    server = uvicorn.Server(config)
    try:
        server.run()
    finally:
        store.close()
