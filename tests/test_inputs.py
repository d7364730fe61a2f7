"""Input loading and validation: every bad file gives one InputError naming file, column and row."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from embstore.errors import ConfigError, InputError
from embstore.inputs import (
    INPUT_KINDS,
    Inputs,
    InputSpec,
    parse_column_arg,
    parse_input_arg,
    specs_from_args,
    split_multi,
)

MOVIELENS = Path(__file__).resolve().parents[2] / "shared/data/ml-latest-small/ratings.csv"


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def load(kind: str, path: Path, **columns: str) -> Inputs:
    return Inputs([InputSpec(kind, path, columns)])


def seqs_as_ids(seqs) -> list[list]:
    return [seqs.vocab[s].tolist() for s in seqs]


# ---------------------------------------------------------------- interactions and sequences


def test_sequences_are_time_ordered_per_user_ties_keep_file_order(tmp_path):
    f = write(
        tmp_path / "i.csv",
        "user_id,item_id,timestamp\n"
        "2,30,100\n"
        "1,10,300\n"
        "1,11,100\n"
        "1,12,200\n"
        "2,31,50\n"
        "1,13,200\n",  # tie with item 12: file order keeps 12 first
    )
    seqs = load("interactions", f).sequences()
    assert seqs.vocab.dtype == np.int64 and seqs.codes.dtype == np.int32
    assert seqs.vocab.tolist() == [10, 11, 12, 13, 30, 31]
    assert seqs_as_ids(seqs) == [[11, 12, 13, 10], [31, 30]]  # users in sorted id order


def test_interactions_frame_types_and_defaults(tmp_path):
    f = write(tmp_path / "i.csv", "user_id,item_id,timestamp,rating\n1,5,1.5,4\n2,6,2020-01-02T00:00:00Z,3\n")
    df = load("interactions", f).interactions()
    assert list(df.columns) == ["user_id", "item_id", "timestamp", "weight", "rating"]
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert df["timestamp"].iloc[0] == pd.Timestamp(1.5, unit="s", tz="UTC")
    assert df["timestamp"].iloc[1] == pd.Timestamp("2020-01-02", tz="UTC")
    assert df["weight"].tolist() == [1.0, 1.0] and df["rating"].dtype == np.float64


def test_iso_timestamps_with_offsets_and_naive_times_are_utc(tmp_path):
    f = write(
        tmp_path / "i.csv",
        "user_id,item_id,timestamp\n"
        "u,a,2021-03-01T10:00:00+02:00\n"  # 08:00 UTC
        "u,b,2021-03-01 09:00:00\n"  # naive -> UTC
        "u,c,2021-03-01T07:00:00Z\n",
    )
    seqs = load("interactions", f).sequences()
    assert seqs_as_ids(seqs) == [["c", "a", "b"]]


def test_min_rating_drops_rows_below_threshold(tmp_path):
    f = write(
        tmp_path / "i.csv",
        "user_id,item_id,timestamp,rating\n1,10,1,5\n1,11,2,2\n1,12,3,3.5\n2,13,1,1\n",
    )
    seqs = load("interactions", f).sequences(min_rating=3.5)
    assert seqs_as_ids(seqs) == [[10, 12]]  # user 2 has nothing left: no empty sequence
    assert seqs.vocab.tolist() == [10, 12]


def test_min_rating_without_rating_column_is_an_error(tmp_path):
    f = write(tmp_path / "i.csv", "user_id,item_id,timestamp\n1,10,1\n")
    with pytest.raises(InputError, match=r"i\.csv: min_rating=3.0 needs a rating column"):
        load("interactions", f).sequences(min_rating=3.0)


def test_session_gap_splits_at_gaps_larger_than_it(tmp_path):
    f = write(
        tmp_path / "i.csv",
        "user_id,item_id,timestamp\n1,1,0\n1,2,100\n1,3,201\n1,4,250\n2,5,0\n2,6,1000\n",
    )
    inputs = load("interactions", f)
    assert seqs_as_ids(inputs.sequences(session_gap=100)) == [[1, 2], [3, 4], [5], [6]]
    assert seqs_as_ids(inputs.sequences()) == [[1, 2, 3, 4], [5, 6]]
    with pytest.raises(ConfigError, match="session_gap"):
        inputs.sequences(session_gap=0)


def test_string_ids_and_mixed_ids_stay_strings(tmp_path):
    f = write(tmp_path / "i.csv", "user_id,item_id,timestamp\nalice,7,1\nbob,x,2\n-3,007,3\n")
    df = load("interactions", f).interactions()
    assert df["user_id"].tolist() == ["alice", "bob", "-3"]
    assert df["item_id"].tolist() == ["7", "x", "007"]  # mixed -> all strings, text kept
    seqs = load("interactions", f).sequences()
    assert seqs.vocab.dtype == object and seqs.vocab.tolist() == ["007", "7", "x"]


def test_integer_ids_including_negative_become_int64(tmp_path):
    f = write(tmp_path / "i.csv", "user_id,item_id,timestamp\n-5,9223372036854775807,1\n 3 ,2,2\n")
    df = load("interactions", f).interactions()
    assert df["user_id"].dtype == np.int64 and df["user_id"].tolist() == [-5, 3]
    assert df["item_id"].tolist() == [9223372036854775807, 2]


def test_column_mapping_movielens_style(tmp_path):
    f = write(tmp_path / "r.csv", "userId,movieId,rating,timestamp,extra\n1,10,4.0,5,zz\n1,11,3.0,4,zz\n")
    df = load("interactions", f, user_id="userId", item_id="movieId").interactions()
    assert list(df.columns) == ["user_id", "item_id", "timestamp", "weight", "rating"]
    assert df["item_id"].tolist() == [10, 11]


def test_parquet_and_gzip_inputs(tmp_path):
    frame = pd.DataFrame(
        {
            "uid": [1, 1, 2],
            "item_id": ["a", "b", "a"],
            "timestamp": pd.to_datetime(["2020-01-02", "2020-01-01", "2020-01-01"]),
            "weight": [1.0, 2.0, 3.0],
        }
    )
    pq_path = tmp_path / "i.parquet"
    frame.to_parquet(pq_path)
    seqs = load("interactions", pq_path, user_id="uid").sequences()
    assert seqs_as_ids(seqs) == [["b", "a"], ["a"]]
    gz = tmp_path / "i.csv.gz"
    gz.write_bytes(gzip.compress(b"user_id,item_id,timestamp\n1,2,3\n"))
    assert load("interactions", gz).interactions()["item_id"].tolist() == [2]


# ---------------------------------------------------------------- edges, side info, features, table


def test_edges_share_one_id_space_and_default_weight(tmp_path):
    f = write(tmp_path / "e.csv", "src,dst\n1,2\n2,3\n")
    df = load("edges", f).edges()
    assert df["src"].dtype == np.int64 and df["weight"].tolist() == [1.0, 1.0]
    f2 = write(tmp_path / "e2.csv", "src,dst,weight\n1,a,2.5\n2,b,1\n")
    df2 = load("edges", f2).edges()
    assert df2["src"].tolist() == ["1", "2"] and df2["dst"].tolist() == ["a", "b"]
    assert df2["weight"].tolist() == [2.5, 1.0]


def test_side_info_keeps_strings_and_splits_multi_values(tmp_path):
    f = write(tmp_path / "m.csv", 'movieId,title,genres\n1,"Toy Story",Adventure|Comedy\n2,,\n')
    df = load("side_info", f, item_id="movieId").side_info()
    assert list(df.columns) == ["item_id", "title", "genres"]
    assert df["genres"].tolist() == ["Adventure|Comedy", ""]
    assert split_multi(df["genres"]) == [["Adventure", "Comedy"], []]


def test_dense_features_from_csv_and_sparse_from_npz(tmp_path):
    f = write(tmp_path / "f.csv", "id,a,b\nx,1,2.5\ny,0,-1\n")
    ids, matrix = load("features", f).features()
    assert ids.tolist() == ["x", "y"] and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, [[1, 2.5], [0, -1]])
    npz = tmp_path / "f.npz"
    sp.save_npz(npz, sp.csr_matrix(np.array([[0, 1.0], [2.0, 0]])))
    ids, matrix = load("features", npz).features()
    assert ids.tolist() == [0, 1] and sp.issparse(matrix) and matrix.dtype == np.float32


def test_table_is_read_with_inferred_types(tmp_path):
    f = write(tmp_path / "t.csv", "user,label,price\n1,0,2.5\n2,1,3\n")
    df = load("table", f).table()
    assert df["label"].tolist() == [0, 1] and df["price"].dtype == np.float64


# ---------------------------------------------------------------- CLI parsing and kind checks


def test_parse_input_arg(tmp_path):
    f = write(tmp_path / "e.csv", "src,dst\n1,2\n")
    spec = parse_input_arg(f"edges={f}")
    assert spec == InputSpec("edges", f)
    with pytest.raises(InputError, match="unknown input kind 'graph'.*interactions, edges"):
        parse_input_arg(f"graph={f}")
    with pytest.raises(InputError, match=r"nope\.csv: file not found"):
        parse_input_arg(f"edges={tmp_path / 'nope.csv'}")
    with pytest.raises(InputError, match="KIND=PATH"):
        parse_input_arg("edges")
    with pytest.raises(InputError, match=r"\.csv, \.csv\.gz, \.parquet, \.pq"):
        parse_input_arg(f"edges={write(tmp_path / 'e.txt', 'x')}")


def test_column_args_build_specs(tmp_path):
    f = write(tmp_path / "r.csv", "userId,item_id,timestamp\n1,2,3\n")
    assert parse_column_arg("interactions.user_id=userId") == ("interactions", "user_id", "userId")
    (spec,) = specs_from_args([f"interactions={f}"], ["interactions.user_id=userId"])
    assert spec.columns == {"user_id": "userId"}
    with pytest.raises(InputError, match="no --input edges=PATH"):
        specs_from_args([f"interactions={f}"], ["edges.src=a"])
    with pytest.raises(InputError, match="interactions has no column 'user'"):
        InputSpec("interactions", f, {"user": "userId"})


def test_require_reject_unused_and_duplicate_kinds(tmp_path):
    f = write(tmp_path / "e.csv", "src,dst\n1,2\n")
    inputs = load("edges", f)
    assert inputs.kinds == frozenset({"edges"})
    inputs.require(["edges"], "deepwalk")
    needs = r"producer 'graphsage' needs input\(s\) 'features'; pass --input features=PATH"
    with pytest.raises(InputError, match=needs):
        inputs.require(["edges", "features"], "graphsage")
    with pytest.raises(InputError, match=r"producer 'item2vec' does not use input\(s\) 'edges'"):
        inputs.reject_unused({"interactions"}, "item2vec")
    with pytest.raises(InputError, match="given twice"):
        Inputs([InputSpec("edges", f), InputSpec("edges", f)])
    with pytest.raises(InputError, match="file not found"):
        Inputs([InputSpec("edges", tmp_path / "gone.csv")])
    assert set(INPUT_KINDS) == {"interactions", "edges", "side_info", "features", "table"}


# ---------------------------------------------------------------- one clear error per bad file

BAD_CELLS = [
    # (kind, file text, columns, expected message fragment)
    ("interactions", "user_id,item_id,timestamp\n1,2,3\n1,2,abc\n", {},
     r"i\.csv: column 'timestamp' data row 2: 'abc' is not a number or ISO-8601 time"),
    ("interactions", "user_id,item_id,timestamp\n1,2,2020-01-01\n1,2,2020-13-45\n", {},
     r"column 'timestamp' data row 2: '2020-13-45' is not a number or ISO-8601 time"),
    ("interactions", "user_id,item_id,timestamp\n1,2,1600000000000\n", {},
     r"column 'timestamp' data row 1: '1600000000000' is out of range .*milliseconds"),
    ("interactions", "user_id,item_id,timestamp\n1,2,3\n1,2,nan\n", {},
     r"column 'timestamp' data row 2: 'nan' is not a finite number of unix seconds"),
    ("interactions", "user_id,item_id,timestamp\n1,2,3\n,2,3\n", {},
     r"i\.csv: column 'user_id' data row 2 is empty"),
    ("interactions", "userId,item_id,timestamp\n1,2,3\n1,  ,3\n", {"user_id": "userId"},
     r"column 'item_id' data row 2 is empty"),
    ("interactions", "user_id,item_id,timestamp,rating\n1,2,3,4\n1,2,3,nan\n", {},
     r"column 'rating' data row 2: 'nan' is NaN"),
    ("interactions", "user_id,item_id,timestamp,rating\n1,2,3,4\n1,2,3,good\n1,2,3,nan\n", {},
     r"column 'rating' data row 2: 'good' is not a number"),
    ("interactions", "user_id,item_id,timestamp,w\n1,2,3,inf\n", {"weight": "w"},
     r"column 'w' \(interactions\.weight\) data row 1: 'inf' is infinite"),
    ("edges", "src,dst,weight\n1,2,1\n2,3,0\n", {}, r"column 'weight' data row 2: '0' must be > 0"),
    ("edges", "src,dst,weight\n1,2,-1\n", {}, r"column 'weight' data row 1: '-1' must be > 0"),
    ("edges", "src,dst,weight\n1,2,\n", {}, r"column 'weight' data row 1 is empty"),
    ("side_info", "item_id,genre\n1,a\n2,b\n1,c\n", {},
     r"column 'item_id' data row 3: 1 is a duplicate id \(first at data row 1\)"),
    ("features", "id,a\nx,1\nx,2\n", {}, r"column 'id' data row 2: 'x' is a duplicate id"),
    ("features", "id,a,b\n1,1,2\n2,3,oops\n", {}, r"column 'b' data row 2: 'oops' is not a number"),
    ("features", "id,a\n1,1e60\n", {}, r"column 'a' data row 1: .* does not fit float32"),
]


@pytest.mark.parametrize("kind,text,columns,message", BAD_CELLS)
def test_bad_cells_name_file_column_and_row(tmp_path, kind, text, columns, message):
    name = {"interactions": "i.csv", "edges": "e.csv", "side_info": "s.csv", "features": "f.csv"}[kind]
    f = write(tmp_path / name, text)
    inputs = load(kind, f, **columns)
    with pytest.raises(InputError, match=message):
        getattr(inputs, kind)()


def test_missing_column_lists_found_columns_and_mapping_hint(tmp_path):
    f = write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3,4\n")
    with pytest.raises(InputError) as err:
        load("interactions", f).interactions()
    msg = str(err.value)
    assert "ratings.csv: no column 'user_id'" in msg
    assert "columns found: userId, movieId, rating, timestamp" in msg
    assert "--column interactions.user_id=userId" in msg
    with pytest.raises(InputError, match=r"no column 'uid' \(mapped from interactions\.user_id\)"):
        load("interactions", f, user_id="uid").interactions()


def test_empty_file_and_header_only(tmp_path):
    with pytest.raises(InputError, match=r"e\.csv: file is empty"):
        load("edges", write(tmp_path / "e.csv", "")).edges()
    with pytest.raises(InputError, match=r"h\.csv: no data rows"):
        load("edges", write(tmp_path / "h.csv", "src,dst\n")).edges()
    empty_pq = tmp_path / "h.parquet"
    no_rows = pd.Series([], dtype="int64")
    pd.DataFrame({"src": no_rows, "dst": no_rows}).to_parquet(empty_pq)
    with pytest.raises(InputError, match=r"h\.parquet: no data rows"):
        load("edges", empty_pq).edges()


def test_unreadable_files(tmp_path):
    with pytest.raises(InputError, match=r"x\.parquet: not a readable parquet file"):
        load("edges", write(tmp_path / "x.parquet", "src,dst\n1,2\n")).edges()
    with pytest.raises(InputError, match=r"r\.csv: not a well-formed CSV file.*Expected 2 columns"):
        load("edges", write(tmp_path / "r.csv", "src,dst\n1,2\n3\n")).edges()
    with pytest.raises(InputError, match=r"f\.npz: not a scipy sparse \.npz"):
        load("features", write(tmp_path / "f.npz", b"garbage")).features()
    with pytest.raises(InputError, match=r"cannot read a 'edges' input from this file type"):
        load("edges", write(tmp_path / "e.npz", b"x")).edges()


def test_non_utf8_csv_names_row_and_column(tmp_path):
    f = write(tmp_path / "s.csv", b"item_id,title\n1,ok\n2,caf\xe9\n")
    with pytest.raises(InputError, match=r"s\.csv: column 'title' data row 2: byte 0xe9 is not valid UTF-8"):
        load("side_info", f).side_info()
    g = write(tmp_path / "h.csv", b"item_id,t\xe9\n1,a\n")
    with pytest.raises(InputError, match=r"h\.csv: the header: byte 0xe9 is not valid UTF-8"):
        load("side_info", g).side_info()


def test_nan_in_sparse_features_names_row(tmp_path):
    npz = tmp_path / "f.npz"
    sp.save_npz(npz, sp.csr_matrix(np.array([[1.0, 0], [0, np.nan]])))
    with pytest.raises(InputError, match=r"f\.npz: row 1 \(0-based\) column 1: nan is not finite"):
        load("features", npz).features()


def test_sparse_features_with_ids(tmp_path):
    from embstore.inputs import save_sparse_features

    m = sp.csr_matrix(np.array([[1.0, 0, 2], [0, 3, 0]], np.float32))
    save_sparse_features(tmp_path / "named.npz", m, ids=["n7", "n9"])
    ids, x = load("features", tmp_path / "named.npz").features()
    assert ids.tolist() == ["n7", "n9"] and (x != m).nnz == 0
    save_sparse_features(tmp_path / "numbered.npz", m, ids=[70, 90])
    assert load("features", tmp_path / "numbered.npz").features()[0].tolist() == [70, 90]
    sp.save_npz(tmp_path / "plain.npz", m)  # scipy's own file: row i is node i
    assert load("features", tmp_path / "plain.npz").features()[0].tolist() == [0, 1]
    np.savez(tmp_path / "dup.npz", format=np.array(b"csr"), shape=np.array(m.shape), data=m.data,
             indices=m.indices, indptr=m.indptr, ids=np.array([5, 5]))
    with pytest.raises(InputError, match=r"dup\.npz: column 'ids' data row 2: 5 is a duplicate id"):
        load("features", tmp_path / "dup.npz").features()
    with pytest.raises(InputError, match="3 ids for 2 feature rows"):
        save_sparse_features(tmp_path / "bad.npz", m, ids=[1, 2, 3])


def test_parquet_null_id_names_row(tmp_path):
    f = tmp_path / "e.parquet"
    pd.DataFrame({"src": ["a", None], "dst": ["b", "c"]}).to_parquet(f)
    with pytest.raises(InputError, match=r"e\.parquet: column 'src' data row 2 is empty"):
        load("edges", f).edges()


# ---------------------------------------------------------------- fingerprint


def test_fingerprint_is_stable_and_tracks_bytes_and_mapping(tmp_path):
    f = write(tmp_path / "e.csv", "src,dst\n1,2\n")
    first = load("edges", f).fingerprint()
    assert first == load("edges", f).fingerprint() and len(first) == 64
    moved = write(tmp_path / "copy.csv", f.read_bytes())
    assert load("edges", moved).fingerprint() == first  # content, not location
    assert load("edges", f, src="src").fingerprint() != first
    write(f, "src,dst\n1,3\n")
    assert load("edges", f).fingerprint() != first


# ---------------------------------------------------------------- the real MovieLens file


@pytest.mark.skipif(not MOVIELENS.exists(), reason=f"MovieLens not found at {MOVIELENS}")
def test_movielens_ratings_in_place():
    inputs = load("interactions", MOVIELENS, user_id="userId", item_id="movieId")
    df = inputs.interactions()
    assert len(df) == 100_836 and df["user_id"].nunique() == 610
    all_seqs = inputs.sequences()
    assert len(all_seqs) == 610 and all_seqs.n_tokens == 100_836
    liked = inputs.sequences(min_rating=3.5)
    assert liked.n_tokens == int((df["rating"] >= 3.5).sum()) < 100_836
    assert 0 < len(liked) <= 610
    # each sequence is in time order
    kept = df[df["rating"] >= 3.5].sort_values(["user_id", "timestamp"], kind="stable")
    assert liked.vocab[liked.codes].tolist() == kept["item_id"].tolist()


def test_numbers_and_iso_text_may_mix_in_one_column(tmp_path):
    f = write(
        tmp_path / "i.csv",
        "user_id,item_id,timestamp\n1,a,86400\n1,b,1970-01-01T12:00:00+01:00\n1,c,1970-01-01\n",
    )
    df = load("interactions", f).interactions()
    assert df["timestamp"].tolist() == [
        pd.Timestamp("1970-01-02", tz="UTC"),
        pd.Timestamp("1970-01-01T11:00", tz="UTC"),
        pd.Timestamp("1970-01-01", tz="UTC"),
    ]
    g = write(tmp_path / "j.csv", "user_id,item_id,timestamp\n1,a,86400\n1,b,2020-01-01\n1,c,1e12\n")
    with pytest.raises(InputError, match=r"column 'timestamp' data row 3: '1e12' is out of range"):
        load("interactions", g).interactions()
