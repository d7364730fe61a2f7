"""The read path: resolved refs kept until the registry's change counter moves, and never a move
missed (also one made by another process, on both backends); pins, which read one version and
follow the ref only when refreshed, never missing a move then; the batched id lookup of
LoadedVectors.rows, with exactly the semantics of the loop it replaced."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import BACKENDS, drop_team_store, team_settings
from embstore.backends.files import SCANNED_LOOKUPS, SMALL_LOOKUP, LoadedVectors
from embstore.embeddings import Embeddings
from embstore.store import EmbeddingStore

N_IDS, DIM = 30, 4


def constant(value: float) -> Embeddings:
    """Every component of every vector is ``value``: a read tells which version answered."""
    return Embeddings(ids=np.arange(N_IDS, dtype=np.int64), vectors=np.full((N_IDS, DIM), value, dtype=np.float32))


@pytest.fixture(params=BACKENDS)
def backend_store(request, tmp_path):
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


def _count_resolves(store, monkeypatch) -> list:
    calls = []
    real = store.registry.resolve

    def counting(ref):
        calls.append(str(ref))
        return real(ref)

    monkeypatch.setattr(store.registry, "resolve", counting)
    return calls


def test_resolved_refs_are_kept_until_the_registry_changes(backend_store, monkeypatch):
    _, store = backend_store
    store.publish("items", constant(1.0), promote="prod")
    store.publish("items", constant(2.0))
    calls = _count_resolves(store, monkeypatch)
    for _ in range(50):
        assert store.vectors("items@prod", [0]).matrix[0, 0] == 1.0
        assert store.recall("items@prod", ids=[1], k=3)[0].ids
    assert calls == ["items@prod"]  # one registry query, then the change counter alone
    store.promote("items@2", "prod")
    calls.clear()
    assert store.vectors("items@prod", [0]).matrix[0, 0] == 2.0
    assert store.vectors("items@prod", [0]).matrix[0, 0] == 2.0
    assert calls == ["items@prod"]


def test_every_kind_of_change_moves_the_counter(backend_store):
    _, store = backend_store
    marker = store.registry.change_marker
    seen = [marker()]
    assert seen[0] is not None

    def moved() -> bool:
        seen.append(marker())
        return seen[-1] != seen[-2]

    store.publish("items", constant(1.0), promote="prod")
    assert moved()
    store.publish("items", constant(2.0))  # a new latest: what the bare set name means
    assert moved()
    store.promote("items@2", "prod")
    assert moved()
    store.rollback("items", "prod")
    assert moved()
    store.registry.promote_many([("items", 2)], "canary")
    assert moved()
    store.registry.extend_metrics("items", 1, {"note": {"a": 1}})
    assert moved()
    assert store.vectors("items", [0]).matrix[0, 0] == 2.0 and store.resolve("items@prod").number == 1
    assert store.resolve("items@1").metrics["note"] == {"a": 1}
    assert not moved()  # reads change nothing


def test_a_missing_counter_row_means_no_caching_and_the_next_change_restores_it(tmp_path, monkeypatch):
    store = EmbeddingStore.init(tmp_path / "home", progress=False)
    store.publish("items", constant(1.0), promote="prod")
    with store.registry.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM embstore_changes"))
    assert store.registry.change_marker() is None
    calls = _count_resolves(store, monkeypatch)
    for _ in range(3):
        store.vectors("items@prod", [0])
    assert len(calls) == 3  # resolved every time: nothing may be trusted without the counter
    store.publish("items", constant(2.0), promote="prod")
    assert store.registry.change_marker() is not None
    assert store.vectors("items@prod", [0]).matrix[0, 0] == 2.0
    store.close()


MOVER = textwrap.dedent(
    """
    import sys
    from embstore.store import EmbeddingStore

    store = EmbeddingStore(sys.argv[1], progress=False)
    print("ready", flush=True)
    for line in sys.stdin:
        verb, *args = line.split()
        if verb == "promote":
            v = store.promote(args[0], "prod")
        elif verb == "rollback":
            v = store.rollback("items", "prod")
        else:
            break
        print(f"moved {v.number}", flush=True)  # committed before this line is written
    store.close()
    """
)


@contextmanager
def mover(home: Path, tmp_path: Path) -> Iterator[Callable[[str], int]]:
    """Another process that moves ``items@prod`` on command; ``move(command)`` returns the version
    prod names once that process has committed the move."""
    script = tmp_path / "mover.py"
    script.write_text(MOVER)
    env = dict(os.environ)
    env.pop("EMBSTORE_FAULT_AFTER", None)
    proc = subprocess.Popen([sys.executable, str(script), str(home)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def move(command: str) -> int:
        proc.stdin.write(command + "\n")
        proc.stdin.flush()
        answer = proc.stdout.readline().split()
        assert answer[:1] == ["moved"], (command, answer, proc.stderr.read() if proc.poll() is not None else "")
        return int(answer[1])

    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        yield move
    finally:
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr.read()


def test_a_move_by_another_process_is_seen_by_the_very_next_call(backend_store, tmp_path):
    """Another process moves prod and says so only after its commit; every read right after must
    see the new version (no time-based cache, no notification that could arrive late)."""
    home, store = backend_store
    for value in (1.0, 2.0, 3.0):
        store.publish("items", constant(value), promote="prod")
    assert store.vectors("items@prod", [0]).matrix[0, 0] == 3.0  # cached from here on
    with mover(home, tmp_path) as move:
        rng = np.random.default_rng(0)
        for i in range(40):
            command = "rollback" if i % 5 == 4 else f"promote items@{int(rng.integers(1, 4))}"
            number = move(command)
            assert store.vectors("items@prod", [0, 5]).matrix[0, 0] == float(number), (i, command)
            assert store.recall("items@prod", ids=[3], k=2)[0].ids
            assert store.resolve("items@prod").number == number


def test_a_pin_reads_its_version_and_its_refresh_sees_every_move_by_another_process(backend_store, tmp_path,
                                                                                   monkeypatch):
    """A pin answers from the version it holds whatever the alias does since; ``refresh()`` right
    after another process's committed move gives a pin of the new version, and while nothing
    moved it is the same pin, for one change-counter read and no registry query."""
    home, store = backend_store
    for value in (1.0, 2.0, 3.0):
        store.publish("items", constant(value), promote="prod")
    pin = store.pin("items@prod")
    assert pin.version.number == 3 and pin.vectors([0]).matrix[0, 0] == 3.0
    calls = _count_resolves(store, monkeypatch)
    for _ in range(20):
        assert pin.refresh() is pin
        assert pin.vectors([0]).matrix[0, 0] == 3.0
    assert calls == []
    with mover(home, tmp_path) as move:
        for i, command in enumerate(["promote items@1", "promote items@2", "promote items@2", "rollback",
                                     "promote items@3", "rollback"]):
            held = pin.version.number
            number = move(command)
            assert pin.vectors([0]).matrix[0, 0] == float(held)  # a pin never moves by itself
            fresh = pin.refresh()
            assert fresh.version.number == number, (i, command)
            assert fresh.vectors([0, 5]).matrix[0, 0] == float(number)
            assert (fresh is pin) == (number == held)
            assert pin.vectors([0]).matrix[0, 0] == float(held)  # the old pin still reads its version
            pin = fresh


def test_a_pin_answers_as_the_store_does(tmp_path):
    from embstore.errors import ConfigError, UnknownIdsError

    store = EmbeddingStore.init(tmp_path / "home", progress=False)
    rng = np.random.default_rng(1)
    emb = Embeddings(ids=np.arange(200, dtype=np.int64) * 7, vectors=rng.normal(size=(200, 8)).astype(np.float32))
    for index in ("flat", "hnsw", "ivf"):
        store.publish(f"items_{index}", emb, promote="prod", retriever_config={"index": index})
        ref = f"items_{index}@prod"
        pin = store.pin(ref)
        ids = [7, 14, 700, "21"]
        assert pin.recall(ids=ids, k=5) == store.recall(ref, ids=ids, k=5)
        assert pin.recall(ids=ids, k=5, exclude=[28, 35]) == store.recall(ref, ids=ids, k=5, exclude=[28, 35])
        assert pin.recall(ids=[7], k=5, exclude_query=False)[0].ids[0] == 7
        assert pin.recall(ids=[7], k=500)[0].ids == store.recall(ref, ids=[7], k=500)[0].ids
        assert len(pin.recall(ids=[7], k=500)[0].ids) == 199
        queries = rng.normal(size=(3, 8)).astype(np.float32)
        assert pin.recall(vectors=queries, k=4) == store.recall(ref, vectors=queries, k=4)
        got = pin.vectors([14, 3, 7], allow_missing=True)
        assert got.ids == [14, 7] and got.missing == [3]
        assert np.array_equal(got.matrix, emb.vectors[[2, 1]])
        with pytest.raises(UnknownIdsError, match="1 query ids are not in items_.*@1: 3"):
            pin.recall(ids=[3], k=2)
        with pytest.raises(ConfigError, match="exactly one of"):
            pin.recall(k=2)
        with pytest.raises(ConfigError, match="k must be a positive integer"):
            pin.recall(ids=[7], k=0)
        with pytest.raises(ConfigError, match="dimension 3"):
            pin.recall(vectors=np.zeros(3), k=2)
    pinned_version = store.pin(store.resolve("items_flat@1"))
    store.publish("items_flat", emb, promote="prod")
    assert pinned_version.refresh() is pinned_version  # a pin of a resolved version stays on it
    store.close()


def test_a_refresh_catches_files_replaced_under_a_pin(tmp_path):
    from embstore.errors import IntegrityError

    store = EmbeddingStore.init(tmp_path / "home", progress=False)
    v = store.publish("items", constant(1.0), promote="prod")
    pin = store.pin("items@prod")
    path = Path(v.storage_path) / "vectors.npy"
    replacement = tmp_path / "other.npy"
    np.save(replacement, np.full((N_IDS, DIM), 9.0, dtype=np.float32))
    os.replace(replacement, path)
    assert pin.vectors([0]).matrix[0, 0] == 1.0  # what was checked when pinned
    with pytest.raises(IntegrityError, match="vectors.npy does not match"):
        pin.refresh()
    store.close()


def test_damage_after_a_cached_read_is_still_caught(tmp_path):
    """The loaded vectors are reused while their files keep size, modification time and inode."""
    from embstore.errors import IntegrityError

    store = EmbeddingStore.init(tmp_path / "home", progress=False)
    v = store.publish("items", constant(1.0), promote="prod")
    store.vectors("items@prod", [0])
    path = Path(v.storage_path) / "vectors.npy"
    replacement = tmp_path / "other.npy"
    np.save(replacement, np.full((N_IDS, DIM), 9.0, dtype=np.float32))
    os.replace(replacement, path)  # same size, a new inode
    with pytest.raises(IntegrityError, match="vectors.npy does not match"):
        store.vectors("items@prod", [0])
    store.close()


# -- LoadedVectors.rows --------------------------------------------------------------------


def reference_rows(ids: np.ndarray, wanted) -> tuple[np.ndarray, list]:
    """The loop rows() replaced (plus OverflowError, which it let escape for float('inf'))."""
    row_of = {k: i for i, k in enumerate(ids.tolist())}
    rows, missing = [], []
    int_ids = ids.dtype.kind in "iu"
    for raw in wanted:
        key = raw
        if int_ids:
            try:
                key = int(raw)
            except (TypeError, ValueError, OverflowError):
                missing.append(raw)
                continue
        else:
            key = str(raw)
        r = row_of.get(key)
        if r is None:
            missing.append(raw)
        else:
            rows.append(r)
    return np.asarray(rows, dtype=np.int64), missing


INT_IDS = np.arange(0, 600, 3, dtype=np.int64) - 90
TEXT_IDS = np.array([f"s{i}" for i in range(150)] + ["7", "True", "1.5", "-3", ""], dtype=object)


def _same(loaded: LoadedVectors, wanted) -> None:
    got_rows, got_missing = loaded.rows(wanted)
    want_rows, want_missing = reference_rows(loaded.ids, wanted)
    assert got_rows.dtype == np.int64
    np.testing.assert_array_equal(got_rows, want_rows)
    assert [repr(m) for m in got_missing] == [repr(m) for m in want_missing]


ODD = [3, "3", " 3 ", "3.0", 3.9, -3.2, True, False, None, [3], (3,), 10**30, -(10**30), 2**63, float("inf"),
       float("nan"), np.int64(9), np.uint64(12), np.float32(12.5), b"3", "x", "", "-90", 7, "7", "True", "1.5", "s4"]


@pytest.mark.parametrize("which", ["int", "text"])
@pytest.mark.parametrize("size", [0, 1, SMALL_LOOKUP, SMALL_LOOKUP + 1, 100])
def test_rows_match_the_loop_on_odd_ids(which, size):
    ids = INT_IDS if which == "int" else TEXT_IDS
    loaded = LoadedVectors(ids=ids, vectors=np.zeros((len(ids), 2), dtype=np.float32))
    rng = np.random.default_rng(size)
    pool = ODD + ids[rng.integers(0, len(ids), size=20)].tolist()
    for _ in range(20):
        _same(loaded, [pool[i] for i in rng.integers(0, len(pool), size=size)])
    _same(loaded, ids[rng.integers(0, len(ids), size=size)].tolist())  # all known, batch path
    _same(loaded, ids[rng.integers(0, len(ids), size=size)])  # a numpy array in


@pytest.mark.parametrize("array", [np.arange(-5, 40, dtype=np.int64), np.arange(0, 40, dtype=np.uint64),
                                   np.arange(0, 30, dtype=np.float64) / 2, np.array([2**64 - 1, 3] * 6, dtype=np.uint64),
                                   np.array([True, False] * 6), np.array(["3", "6", "x"] * 4)])
def test_rows_of_numpy_arrays_match_the_loop(array):
    _same(LoadedVectors(ids=INT_IDS, vectors=np.zeros((len(INT_IDS), 2), dtype=np.float32)), array)


@pytest.mark.parametrize("which", ["int", "text"])
def test_the_first_small_lookups_scan_and_agree_with_the_index(which):
    """A process that asks for an id or two (embstore recall) answers by scanning the ids: no hash
    index built, no pandas; later lookups use the index, with the same answers."""
    ids = INT_IDS if which == "int" else TEXT_IDS
    wanted = [ids[5], "nope", ids[-1], 10**30, ids[0]]
    loaded = LoadedVectors(ids=ids, vectors=np.zeros((len(ids), 2), dtype=np.float32))
    for _ in range(SCANNED_LOOKUPS):
        _same(loaded, wanted)
    assert "index" not in loaded.__dict__
    _same(loaded, wanted)
    assert "index" in loaded.__dict__


id_values = st.one_of(
    st.integers(min_value=-100, max_value=700), st.integers(), st.text(max_size=4),
    st.integers(min_value=-100, max_value=700).map(str), st.floats(allow_nan=True), st.booleans(), st.none(),
    st.sampled_from(TEXT_IDS.tolist()),
)


@settings(max_examples=300, deadline=None)
@given(wanted=st.lists(id_values, max_size=40))
def test_rows_match_the_loop_for_any_ids(wanted):
    for ids in (INT_IDS, TEXT_IDS):
        _same(LoadedVectors(ids=ids, vectors=np.zeros((len(ids), 2), dtype=np.float32)), wanted)


def test_vectors_come_back_in_request_order_with_unknown_ids_listed_in_order(store):
    emb = Embeddings(ids=np.arange(0, 2000, 2, dtype=np.int64),
                     vectors=np.random.default_rng(3).normal(size=(1000, DIM)).astype(np.float32))
    store.publish("items", emb)
    wanted = [998, "4", 3, 0, 1998, "nope", 5, 998] * 10
    got = store.vectors("items", wanted, allow_missing=True)
    known = [int(w) for w in wanted if w not in (3, "nope", 5)]
    assert got.ids == known and got.missing == [3, "nope", 5] * 10
    np.testing.assert_array_equal(got.matrix, emb.vectors[[k // 2 for k in known]])
    assert got.matrix.dtype == np.float32 and type(got.matrix) is np.ndarray


def test_first_lookups_from_many_threads_at_once():
    """pandas builds an Index's hash table lazily and not thread-safely: threads doing their first
    lookup at once used to see a half-built table ('Reindexing only valid with uniquely valued Index
    objects', once in a team-backend concurrency run); LoadedVectors builds it under a lock."""
    import threading

    ids = np.arange(200_000, dtype=np.int64) * 3
    wanted = list(range(0, 300, 3))
    for _ in range(20):
        loaded = LoadedVectors(ids=ids, vectors=np.zeros((len(ids), 2), dtype=np.float32))
        barrier, errors, results = threading.Barrier(4), [], []

        def lookup():
            barrier.wait()
            try:
                results.append(loaded.rows(wanted)[0].tolist())
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(repr(exc))

        threads = [threading.Thread(target=lookup) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and results == [list(range(100))] * 4
