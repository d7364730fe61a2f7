"""Training joins a ranking model needs: valid-from times, pinned / as-of / live joins, one rule for
times, named key columns, wide output, and the `embstore join` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import clustered_embeddings
from embstore.cli import cli
from embstore.demo_data import planted_interactions
from embstore.errors import ConfigError, InputError

T0 = 1_700_000_000  # planted_interactions: user u's events start at T0 + u * 10_000 seconds


@pytest.fixture
def interactions(tmp_path: Path) -> Path:
    path = tmp_path / "interactions.csv"
    planted_interactions(users=120, clusters=4, items_per_cluster=15, seed=3).to_csv(path, index=False)
    return path


def _run(store, interactions, **options):
    return store.run("item2vec", "items", {"interactions": interactions}, {"epochs": 1, "dim": 8}, **options)


def _stamp(seconds: int) -> pd.Timestamp:
    return pd.Timestamp(seconds, unit="s", tz="UTC")


def test_a_version_is_valid_from_the_end_of_its_training_data(store, interactions):
    newest = pd.read_csv(interactions)["timestamp"].max()
    v = _run(store, interactions)
    assert v.valid_from == _stamp(newest) and v.created_at > v.valid_from
    cut = T0 + 60 * 10_000
    until = _run(store, interactions, until=cut)
    assert until.valid_from == _stamp(cut)
    kept = pd.read_csv(interactions)
    kept = kept[kept["timestamp"] < cut]
    assert until.count == kept["item_id"].nunique()  # trained on the rows before the cutoff only
    published = store.publish("other", clustered_embeddings(string_ids=True))  # no input times: valid from the build
    assert published.valid_from == published.created_at


def test_valid_from_earlier_than_the_newest_input_row_is_refused_and_nothing_is_stored(store, interactions):
    with pytest.raises(ConfigError, match="earlier than the newest input row"):
        _run(store, interactions, valid_from=T0)
    assert store.sets() == []
    later = _run(store, interactions, valid_from="2030-01-01T00:00:00Z")
    assert later.valid_from == pd.Timestamp("2030-01-01", tz="UTC")
    with pytest.raises(InputError, match="no interaction is dated before"):
        _run(store, interactions, until="2000-01-01")


def test_valid_from_in_versions_text_and_json(home, interactions):
    runner = CliRunner()
    base = ["--home", str(home)]
    assert runner.invoke(cli, [*base, "init"]).exit_code == 0
    run = runner.invoke(cli, [*base, "run", "item2vec", "--set", "items", "--input", f"interactions={interactions}",
                              "--config", "epochs=1", "--until", "2023-11-20T00:00:00Z"])
    assert run.exit_code == 0, run.output
    listing = runner.invoke(cli, [*base, "versions", "items"]).stdout
    assert "valid from (UTC)" in listing and "2023-11-20 00:00:00" in listing
    (row,) = json.loads(runner.invoke(cli, [*base, "versions", "items", "--json"]).stdout)
    assert row["valid_from"] == "2023-11-20T00:00:00+00:00"
    refused = runner.invoke(cli, [*base, "run", "item2vec", "--set", "items", "--input", f"interactions={interactions}",
                                  "--valid-from", "1700000000"])
    assert refused.exit_code == 1 and "earlier than the newest input row" in refused.output


def test_pinned_join_gives_rows_from_valid_from_on_in_order_with_unknown_ids_none(store, interactions):
    cut = T0 + 60 * 10_000
    v = _run(store, interactions, until=cut)
    items = store.load(v).ids.tolist()
    rows = pd.DataFrame({"movie": [items[0], "nope", items[1], items[2]],
                         "ts": [cut - 1, cut, cut, cut + 5_000_000]},  # integer unix seconds, as inputs read them
                        index=[10, 11, 12, 13])
    joined = store.join(rows, "items@1", on="movie", timestamp_column="ts")
    assert list(joined.index) == [10, 11, 12, 13] and list(joined["movie"]) == list(rows["movie"])
    got = joined["items_embedding"].tolist()
    assert got[0] is None and got[1] is None  # before valid-from; unknown id
    np.testing.assert_array_equal(got[2], store.vectors("items@1", [items[1]]).matrix[0])
    assert got[3].dtype == np.float32
    for times in (pd.to_datetime(rows["ts"], unit="s"),  # tz-naive datetimes are UTC
                  pd.to_datetime(rows["ts"], unit="s", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")):
        again = store.join(rows.assign(ts=times.to_numpy()), "items@1", on="movie", timestamp_column="ts")
        assert [x is None for x in again["items_embedding"]] == [True, True, False, False]


def test_wide_output_and_bad_input_are_clear(store, interactions):
    v = _run(store, interactions)
    ids = store.load(v).ids.tolist()[:3]
    rows = pd.DataFrame({"item_id": ids + ["nope"], "event_timestamp": [v.valid_from] * 4})
    wide = store.join(rows, "items", wide=True)
    columns = [f"items_embedding_{j}" for j in range(v.dim)]
    assert list(wide.columns) == ["item_id", "event_timestamp", *columns]
    assert all(wide[c].dtype == np.float32 for c in columns) and wide.iloc[3][columns].isna().all()
    np.testing.assert_array_equal(wide.iloc[:3][columns].to_numpy(), store.vectors(v, ids).matrix)
    with pytest.raises(InputError, match="join needs columns 'movieId'"):
        store.join(rows, "items", on="movieId")
    with pytest.raises(InputError, match="'soon' is not a number or ISO-8601 time"):
        store.join(rows.assign(event_timestamp=["soon"] * 4), "items")


def test_as_of_join_follows_retrains_point_in_time(store, interactions):
    cuts = [T0 + k * 30 * 10_000 for k in (1, 2, 3)]
    versions = [_run(store, interactions, until=c) for c in cuts]
    shared = set(store.load(versions[0]).ids.tolist())
    item = sorted(shared)[0]
    times = [cuts[0] - 1, cuts[0], cuts[1] + 1, cuts[2] + 10]
    rows = pd.DataFrame({"item_id": [item] * 4, "event_timestamp": times})
    joined = store.join(rows, "items", as_of=True)
    assert joined["items_embedding_version"].tolist() == [pd.NA, 1, 2, 3]
    for i, v in zip(range(1, 4), versions):
        np.testing.assert_array_equal(joined["items_embedding"][i], store.vectors(v, [item]).matrix[0])
    assert joined["items_embedding"][0] is None
    with pytest.raises(ConfigError, match="give a set name"):
        store.join(rows, "items@2", as_of=True)


def test_as_of_join_picks_the_later_cutoff_not_the_later_build(store, interactions):
    """A backfill run after a newer version: rows get the version valid at their time, whatever
    the order the versions were built in."""
    late, early = _run(store, interactions, until=T0 + 90 * 10_000), _run(store, interactions, until=T0 + 30 * 10_000)
    item = store.load(early).ids.tolist()[0]
    rows = pd.DataFrame({"item_id": [item, item], "event_timestamp": [T0 + 50 * 10_000, T0 + 100 * 10_000]})
    assert store.join(rows, "items", as_of=True)["items_embedding_version"].tolist() == [early.number, late.number]


def test_pinned_join_agrees_with_feasts_own_point_in_time_join(store, interactions):
    """The join reads embstore's copy of the vectors; Feast's historical retrieval over the
    version's FeatureView gives the same vectors for the rows it returns."""
    v = _run(store, interactions, until=T0 + 60 * 10_000)
    ids = store.load(v).ids.tolist()[:20]
    rows = pd.DataFrame({"item_id": ids * 2,
                         "event_timestamp": [_stamp(T0)] * 20 + [_stamp(T0 + 61 * 10_000)] * 20})
    ours = store.join(rows, "items@1")
    theirs = store.feast.store.get_historical_features(entity_df=rows, features=[f"{v.feature_view}:embedding"]).to_df()
    theirs = theirs.merge(rows.reset_index(), on=["item_id", "event_timestamp"]).set_index("index").sort_index()
    for i, row in theirs.iterrows():
        if row["embedding"] is None or (isinstance(row["embedding"], float) and np.isnan(row["embedding"])):
            assert ours["items_embedding"][i] is None
        else:
            np.testing.assert_array_equal(np.asarray(row["embedding"], dtype=np.float32), ours["items_embedding"][i])
    assert ours["items_embedding"][:20].isna().all() and ours["items_embedding"][20:].notna().all()


def test_join_command_reads_and_writes_parquet_and_csv(home, interactions, tmp_path):
    runner = CliRunner()
    base = ["--home", str(home)]
    runner.invoke(cli, [*base, "init"])
    for cut in ("2023-11-16", "2023-11-22"):
        assert runner.invoke(cli, [*base, "run", "item2vec", "--set", "items", "--input",
                                   f"interactions={interactions}", "--config", "epochs=1", "--until", cut]).exit_code == 0
    events = pd.read_csv(interactions).rename(columns={"item_id": "movieId", "timestamp": "ts"})
    events.to_parquet(tmp_path / "rows.parquet")
    out = runner.invoke(cli, [*base, "join", "items", str(tmp_path / "rows.parquet"), str(tmp_path / "out.parquet"),
                              "--as-of", "--on", "movieId", "--timestamp-column", "ts"])
    assert out.exit_code == 0, out.output
    joined = pd.read_parquet(tmp_path / "out.parquet")
    assert len(joined) == len(events) and list(joined["movieId"]) == list(events["movieId"])
    assert set(joined["items_embedding_version"].dropna()) == {1, 2} and joined["items_embedding"].isna().any()
    csv = runner.invoke(cli, [*base, "join", "items@2", str(tmp_path / "rows.parquet"), str(tmp_path / "out.csv"),
                              "--on", "movieId", "--timestamp-column", "ts", "--wide"])
    assert csv.exit_code == 0, csv.output
    wide = pd.read_csv(tmp_path / "out.csv")
    assert {"items_embedding_0", "items_embedding_63"} <= set(wide.columns) and len(wide) == len(events)
    bad = runner.invoke(cli, [*base, "join", "items", str(tmp_path / "rows.parquet"), str(tmp_path / "out.npy")])
    assert bad.exit_code == 2 and "use a .parquet or .csv file" in bad.output
