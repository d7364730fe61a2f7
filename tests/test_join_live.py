"""Point in time across versions: a live join gives each row the version its alias named at the
row's timestamp (by alias history), through Feast's point-in-time join, on both backends."""

from __future__ import annotations

import time
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import clustered_embeddings
from embstore.errors import ConfigError, NotFoundError
from embstore.versions.joins import live_versions


@given(
    moves=st.lists(st.tuples(st.integers(0, 1000), st.integers(1, 5)), min_size=1, max_size=12),
    rows=st.lists(st.integers(-50, 1100), min_size=1, max_size=40),
)
@settings(max_examples=300, deadline=None)
def test_live_versions_is_the_last_move_at_or_before_each_row(moves, rows):
    moves = sorted(moves, key=lambda m: m[0])  # history order; equal times keep their order
    times = np.array([t for t, _ in moves], dtype=np.int64)
    versions = np.array([v for _, v in moves], dtype=np.int64)
    got = live_versions(rows, times, versions)
    for t, v in zip(rows, got.tolist()):
        earlier = [ver for when, ver in moves if when <= t]
        assert v == (earlier[-1] if earlier else -1)
        if v != -1:  # never a version the alias moved to after the row
            assert min(when for when, ver in moves if ver == v) <= t


@pytest.fixture
def store(any_store):
    return any_store


def test_randomized_timeline_no_row_sees_a_later_version(store):
    rng = np.random.default_rng(11)
    embs = {}
    for n in (1, 2, 3):
        embs[n] = clustered_embeddings(seed=n, per_cluster=4)
        store.publish("items", embs[n])
    # a random walk of promotes and rollbacks of prod
    store.promote(f"items@{rng.integers(1, 4)}", "prod")
    for _ in range(7):
        time.sleep(0.02)
        history = store.alias_history("items")
        if rng.random() < 0.3 and history[-1]["previous"] is not None:
            store.rollback("items", "prod")
        else:
            store.promote(f"items@{rng.integers(1, 4)}", "prod")
    history = store.alias_history("items")
    moved = [(pd.Timestamp(h["moved_at"]), h["version"]) for h in history]
    published = {v.number: pd.Timestamp(v.published_at) for v in store.versions("items")}

    stamps = [moved[0][0] - timedelta(hours=1), moved[0][0] - timedelta(microseconds=1), moved[-1][0] + timedelta(days=1)]
    for when, _ in moved:
        stamps += [when, when + timedelta(microseconds=1), when - timedelta(microseconds=1)]
    span = (moved[-1][0] - moved[0][0]).value
    stamps += [moved[0][0] + pd.Timedelta(int(x), "ns") for x in rng.integers(0, span + 1, size=30)]
    ids = rng.integers(0, 20, size=len(stamps)).tolist()
    ids[3] = 777  # an id no version has
    rows = pd.DataFrame({"item_id": ids, "event_timestamp": stamps, "label": np.arange(len(stamps))},
                        index=np.arange(len(stamps)) * 10)
    rows = rows.iloc[rng.permutation(len(rows))]

    out = store.join(rows, "items@prod", live=True)
    assert list(out.index) == list(rows.index) and list(out["label"]) == list(rows["label"])
    assert out["items_embedding_version"].dtype == "Int64"
    for (_, row), vec, served in zip(rows.iterrows(), out["items_embedding"], out["items_embedding_version"]):
        t = row["event_timestamp"]
        live = [v for when, v in moved if when <= t]
        if not live:
            assert vec is None and pd.isna(served)  # before the alias pointed anywhere
            continue
        assert served == live[-1]
        assert published[served] <= t  # never a version published after the row
        if row["item_id"] == 777:
            assert vec is None
        else:
            np.testing.assert_array_equal(vec, embs[served].vectors[row["item_id"]])


def test_live_join_needs_an_alias_and_takes_a_column_name(store):
    store.publish("items", clustered_embeddings(per_cluster=4), promote="prod")
    rows = pd.DataFrame({"item_id": [1], "event_timestamp": [pd.Timestamp.now(tz="UTC") + timedelta(hours=1)]})
    with pytest.raises(ConfigError, match="follows an alias's history: give set@alias"):
        store.join(rows, "items@1", live=True)
    with pytest.raises(NotFoundError, match="no alias 'canary'"):
        store.join(rows, "items@canary", live=True)
    out = store.join(rows, "items@prod", live=True, column="emb")
    assert list(out.columns) == ["item_id", "event_timestamp", "emb", "emb_version"] and out["emb_version"][0] == 1
