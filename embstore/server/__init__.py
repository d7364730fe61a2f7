"""HTTP serving: recall endpoints and the embedding explorer page (``embstore serve``).

    embstore serve --metadata movies_item2vec=ml-latest-small/movies.csv:movieId
    curl 'http://127.0.0.1:8750/api/sets/movies_item2vec@prod/similar?id=1&k=10'
    open http://127.0.0.1:8750/explorer

The app lives in ``embstore.server.app`` (``create_app``), the page in
``embstore.server.explorer``, metadata tables in ``embstore.server.metadata``;
the click command is in ``embstore.cli.serve``, so ``embstore --help`` does not
import FastAPI.
"""
