"""`embstore serve`: every JSON endpoint with its error cases, alias moves under load, the explorer page."""

from __future__ import annotations

import re
import socket
import threading
import time
import warnings

import numpy as np
import pandas as pd
import pytest

with warnings.catch_warnings():  # starlette >= 1.x suggests httpx2 for its TestClient; httpx works the same
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

from conftest import clustered_embeddings
from embstore.embeddings import Embeddings
from embstore.errors import ConfigError
from embstore.server.app import create_app
from embstore.server.explorer import Form
from embstore.server.metadata import Metadata, parse_metadata_arg, parse_metadata_path
from embstore.store import EmbeddingStore

DIM = 16


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """items@1 (prod) and items@2 (latest), a string-id set, a user set in the items' space, metadata."""
    root = tmp_path_factory.mktemp("serve")
    store = EmbeddingStore.init(root / "home", progress=False)
    store.publish("items", clustered_embeddings(seed=1, dim=DIM), promote="prod")
    store.publish("items", clustered_embeddings(seed=2, dim=DIM))
    store.publish("words", clustered_embeddings(seed=3, dim=DIM, string_ids=True), entity="word_id")
    rng = np.random.default_rng(7)
    users = Embeddings(ids=np.arange(1000, 1010, dtype=np.int64),
                       vectors=rng.normal(size=(10, DIM)).astype(np.float32))
    store.publish("users", users, entity="user_id")
    store.publish("narrow", clustered_embeddings(seed=4, dim=8))
    spread = Embeddings(ids=np.arange(400, dtype=np.int64),
                        vectors=np.random.default_rng(8).normal(size=(400, DIM)).astype(np.float32))
    store.publish("spread", spread, retriever_config={"metric": "l2", "index": "ivf", "nlist": 10, "nprobe": 1})
    meta_path = root / "items.csv"
    pd.DataFrame({
        "itemId": np.arange(100),
        "title": [f"Item {i:03d}" for i in range(100)],
        "genres": [f"g{i // 20}|extra" for i in range(100)],
        "year": 1950 + np.arange(100),
    }).to_csv(meta_path, index=False)
    app = create_app(store, {"items": Metadata.load(meta_path, "itemId")}, max_k=50)
    with TestClient(app) as client:
        yield store, client, users
    store.close()


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "message"} and body["message"]
    return body


# -- sets, versions, aliases ------------------------------------------------------


def test_health_and_openapi_describe_every_endpoint(served):
    _, client, _ = served
    assert client.get("/api/health").json() == {"status": "ok"}
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) >= {
        "/api/sets", "/api/sets/{name}/versions", "/api/sets/{ref}", "/api/sets/{ref}/similar",
        "/api/sets/{ref}/recall/user", "/api/sets/{ref}/recall/vector", "/api/sets/{ref}/vectors",
    }
    assert "404" in paths["/api/sets/{ref}/similar"]["get"]["responses"]
    docs = client.get("/docs").text  # FastAPI's Swagger UI, its assets served by this app (no CDN)
    assert "https://" not in docs and client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    spec = client.get(docs.split("url: '", 1)[1].split("'", 1)[0]).json()  # what the page renders
    assert "get" in spec["paths"]["/api/sets/{ref}/similar"] and "UserRecallIn" in spec["components"]["schemas"]


def test_sets_lists_latest_and_aliases(served):
    _, client, _ = served
    sets = {s["name"]: s for s in client.get("/api/sets").json()["sets"]}
    assert sets["items"] == {"name": "items", "latest": 2, "aliases": {"prod": 1}, "versions": 2}
    assert {"words", "users", "narrow"} <= set(sets)


def test_versions_and_alias_history_of_a_set(served):
    _, client, _ = served
    body = client.get("/api/sets/items/versions").json()
    assert body["set"] == "items" and body["latest"] == 2 and body["aliases"] == {"prod": 1}
    assert [(v["ref"], v["status"], v["dim"], v["count"], v["aliases"]) for v in body["versions"]] == [
        ("items@1", "published", DIM, 100, ["prod"]), ("items@2", "published", DIM, 100, []),
    ]
    assert [(e["alias"], e["version"], e["previous"]) for e in body["alias_history"]] == [("prod", 1, None)]


def test_versions_errors(served):
    _, client, _ = served
    assert error_of(client.get("/api/sets/nope/versions"), 404)["error"] == "not_found"
    assert "not a version" in error_of(client.get("/api/sets/items@1/versions"), 422)["message"]


def test_a_ref_resolves_to_its_version_now(served):
    _, client, _ = served
    assert client.get("/api/sets/items@prod").json()["ref"] == "items@1"
    assert client.get("/api/sets/items").json()["ref"] == "items@2"
    assert client.get("/api/sets/items@2").json()["number"] == 2
    assert "no alias 'canary'" in error_of(client.get("/api/sets/items@canary"), 404)["message"]
    assert error_of(client.get("/api/sets/items@9"), 404)["error"] == "not_found"
    assert "set name" in error_of(client.get("/api/sets/bad-name"), 422)["message"]


# -- similar items ------------------------------------------------------------------


def test_similar_items_match_the_python_api(served):
    store, client, _ = served
    body = client.get("/api/sets/items@prod/similar", params={"id": 3, "k": 5}).json()
    expected = store.recall("items@1", ids=[3], k=5)[0]
    assert body["ref"] == "items@1" and body["metric"] == "cosine" and body["query"] == 3
    assert body["ids"] == expected.ids and body["scores"] == pytest.approx(expected.scores)
    assert 3 not in body["ids"] and all(i // 20 == 0 for i in body["ids"])  # same planted cluster
    assert body["scores"] == sorted(body["scores"], reverse=True)


def test_similar_answers_the_same_before_and_after_its_version_is_loaded(store, monkeypatch):
    """A version not loaded yet is answered by the route (read from disk in the thread pool); once
    loaded, by the fast path in the event loop: the same bytes either way, errors always the route's."""
    from embstore.server.app import SimilarFastPath

    store.publish("items", clustered_embeddings(seed=1, dim=DIM), promote="prod")
    served_fast = []
    answer = SimilarFastPath.answer
    monkeypatch.setattr(SimilarFastPath, "answer", lambda self, *a: served_fast.append(answer(self, *a)) or served_fast[-1])
    with TestClient(create_app(store)) as client:
        first = client.get("/api/sets/items@prod/similar", params={"id": 3, "k": 5, "metadata": "false"})
        again = client.get("/api/sets/items@prod/similar", params={"id": 3, "k": 5, "metadata": "false"})
        missing = client.get("/api/sets/items@prod/similar", params={"id": 12345})
    assert served_fast[0] is None and served_fast[1] is not None and served_fast[2] is None
    assert first.status_code == again.status_code == 200 and first.content == again.content == served_fast[1]
    assert first.headers["content-type"] == again.headers["content-type"] == "application/json"
    assert missing.status_code == 404 and missing.json()["missing"] == [12345]


def test_similar_excludes_ids_and_reads_string_ids(served):
    _, client, _ = served
    first = client.get("/api/sets/items/similar", params={"id": 3, "k": 3}).json()["ids"]
    body = client.get("/api/sets/items/similar", params=[("id", "3"), ("k", "3"), ("exclude", str(first[0]))]).json()
    assert first[0] not in body["ids"] and body["ids"][:2] == first[1:]
    words = client.get("/api/sets/words/similar", params={"id": "item-42", "k": 4}).json()
    assert words["query"] == "item-42" and all(w.startswith("item-") for w in words["ids"])


@pytest.mark.parametrize("k", [0, -1, 51, "many"])
def test_similar_k_out_of_range(served, k):
    _, client, _ = served
    body = error_of(client.get("/api/sets/items/similar", params={"id": 3, "k": k}), 422)
    assert body["error"] == "invalid_request" and body["message"].startswith("k:")


def test_similar_unknown_set_and_unknown_id(served):
    _, client, _ = served
    body = error_of(client.get("/api/sets/nope/similar", params={"id": 1}), 404)
    assert body["error"] == "not_found" and "nope" in body["message"]
    body = error_of(client.get("/api/sets/items/similar", params={"id": 12345}), 404)
    assert body["error"] == "unknown_ids" and body["missing"] == [12345]
    body = error_of(client.get("/api/sets/items/similar", params={"id": "abc"}), 404)
    assert body["missing"] == ["abc"]
    assert error_of(client.get("/api/sets/items/similar"), 422)["message"].startswith("id:")
    assert error_of(client.get("/api/nothing/here"), 404)["error"] == "not_found"
    assert error_of(client.delete("/api/sets/items/similar"), 405)["error"] == "method_not_allowed"


# -- recall for a raw vector ------------------------------------------------------------


def test_vector_recall_matches_the_python_api(served):
    store, client, _ = served
    q = np.random.default_rng(0).normal(size=DIM).astype(np.float32)
    body = client.post("/api/sets/items@prod/recall/vector", json={"vector": q.tolist(), "k": 7, "exclude": [0]}).json()
    expected = store.recall("items@1", vectors=q[None, :], k=7, exclude=[0])[0]
    assert body["ref"] == "items@1" and body["query"] is None
    assert body["ids"] == expected.ids and body["scores"] == pytest.approx(expected.scores, abs=1e-6)


def test_vector_recall_errors(served):
    _, client, _ = served
    body = error_of(client.post("/api/sets/items/recall/vector", json={"vector": [0.1] * 3}), 422)
    assert "dimension 3" in body["message"] and "dimension 16" in body["message"]
    assert "vector" in error_of(client.post("/api/sets/items/recall/vector", json={"vector": []}), 422)["message"]
    assert error_of(client.post("/api/sets/items/recall/vector", json={"vector": [0.1] * DIM, "k": 0}), 422)
    assert "k must be between" in error_of(
        client.post("/api/sets/items/recall/vector", json={"vector": [0.1] * DIM, "k": 51}), 422)["message"]
    nan = '{"vector": [NaN' + ", 0.1" * (DIM - 1) + "]}"
    assert "vector.0: Input should be a finite number" in error_of(
        client.post("/api/sets/items/recall/vector", content=nan, headers={"content-type": "application/json"}),
        422)["message"]
    too_big = error_of(client.post("/api/sets/items/recall/vector", json={"vector": [4e38] * DIM}), 422)
    assert "vector.0: Input should be less than or equal to" in too_big["message"]  # inf once float32
    assert error_of(client.post("/api/sets/items/recall/vector", content="not json",
                                headers={"content-type": "application/json"}), 422)
    assert error_of(client.post("/api/sets/gone/recall/vector", json={"vector": [0.1] * DIM}), 404)


# -- recall for a user --------------------------------------------------------------------


def test_user_recall_from_recent_items_uses_the_mean_unit_vector(served):
    store, client, _ = served
    recent = [40, 41, 42]
    body = client.post("/api/sets/items/recall/user", json={"recent_ids": recent, "k": 5}).json()
    vecs = store.vectors("items", recent).matrix.astype(np.float64)
    mean = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).mean(axis=0)
    expected = store.recall("items", vectors=mean[None, :], k=5, exclude=recent)[0]
    assert body["ref"] == "items@2" and body["ids"] == expected.ids and body["missing"] == []
    assert not set(recent) & set(body["ids"]) and all(i // 20 == 2 for i in body["ids"])
    keep = client.post("/api/sets/items/recall/user", json={"recent_ids": recent, "k": 5, "exclude_recent": False})
    assert set(recent) & set(keep.json()["ids"])


def test_user_recall_unknown_recent_ids(served):
    _, client, _ = served
    body = error_of(client.post("/api/sets/items/recall/user", json={"recent_ids": [1, 999]}), 404)
    assert body["error"] == "unknown_ids" and body["missing"] == [999]
    ok = client.post("/api/sets/items/recall/user", json={"recent_ids": [1, 999], "allow_missing": True, "k": 3})
    assert ok.status_code == 200 and ok.json()["missing"] == [999]
    none = error_of(client.post("/api/sets/items/recall/user", json={"recent_ids": [998, 999], "allow_missing": True}), 404)
    assert none["missing"] == [998, 999]


def test_user_recall_from_a_user_embedding_set(served):
    store, client, users = served
    body = client.post("/api/sets/items@prod/recall/user",
                       json={"user_ref": "users", "user_id": 1003, "k": 6}).json()
    expected = store.recall("items@1", vectors=users.vectors[3:4], k=6)[0]
    assert body["ref"] == "items@1" and body["ids"] == expected.ids
    assert body["scores"] == pytest.approx(expected.scores, abs=1e-6)


def test_user_recall_errors(served):
    _, client, _ = served
    url = "/api/sets/items/recall/user"
    assert "either" in error_of(client.post(url, json={"k": 3}), 422)["message"]
    both = {"recent_ids": [1], "user_ref": "users", "user_id": 1000}
    assert "either" in error_of(client.post(url, json=both), 422)["message"]
    assert "both user_ref and user_id" in error_of(client.post(url, json={"user_ref": "users"}), 422)["message"]
    body = error_of(client.post(url, json={"user_ref": "users", "user_id": 5}), 404)
    assert body["missing"] == [5]
    body = error_of(client.post("/api/sets/narrow/recall/user", json={"user_ref": "users", "user_id": 1000}), 422)
    assert "users@1 has dimension 16" in body["message"] and "narrow@1 has 8" in body["message"]
    assert error_of(client.post(url, json={"user_ref": "nobody", "user_id": 1}), 404)["error"] == "not_found"
    assert error_of(client.post(url, json={"recent_ids": [1], "k": 500}), 422)


# -- vectors for a batch of ids -------------------------------------------------------------


def test_vectors_round_trip_exactly_in_request_order(served):
    store, client, _ = served
    body = client.post("/api/sets/items@prod/vectors", json={"ids": [7, 0, 99]}).json()
    assert body["ref"] == "items@1" and body["dim"] == DIM and body["ids"] == [7, 0, 99]
    got = np.asarray(body["vectors"], dtype=np.float32)
    np.testing.assert_array_equal(got, clustered_embeddings(seed=1, dim=DIM).vectors[[7, 0, 99]])
    words = client.post("/api/sets/words/vectors", json={"ids": ["item-5"]}).json()
    assert words["ids"] == ["item-5"] and len(words["vectors"][0]) == DIM


def test_vectors_errors(served):
    _, client, _ = served
    body = error_of(client.post("/api/sets/items/vectors", json={"ids": [1, 2000, "x"]}), 404)
    assert body["error"] == "unknown_ids" and body["missing"] == [2000, "x"]
    ok = client.post("/api/sets/items/vectors", json={"ids": [1, 2000], "allow_missing": True}).json()
    assert ok["ids"] == [1] and ok["missing"] == [2000] and len(ok["vectors"]) == 1
    assert error_of(client.post("/api/sets/items/vectors", json={"ids": []}), 422)["message"].startswith("ids:")
    assert error_of(client.post("/api/sets/items/vectors", json={}), 422)
    assert error_of(client.post("/api/sets/items@7/vectors", json={"ids": [1]}), 404)


# -- alias moves while serving ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_alias_moves_during_a_stream_of_requests_fail_nothing(store, home):
    import httpx
    import uvicorn

    a, b = clustered_embeddings(seed=11, dim=DIM), clustered_embeddings(seed=12, dim=DIM)
    store.publish("items", a, promote="prod")
    store.publish("items", b)
    expected = {ref: store.recall(ref, ids=[5], k=5)[0].ids for ref in ("items@1", "items@2")}
    assert expected["items@1"] != expected["items@2"]  # so an answer shows which version gave it
    app = create_app(store, warm_interval=0.2, preload=True)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    url = f"http://127.0.0.1:{port}/api/sets/items@prod/similar?id=5&k=5"
    failures, seen, stop = [], [], threading.Event()

    def client_loop():
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                try:
                    r = http.get(url)
                except Exception as exc:  # a refused or dropped connection counts as a failure
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text}")
                    continue
                body = r.json()
                seen.append(body["ref"])
                if body["ids"] != expected[body["ref"]]:
                    failures.append(f"{body['ref']} answered {body['ids']}, expected {expected[body['ref']]}")

    clients = [threading.Thread(target=client_loop) for _ in range(4)]
    for c in clients:
        c.start()
    try:
        other = EmbeddingStore(home, progress=False)  # another process's view, as `embstore promote` would be
        for i in range(12):
            time.sleep(0.1)
            other.promote(f"items@{2 if i % 2 == 0 else 1}", "prod")
        time.sleep(0.2)
        other.close()
    finally:
        stop.set()
        for c in clients:
            c.join(timeout=30)
        server.should_exit = True
        thread.join(timeout=30)
    assert failures == []
    assert len(seen) > 50 and {"items@1", "items@2"} <= set(seen)
    assert seen[-1] == "items@1"  # the last move (i = 11) pointed prod back at version 1


def test_warmer_loads_newly_aliased_versions(store):
    from embstore.server.app import Warmer

    store.publish("items", clustered_embeddings(seed=1, dim=DIM), promote="prod")
    warmer = Warmer(store, interval=0)
    assert warmer.warm_once() == ["items@1"]
    store.publish("items", clustered_embeddings(seed=2, dim=DIM))
    store.publish("items", clustered_embeddings(seed=3, dim=DIM))
    assert warmer.warm_once() == ["items@3"]  # latest; items@2 is neither latest nor aliased
    store.promote("items@2", "canary")
    assert warmer.warm_once() == ["items@2"]
    assert warmer.warm_once() == []


def test_cli_serve_binds_loopback_by_default():
    from embstore.cli import cli

    serve = cli.commands["serve"]
    assert {p.name: p.default for p in serve.params}["host"] == "127.0.0.1"


def test_cli_serve_reports_bad_arguments_in_one_line(store, home, tmp_path):
    from click.testing import CliRunner

    from embstore.cli import cli

    def run(*args):
        return CliRunner().invoke(cli, ["--home", str(home), "serve", *args])

    bad = run("--metadata", "movies.csv")
    assert bad.exit_code == 1 and bad.output.strip().startswith("error: --metadata 'movies.csv': expected SET=PATH")
    missing = run("--metadata", f"items={tmp_path / 'absent.csv'}:movieId")
    assert missing.exit_code == 1 and "not found" in missing.output
    (tmp_path / "m.csv").write_text("movieId,title\n1,A\n")
    column = run("--metadata", f"items={tmp_path / 'm.csv'}:itemId")
    assert column.exit_code == 1 and "no column 'itemId'" in column.output
    nohome = CliRunner().invoke(cli, ["--home", str(tmp_path / "nowhere"), "serve"])
    assert nohome.exit_code == 1 and "not an embstore home" in nohome.output


# -- metadata -------------------------------------------------------------------------------


def test_metadata_argument_forms(tmp_path):
    path = tmp_path / "movies.csv"
    path.write_text("movieId,title,genres\n1,Toy Story (1995),Animation|Children\n2,Jumanji (1995),Adventure\n")
    assert parse_metadata_arg(f"movies={path}:movieId") == ("movies", path, "movieId")
    assert parse_metadata_arg(f"movies={path}") == ("movies", path, None)
    with pytest.raises(ConfigError, match="SET=PATH"):
        parse_metadata_arg(str(path))
    with pytest.raises(ConfigError, match="not found"):
        parse_metadata_arg(f"movies={tmp_path / 'absent.csv'}:movieId")
    with pytest.raises(ConfigError, match="no column 'itemId'"):
        Metadata.load(path, "itemId")
    meta = Metadata.load(path)  # first column when there is no id / item_id
    assert meta.id_column == "movieId" and meta.title_column == "title" and meta.label("1") == "Toy Story (1995)"
    assert meta.search("jum") == [(2, "Jumanji (1995)")]
    assert meta.category_of("genres", [1, 2, 3]) == ["Animation", "Adventure", "no metadata"]


# -- the explorer page ------------------------------------------------------------------------


def test_explorer_page_shows_item_neighbours_histogram_and_map(served):
    store, client, _ = served
    r = client.get("/explorer", params={"ref": "items@prod", "q": "Item 042", "k": 5})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert '<span class="item-label">Item 042</span>' in html
    expected = store.recall("items@1", ids=[42], k=5)[0]
    for i, s in zip(expected.ids, expected.scores):
        assert f'<tr data-id="{i}"' in html and f"Item {i:03d}" in html and f"{s:.4f}" in html
    assert html.count('class="bar"') == 30 and 'id="hist-svg"' in html
    assert 'id="map-svg"' in html and html.count('class="mark-neighbour"') == 5 and 'class="mark-item"' in html
    assert "coloured by genres" in html and ">g2<" in html and ">extra<" not in html  # first values only
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # offline


def test_explorer_compares_two_versions(served):
    store, client, _ = served
    html = client.get("/explorer", params={"ref": "items@1", "id": "42", "compare": "items@2", "k": 10}).text
    a = set(store.recall("items@1", ids=[42], k=10)[0].ids)
    b = set(store.recall("items@2", ids=[42], k=10)[0].ids)
    assert f"<strong>{len(a & b)} of 10</strong>" in html
    assert 'id="compare-a"' in html and 'id="compare-b"' in html
    assert html.count('class="shared"') == 2 * len(a & b)


def test_explorer_messages(served):
    _, client, _ = served
    assert "no item in items@2 matches" in client.get("/explorer", params={"ref": "items", "q": "zzz"}).text
    assert "unknown embedding set" in client.get("/explorer", params={"ref": "nope"}).text
    words = client.get("/explorer", params={"ref": "words", "q": "item-7"}).text  # no metadata: ids only
    assert '<span class="item-label">item-7</span>' in words and "no metadata" in words
    bare = client.get("/explorer").text
    assert "Look up an item" in bare and 'id="map-svg"' in bare
    assert client.get("/").status_code == 200  # redirects to the explorer
    assert client.get("/static/explorer.js").status_code == 200


def test_explorer_suggestions(served):
    _, client, _ = served
    got = client.get("/explorer/suggest", params={"ref": "items@prod", "q": "item 04"}).json()
    assert [g["label"] for g in got][:3] == ["Item 040", "Item 041", "Item 042"]
    assert client.get("/explorer/suggest", params={"ref": "items", "q": "7"}).json()[0] == {"id": 7, "label": "Item 007"}
    assert client.get("/explorer/suggest", params={"ref": "nope", "q": "x"}).json() == []


def test_explorer_form_values_out_of_range_or_malformed_give_the_page_with_a_message(served):
    store, client, _ = served
    for params, message, rows in [
        ({"k": "abc"}, "number of results (k) must be a whole number from 1 to 50, got &#39;abc&#39;; showing 10", 10),
        ({"k": "900"}, "number of results (k) must be from 1 to 50, got 900; showing 50", 50),
        ({"k": "0"}, "got 0; showing 1", 1),
        ({"n": "5"}, "histogram depth (n) must be from 10 to 5000, got 5; showing 10", 10),
        ({"n": "lots"}, "histogram depth (n) must be a whole number", 10),
        ({"index": "fast"}, "index must be &#39;index&#39; (the version&#39;s own) or &#39;exact&#39;", 10),
        ({"sample": "-3"}, "map sample (sample) must be from 100 to 20000", 10),
    ]:
        r = client.get("/explorer", params={"ref": "items@prod", "id": "42", **params})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), params
        assert '<p class="error" role="alert">' in r.text and message in r.text, params
        assert r.text.count("<tr data-id=") == rows, params
    r = client.get("/explorer", params={"ref": "items@prod", "id": "42", "k": "25", "n": "60"})
    assert r.text.count("<tr data-id=") == 25 and "Scores of the nearest 60" in r.text and 'role="alert"' not in r.text
    assert 'name="k" id="k" value="25" min="1" max="50"' in r.text and 'name="n" id="n" value="60"' in r.text
    depth = client.get("/explorer", params={"ref": "items@prod", "id": "42"}).text
    assert "Scores of the nearest 99" in depth  # default 500, but the version has 100 vectors


def test_explorer_form_parsing_never_raises():
    form = Form.parse({"k": " 12 ", "n": "", "index": "exact", "color": "  ", "q": " toy "}, k_max=500)
    assert (form.k, form.n, form.index, form.color, form.q, form.problems) == (12, 500, "exact", None, "toy", [])
    assert Form.parse({"k": "1e3"}).k == 10 and Form.parse({"k": "501"}).k == 500
    assert form.link(id=7) == "?id=7&k=12&index=exact"  # defaults left out, q dropped once an id is chosen


def _brute_force(vectors: np.ndarray, row: int, k: int, metric: str) -> list[int]:
    x = vectors.astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    key = np.linalg.norm(x - x[row], axis=1) if metric == "l2" else -(x @ x[row])
    key[row] = np.inf
    return np.argsort(key, kind="stable")[:k].tolist()


@pytest.mark.parametrize("ref, metric", [("items@1", "cosine"), ("spread", "l2")])
def test_explorer_exact_search_is_brute_force_with_the_versions_metric(served, ref, metric):
    store, client, _ = served
    loaded = store.load(ref)
    vectors = np.asarray(loaded.vectors)
    html = client.get("/explorer", params={"ref": ref, "id": "7", "k": "15", "index": "exact"}).text
    shown = [int(x) for x in re.findall(r'<tr data-id="(\d+)"', html)]
    assert shown == [int(loaded.ids[r]) for r in _brute_force(vectors, int(loaded.rows([7])[0][0]), 15, metric)]
    assert "by exact search" in html and f"{metric} (" in html


def test_explorer_shows_the_overlap_of_exact_search_and_the_versions_index(served):
    store, client, _ = served
    loaded = store.load("spread")
    exact = {int(loaded.ids[r]) for r in _brute_force(np.asarray(loaded.vectors), 7, 20, "l2")}
    approx = set(store.recall("spread", ids=[7], k=20)[0].ids)
    assert len(exact & approx) < 20  # an IVF index probing 1 list of 10 misses neighbours
    html = client.get("/explorer", params={"ref": "spread", "id": "7", "k": "20"}).text
    assert "by its index, faiss ivf (approximate" in html  # with recall@10 at build where the store recorded it
    assert f"Exact search shares <strong>{len(exact & approx)} of 20</strong>" in html
    assert f"recall@20 of the index {len(exact & approx) / 20:.2f}" in html and "Missed by the index:" in html
    shown = [int(x) for x in re.findall(r'<tr data-id="(\d+)"', html)]
    assert shown == store.recall("spread", ids=[7], k=20)[0].ids  # the default is what recall serves
    exact_page = client.get("/explorer", params={"ref": "spread", "id": "7", "k": "20", "index": "exact"}).text
    assert re.search(rf"The version's index \(faiss ivf \(approximate[^)]*\)\) shares <strong>{len(exact & approx)} of 20",
                     exact_page)
    flat = client.get("/explorer", params={"ref": "items@1", "id": "7"}).text
    assert "Exact search shares <strong>10 of 10</strong>" in flat and "the version's index is exact" in flat
    both = client.get("/explorer", params={"ref": "spread", "id": "7", "index": "exact", "compare": "spread"}).text
    assert "<strong>10 of 10</strong> shared in the top 10" in both  # a comparison uses the chosen search too


def test_explorer_colours_the_map_by_a_chosen_value_of_a_multi_valued_column(served):
    _, client, _ = served
    first = client.get("/explorer", params={"ref": "items@prod", "id": "3", "color": "genres"}).text
    assert "first listed value of genres (g0|extra counts as g0)" in first and ">g0<" in first
    assert '<option value="extra">extra vs rest (100)</option>' in first
    html = client.get("/explorer", params={"ref": "items@prod", "id": "3", "color": "genres", "color_value": "g1"}).text
    assert "coloured by genres: g1 vs the rest" in html and "genres containing &#39;g1&#39; against the rest" in html
    legend = re.findall(r'<span class="name">([^<]+)</span> <span class="muted count">([\d,]+)</span>', html)
    assert dict(legend).keys() == {"g1", "not g1"} and sum(int(c) for _, c in legend) == 100
    assert '<option value="g1" selected>' in html
    year = client.get("/explorer", params={"ref": "items@prod", "color": "year"}).text
    assert "year in quintiles" in year and 'id="color-value"' not in year
    bad = client.get("/explorer", params={"ref": "items@prod", "color": "budget", "color_value": "x"}).text
    assert "no metadata column &#39;budget&#39; to colour the map by" in bad and "coloured by genres" in bad
    odd = client.get("/explorer", params={"ref": "items@prod", "color": "genres", "color_value": "g9"}).text
    assert "genres has no value &#39;g9&#39;" in odd and "first listed value of genres" in odd


def test_explorer_finds_titles_by_words_in_any_order(served):
    _, client, _ = served
    html = client.get("/explorer", params={"ref": "items@prod", "q": "042 ITEM"}).text
    assert '<span class="item-label">Item 042</span>' in html
    got = client.get("/explorer/suggest", params={"ref": "items@prod", "q": "07 item"}).json()
    assert [g["label"] for g in got][:3] == ["Item 070", "Item 071", "Item 072"]


def test_title_search_reads_words_in_any_order_and_case(tmp_path):
    path = tmp_path / "movies.csv"
    pd.DataFrame({"movieId": [1, 2, 3, 4, 5, 6, 7], "title": [
        "Matrix Reloaded, The (2003)", "Animatrix, The (2003)", "Matrix, The (1999)",
        "Star Wars: Episode IV - A New Hope (1977)", "Star Wars: Episode V - The Empire Strikes Back (1980)",
        "Empire of the Sun (1987)", "Amélie (2001)"], "genres": ["Action"] * 7}).to_csv(path, index=False)
    meta = Metadata.load(path)
    assert [t for _, t in meta.search("the matrix")] == [
        "Matrix, The (1999)", "Matrix Reloaded, The (2003)", "Animatrix, The (2003)"]
    assert meta.search("MATRIX")[0] == (3, "Matrix, The (1999)")
    assert meta.search("star wars empire") == [(5, "Star Wars: Episode V - The Empire Strikes Back (1980)")]
    assert meta.search("empire wars") == meta.search("star wars empire")
    assert [i for i, _ in meta.search("star wars")] == [4, 5] and meta.search("amelie") == [(7, "Amélie (2001)")]
    assert meta.search("matrix", allowed=lambda i: i != 3)[0][0] == 1 and meta.search("  ") == []


def test_metadata_path_argument_of_recall(tmp_path):
    path = tmp_path / "movies.csv"
    path.write_text("movieId,title\n1,Toy Story (1995)\n")
    assert parse_metadata_path(f"{path}:movieId") == (path, "movieId") and parse_metadata_path(str(path)) == (path, None)
    with pytest.raises(ConfigError, match="not found"):
        parse_metadata_path(f"{tmp_path / 'absent.csv'}:movieId")


# -- similar with metadata ---------------------------------------------------------------------


def test_similar_includes_metadata_when_asked(served):
    store, client, _ = served
    plain = client.get("/api/sets/items@prod/similar", params={"id": 3, "k": 4}).json()
    assert "metadata" not in plain and "query_metadata" not in plain
    body = client.get("/api/sets/items@prod/similar", params={"id": 3, "k": 4, "metadata": "true"}).json()
    assert body["ids"] == plain["ids"] and body["scores"] == plain["scores"]
    assert body["query_metadata"] == {"title": "Item 003", "genres": "g0|extra", "year": 1953}
    assert body["metadata"] == [{"title": f"Item {i:03d}", "genres": f"g{i // 20}|extra", "year": 1950 + i}
                                for i in body["ids"]]
    none = error_of(client.get("/api/sets/words/similar", params={"id": "item-1", "metadata": "true"}), 422)
    assert "no metadata for set 'words'" in none["message"] and "--metadata words=FILE" in none["message"]
    assert "metadata" not in client.get("/api/sets/words/similar", params={"id": "item-1", "metadata": "false"}).json()


def test_similar_metadata_is_null_for_ids_the_table_lacks(tmp_path):
    store = EmbeddingStore.init(tmp_path / "home", progress=False)
    try:
        store.publish("items", clustered_embeddings(seed=1, dim=DIM))
        path = tmp_path / "few.csv"
        pd.DataFrame({"itemId": [0, 1], "title": ["zero", "one"], "genres": ["a", None]}).to_csv(path, index=False)
        with TestClient(create_app(store, {"items": Metadata.load(path, "itemId")})) as client:
            body = client.get("/api/sets/items/similar", params={"id": 5, "k": 19, "metadata": "true"}).json()
        assert body["query_metadata"] is None
        by_id = dict(zip(body["ids"], body["metadata"]))
        assert by_id[1] == {"title": "one", "genres": None} and by_id[0] == {"title": "zero", "genres": "a"}
        assert all(by_id[i] is None for i in body["ids"] if i > 1)
    finally:
        store.close()


def test_openapi_describes_similar_with_metadata(served):
    _, client, _ = served
    spec = client.get("/openapi.json").json()
    get = spec["paths"]["/api/sets/{ref}/similar"]["get"]
    param = next(p for p in get["parameters"] if p["name"] == "metadata")
    assert param["required"] is False and param["schema"]["type"] == "boolean" and "--metadata" in param["description"]
    ref = get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"metadata", "query_metadata"} <= set(schema["properties"])
    assert set(schema["required"]) == {"ref", "metric", "query", "ids", "scores"}  # absent unless asked
    assert "missing" not in schema["properties"]


# -- the token: required off loopback, asked once by the explorer -----------------------------------

TOKEN = "test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def guarded(served):
    store, _, _ = served
    app = create_app(store, token=TOKEN, max_k=50)
    with TestClient(app) as client:
        yield client


def test_a_token_guards_every_endpoint_but_health(guarded):
    assert guarded.get("/api/health").json() == {"status": "ok"}
    for method, url, body in (("GET", "/api/sets", None), ("GET", "/api/sets/items@prod/similar?id=3", None),
                              ("POST", "/api/sets/items/vectors", {"ids": [1]}), ("GET", "/openapi.json", None),
                              ("GET", "/api/nothing/here", None)):
        r = guarded.request(method, url, json=body)
        body401 = error_of(r, 401)
        assert body401["error"] == "unauthorized" and "Authorization: Bearer" in body401["message"]
        assert r.headers["www-authenticate"].startswith("Bearer")
        wrong = guarded.request(method, url, json=body, headers={"Authorization": "Bearer not-the-token-at-all"})
        assert wrong.status_code == 401
    ok = guarded.get("/api/sets/items@prod/similar", params={"id": 3, "k": 4},
                     headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and len(ok.json()["ids"]) == 4
    assert guarded.get("/static/explorer.css").status_code == 200  # assets hold no data


def test_the_schema_documents_the_token(guarded):
    schema = guarded.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": schema["components"]["securitySchemes"]["bearer"]["description"]}
    similar = schema["paths"]["/api/sets/{ref}/similar"]["get"]
    assert similar["security"] == [{"bearer": []}] and "401" in similar["responses"]
    assert schema["paths"]["/api/health"]["get"]["security"] == []


def test_the_explorer_asks_for_the_token_once_and_keeps_a_cookie(guarded):
    page = guarded.get("/explorer?ref=items@prod&id=3", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fexplorer%3Fref%3Ditems%40prod%26id%3D3"
    form = guarded.get(page.headers["location"])
    assert form.status_code == 200 and 'name="token"' in form.text and 'value="/explorer?ref=items@prod&amp;id=3"' in form.text
    wrong = guarded.post("/login", data={"token": "nope", "next": "/explorer?ref=items@prod&id=3"}, follow_redirects=False)
    assert wrong.status_code == 401 and "not this server&#x27;s token" in wrong.text and "set-cookie" not in wrong.headers
    right = guarded.post("/login", data={"token": TOKEN, "next": "/explorer?ref=items@prod&id=3"}, follow_redirects=False)
    assert right.status_code == 303 and right.headers["location"] == "/explorer?ref=items@prod&id=3"
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    session = cookie.split(";", 1)[0]
    headers = {"Cookie": session}
    assert guarded.get("/explorer?ref=items@prod&id=3", headers=headers).status_code == 200
    assert guarded.get("/api/sets", headers=headers).status_code == 200  # the page's own API calls
    assert guarded.get("/explorer/suggest?ref=items&q=Item", headers=headers).status_code == 200
    out = guarded.get("/logout", follow_redirects=False)
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    assert guarded.get("/api/sets", headers={"Cookie": "embstore_session=forged"}).status_code == 401


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil", "", None, "explorer"])
def test_sign_in_only_returns_to_this_server(target):
    from embstore.server.auth import safe_next

    assert safe_next(target) == "/explorer"
    assert safe_next("/explorer?ref=a@1&k=5") == "/explorer?ref=a@1&k=5"


def test_a_short_token_is_refused(served):
    store, _, _ = served
    with pytest.raises(ConfigError, match="at least 16"):
        create_app(store, token="short")


def _start_serve(home, *args, env_extra=None, expect_exit=False):
    import os
    import subprocess
    import sys

    env = dict(os.environ, **(env_extra or {}))
    env.pop("EMBSTORE_FAULT_AFTER", None)
    proc = subprocess.Popen([sys.executable, "-m", "embstore.cli", "--home", str(home), "serve", "--log-level",
                             "warning", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if expect_exit:
        out, _ = proc.communicate(timeout=60)
        return proc.returncode, out
    return proc


def _wait_up(proc, url):
    import urllib.request

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"embstore serve exited: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("embstore serve did not come up")


def _get(url, token=None):
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_serve_off_loopback_needs_a_token_from_the_option_or_the_environment(store, home):
    store.publish("items", clustered_embeddings(seed=1, dim=DIM), promote="prod")
    code, out = _start_serve(home, "--host", "0.0.0.0", "--port", str(_free_port()), expect_exit=True)
    assert code == 1 and out.strip().startswith("error: binding 0.0.0.0 exposes the embeddings") and "EMBSTORE_TOKEN" in out
    port = _free_port()
    proc = _start_serve(home, "--host", "0.0.0.0", "--port", str(port), env_extra={"EMBSTORE_TOKEN": TOKEN})
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_up(proc, base + "/api/health")
        assert _get(base + "/api/sets/items@prod/similar?id=3")[0] == 401
        status, body = _get(base + "/api/sets/items@prod/similar?id=3", TOKEN)
        assert status == 200 and body["ref"] == "items@1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_with_several_workers_answers_and_follows_alias_moves(store, home):
    store.publish("items", clustered_embeddings(seed=1, dim=DIM), promote="prod")
    store.publish("items", clustered_embeddings(seed=2, dim=DIM))
    port = _free_port()
    proc = _start_serve(home, "--port", str(port), "--workers", "2", "--token", TOKEN)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_up(proc, base + "/api/health")
        assert _get(base + "/api/sets/items@prod")[0] == 401
        assert {_get(base + "/api/sets/items@prod", TOKEN)[1]["ref"] for _ in range(10)} == {"items@1"}
        store.promote("items@2", "prod")
        assert {_get(base + "/api/sets/items@prod", TOKEN)[1]["ref"] for _ in range(10)} == {"items@2"}  # both workers
    finally:
        proc.terminate()
        proc.wait(timeout=30)
