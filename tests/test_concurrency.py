"""Concurrency, on both backends (embedded SQLite + file Feast, and team PostgreSQL + Redis):

- two publisher processes of the same set at once get distinct version numbers, and each
  publish either completes or fails cleanly (PublishError, version marked failed, aliases
  unchanged); every published version holds exactly what its own publisher wrote;
- an alias moved back and forth by another process while readers query never yields a
  mix of versions within one response (each version's vectors encode its number);
- several processes opening one fresh store at the same moment (schemas, migrations, Feast's
  registry tables) all succeed, and so do many sessions creating one PostgreSQL schema.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import BACKENDS, drop_team_store, team_settings
from embstore.ops.consistency import check_store
from embstore.embeddings import Embeddings
from embstore.store import EmbeddingStore

TESTS = str(Path(__file__).resolve().parent)
N_IDS, DIM = 40, 8


def constant_embeddings(value: float, n: int = N_IDS, dim: int = DIM) -> Embeddings:
    """Every component of every vector equals ``value``: a response tells which version it came from."""
    return Embeddings(ids=np.arange(n, dtype=np.int64), vectors=np.full((n, dim), value, dtype=np.float32))


@pytest.fixture(params=BACKENDS)
def backend_home(request, tmp_path):
    """A fresh home on each backend; yields (home, open store)."""
    home = tmp_path / "home"
    if request.param == "team":
        request.getfixturevalue("team_available")
        store = EmbeddingStore.init(home, progress=False, **team_settings())
    else:
        store = EmbeddingStore.init(home, progress=False)
    yield home, store
    if request.param == "team":
        drop_team_store(store)
    else:
        store.close()


def _env() -> dict:
    env = dict(os.environ)
    env.pop("EMBSTORE_FAULT_AFTER", None)
    env["PYTHONPATH"] = TESTS + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _wait_for(paths, procs, timeout=240.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        for proc in procs:
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"helper process exited early ({proc.returncode}): {err[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail("helper processes did not get ready in time")
        time.sleep(0.05)


PUBLISHER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import numpy as np
    from embstore.embeddings import Embeddings
    from embstore.errors import EmbstoreError, PublishError
    from embstore.store import EmbeddingStore

    home, ready, go, tag, rounds = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    store = EmbeddingStore(home, progress=False)
    store.feast.store  # import Feast before the race starts
    ready.touch()
    while not go.exists():
        time.sleep(0.001)
    results = []
    for j in range(rounds):
        value = float(tag * 100 + j)
        emb = Embeddings(ids=np.arange({n}, dtype=np.int64), vectors=np.full(({n}, {dim}), value, dtype=np.float32))
        try:
            v = store.publish("items", emb, promote="prod")
            results.append({{"value": value, "number": v.number}})
        except PublishError as exc:
            results.append({{"value": value, "error": str(exc), "type": type(exc).__name__}})
    print(json.dumps(results))
    """
).format(n=N_IDS, dim=DIM)


def test_two_publishers_get_distinct_numbers_and_finish_cleanly(backend_home, tmp_path):
    home, store = backend_home
    store.publish("items", constant_embeddings(1.0), promote="prod")
    script = tmp_path / "publisher.py"
    script.write_text(PUBLISHER)
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in (1, 2)]
    rounds = 3
    procs = [
        subprocess.Popen([sys.executable, str(script), str(home), str(r), str(go), str(i), str(rounds)],
                         env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i, r in zip((1, 2), ready)
    ]
    try:
        _wait_for(ready, procs)
        go.touch()  # both start publishing at the same moment
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]  # a failure is a clean PublishError, never a crash
    results = [r for out, _ in outs for r in json.loads(out.strip().splitlines()[-1])]
    assert len(results) == 2 * rounds

    versions = {v.number: v for v in store.versions("items")}
    assert sorted(versions) == list(range(1, 2 + 2 * rounds))  # one number per publish, no gaps, no reuse
    done = [r for r in results if "number" in r]
    numbers = [r["number"] for r in done]
    assert len(numbers) == len(set(numbers)), results
    assert done, f"no publish completed: {results}"
    for r in done:  # each published version holds exactly what its own publisher wrote
        v = versions[r["number"]]
        assert v.status == "published"
        got = store.vectors(f"items@{v.number}", list(range(N_IDS))).matrix
        assert (got == r["value"]).all(), (v.ref, r)
        online = store.online_vectors(f"items@{v.number}", [0, N_IDS - 1])
        assert all(o is not None and np.all(np.asarray(o) == r["value"]) for o in online), (v.ref, online)
    failed = [v for v in versions.values() if v.status == "failed"]
    assert len(failed) == len(results) - len(done)
    for r in results:
        if "error" in r:
            assert r["type"] == "PublishError" and "marked failed" in r["error"]
    prod = store.resolve("items@prod")
    assert prod.status == "published" and prod.number in set(numbers)
    report = check_store(store)
    assert report.ok, [f.line() for f in report.inconsistencies]


MOVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from embstore.store import EmbeddingStore

    home, ready, stop = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    store = EmbeddingStore(home, progress=False)
    ready.touch()
    moves, i = 0, 0
    while not stop.exists():
        i += 1
        if i % 4 == 0:
            store.rollback("items", "prod")
        else:
            store.promote(f"items@{i % 3 + 1}", "prod")
        moves += 1
    print(moves)
    """
)


def _consistent_value(matrix: np.ndarray) -> float:
    values = np.unique(np.asarray(matrix, dtype=np.float32))
    assert values.size == 1, f"one response mixes versions: values {values.tolist()}"
    return float(values[0])


def test_alias_moves_never_mix_versions_within_a_response(backend_home, tmp_path):
    home, store = backend_home
    for number in (1, 2, 3):  # version N's vectors are all N; inner product scores name both sides
        v = store.publish("items", constant_embeddings(float(number)), promote="prod",
                          retriever_config={"metric": "ip"})
        assert v.number == number
    store.feast.store  # Feast is imported and loaded before readers share the store
    script = tmp_path / "mover.py"
    script.write_text(MOVER)
    ready, stop = tmp_path / "ready", tmp_path / "stop"
    mover = subprocess.Popen([sys.executable, str(script), str(home), str(ready), str(stop)],
                             env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[str, set] = {}
    errors: list[BaseException] = []
    responses = [0]

    def read(worker: int, until: float) -> None:
        ids = list(range(N_IDS))
        try:
            while time.monotonic() < until:
                got = _consistent_value(store.vectors("items@prod", ids).matrix)
                assert got in (1.0, 2.0, 3.0)
                seen.setdefault("vectors", set()).add(got)
                hits = store.recall("items@prod", ids=[0, 7, 13], k=5)
                scores = np.array([h.scores for h in hits])
                assert scores.shape == (3, 5)
                s = _consistent_value(scores) / DIM  # query and index of version v: v*v per component
                assert s in (1.0, 4.0, 9.0), f"recall scored {s * DIM}: query and index from different versions"
                seen.setdefault("recall", set()).add(s)
                raw = store.recall("items@prod", vectors=np.ones((2, DIM), dtype=np.float32), k=4)
                seen.setdefault("raw", set()).add(_consistent_value(np.array([h.scores for h in raw])) / DIM)
                if worker == 0:
                    online = store.online_vectors("items@prod", [0, 5, N_IDS - 1])
                    seen.setdefault("online", set()).add(_consistent_value(np.array(online)))
                responses[0] += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    try:
        _wait_for([ready], [mover], timeout=120)
        until = time.monotonic() + 5.0
        readers = [threading.Thread(target=read, args=(w, until)) for w in range(2)]
        for t in readers:
            t.start()
        for t in readers:
            t.join(timeout=120)
    finally:
        stop.touch()
        out, err = mover.communicate(timeout=60)
    assert mover.returncode == 0, err[-3000:]
    if errors:
        raise errors[0]
    moves = int(out.strip().splitlines()[-1])
    assert moves > 10 and responses[0] > 10, (moves, responses)
    assert len(seen["vectors"] | seen["online"]) > 1, f"readers only ever saw {seen}: the alias did not move under them"
    assert seen["raw"] <= {1.0, 2.0, 3.0} and seen["online"] <= {1.0, 2.0, 3.0}
    assert store.resolve("items@prod").number in (1, 2, 3)
    report = check_store(store)
    assert report.ok, [f.line() for f in report.inconsistencies]


OPENER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import numpy as np
    from embstore.embeddings import Embeddings
    from embstore.store import EmbeddingStore

    home, ready, go, tag = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    ready.touch()  # imported: the opening itself is what races
    while not go.exists():
        time.sleep(0.001)
    store = EmbeddingStore(home, progress=False)
    store.feast.store  # Feast's registry opened (its tables created on first use)
    emb = Embeddings(ids=np.arange(20, dtype=np.int64), vectors=np.full((20, 4), float(tag), dtype=np.float32))
    v = store.publish(f"fresh_{tag}", emb, promote="prod")
    got = store.vectors(f"fresh_{tag}@prod", [0, 19]).matrix
    print(json.dumps({"number": v.number, "value": float(got[0, 0]), "last": float(got[1, 0])}))
    store.close()
    """
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_processes_opening_one_fresh_store_at_once_all_succeed(backend, tmp_path, request):
    """A home whose settings exist but whose registry, Feast registry and online store do not yet:
    several processes open it at the same moment (schemas, migrations, Feast's tables and project),
    then each publishes and reads. None may fail (the team backend used to raise IntegrityError)."""
    from embstore.settings import parse_settings, write_default_settings

    home = tmp_path / "home"
    home.mkdir()
    settings = {}
    if backend == "team":
        request.getfixturevalue("team_available")
        settings = team_settings()
    write_default_settings(home, parse_settings(settings))  # what `embstore init` writes, nothing more
    script = tmp_path / "opener.py"
    script.write_text(OPENER)
    go = tmp_path / "go"
    count = 4
    ready = [tmp_path / f"ready{i}" for i in range(count)]
    procs = [subprocess.Popen([sys.executable, str(script), str(home), str(r), str(go), str(i + 1)], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, r in enumerate(ready)]
    store = None
    try:
        _wait_for(ready, procs)
        go.touch()
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, err[-4000:]
        results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
        assert [(r["number"], r["value"], r["last"]) for r in results] == [(1, float(i), float(i)) for i in range(1, count + 1)]
        store = EmbeddingStore(home, progress=False)
        assert store.sets() == [f"fresh_{i}" for i in range(1, count + 1)]
        report = check_store(store)
        assert report.ok, [f.line() for f in report.inconsistencies]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        if store is not None:
            drop_team_store(store) if backend == "team" else store.close()


def test_a_postgres_schema_created_by_many_connections_at_once(team_available):
    """CREATE SCHEMA IF NOT EXISTS alone raises a unique violation when two sessions run it at once."""
    import uuid

    import sqlalchemy as sa

    from conftest import POSTGRES_URL
    from embstore.backends.schema import ensure_pg_schema
    from embstore.backends.team import with_search_path

    errors: list = []
    for _ in range(3):
        name = f"race_{uuid.uuid4().hex[:10]}"
        barrier = threading.Barrier(8)

        def create(url=with_search_path(POSTGRES_URL, name)):
            barrier.wait()
            try:
                ensure_pg_schema(url)
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(repr(exc)[:300])

        threads = [threading.Thread(target=create) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        engine = sa.create_engine(POSTGRES_URL, poolclass=sa.pool.NullPool)
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": name}).first()
            conn.execute(sa.text(f'DROP SCHEMA "{name}"'))
        engine.dispose()
    assert errors == []
