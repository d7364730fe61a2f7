"""gbdt_leaf: leaves agree with LightGBM's own predict, publish through the store with the
leaves readable from Feast, the leaf sketch estimates shared leaves, determinism, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embstore.config import parse_config
from embstore.errors import ConfigError, InputError
from embstore.inputs import Inputs, InputSpec
from embstore_plugins.gbdt_leaf import GBDTLeaf, GBDTLeafConfig, leaf_sketch


def table(n: int = 600, seed: int = 0, unlabelled: int = 0) -> pd.DataFrame:
    """Two numeric columns, a string column and an integer-coded column; the label depends on all."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "user": [f"u{i:04d}" for i in range(n)],
        "age": rng.integers(18, 70, n),
        "spend": rng.gamma(2.0, 10.0, n).round(2),
        "city": rng.choice(["paris", "lyon", "nice", "lille"], n),
        "segment": rng.integers(0, 5, n),
    })
    logit = 0.05 * (frame.age - 40) + 0.08 * (frame.spend - 20) + 1.5 * (frame.city == "nice") - frame.segment % 2
    frame["clicked"] = (logit + rng.logistic(size=n) > 0).astype(float)
    frame.loc[: unlabelled - 1, "clicked"] = np.nan
    return frame


def fit(path: Path, **config):
    cfg = parse_config(GBDTLeafConfig, {"label": "clicked", "id": "user", "threads": 1, "trees": 20, **config},
                       "gbdt_leaf")
    producer = GBDTLeaf()
    return producer, producer.fit(Inputs([InputSpec("table", path)]), cfg, progress=False)


@pytest.fixture
def csv(tmp_path) -> Path:
    path = tmp_path / "table.csv"
    table(unlabelled=50).to_csv(path, index=False)
    return path


def test_leaves_agree_with_lightgbm_predict(csv):
    producer, emb = fit(csv, categorical=["segment"], early_stopping_rounds=3, trees=60)
    raw = pd.read_csv(csv)
    X = raw[["age", "spend", "city", "segment"]].astype({"city": "category", "segment": "category"})
    best = producer.booster_.best_iteration
    assert 0 < best == emb.metadata["trees_used"] <= 60
    expected = producer.booster_.predict(X, pred_leaf=True, num_iteration=best)
    np.testing.assert_array_equal(emb.extras["leaves"], expected)
    assert emb.extras["leaves"].shape == (600, best)
    assert list(emb.ids) == raw.user.tolist()
    meta = emb.metadata
    assert meta["categorical"] == ["city", "segment"] and meta["objective"] == "binary"
    assert (meta["rows_embedded"], meta["rows_embed_only"]) == (600, 50)
    assert meta["rows_trained"] + meta["rows_validation"] == 550 and meta["rows_validation"] == 55
    assert meta["valid_binary_logloss"] < 0.69


def test_published_through_the_store_with_leaves_in_feast(store, csv):
    v = store.run("gbdt_leaf", "users_gbdt", {"table": csv},
                  {"label": "clicked", "id": "user", "trees": 8, "threads": 1, "dim": 32},
                  entity="user", promote="prod")
    assert (v.status, v.count, v.dim, v.entity, v.id_type) == ("published", 600, 32, "user", "string")
    assert v.metrics["trees_used"] == 8
    fs = store.feast.store
    fs.refresh_registry()
    got = fs.get_online_features(
        features=[f"{v.feature_view}:leaves", f"{v.feature_view}:embedding"],
        entity_rows=[{"user": "u0003"}, {"user": "u0100"}],
    ).to_dict()
    producer, local = fit(csv, trees=8, dim=32)
    rows = [3, 100]
    assert got["leaves"] == local.extras["leaves"][rows].tolist()
    np.testing.assert_allclose(np.array(got["embedding"]), local.vectors[rows], rtol=1e-6)
    np.testing.assert_array_equal(store.vectors("users_gbdt@prod", ["u0003"]).matrix, local.vectors[[3]])
    [hit] = store.recall("users_gbdt@prod", ids=["u0003"], k=3)
    assert len(hit.ids) == 3 and "u0003" not in hit.ids


def test_sketch_inner_product_estimates_the_share_of_shared_leaves():
    rng = np.random.default_rng(0)
    trees, per_tree = 200, 16
    a = rng.integers(0, per_tree, (300, trees)).astype(np.int32)
    b = a.copy()
    share = rng.uniform(0, 1, 300)
    change = rng.uniform(size=a.shape) > share[:, None]
    b[change] = (b[change] + rng.integers(1, per_tree, change.sum())) % per_tree  # a different leaf
    true = (a == b).mean(1)
    sa, sb = leaf_sketch(a, per_tree, 256, seed=1), leaf_sketch(b, per_tree, 256, seed=1)
    estimate = (sa * sb).sum(1)
    assert abs((estimate - true).mean()) < 0.02
    assert np.abs(estimate - true).max() < 0.35
    assert np.corrcoef(estimate, true)[0, 1] > 0.9
    np.testing.assert_allclose((sa * sa).sum(1).mean(), 1.0, atol=0.05)
    np.testing.assert_array_equal(sa, leaf_sketch(a, per_tree, 256, seed=1, chunk_rows=7))


def test_same_seed_same_embedding(csv):
    _, a = fit(csv, seed=5)
    _, b = fit(csv, seed=5)
    _, c = fit(csv, seed=6)
    np.testing.assert_array_equal(a.extras["leaves"], b.extras["leaves"])
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert not np.array_equal(a.vectors, c.vectors)


def test_regression_row_number_ids_and_chosen_features(tmp_path):
    frame = table(n=300)
    frame["clicked"] = frame.spend * 2 + frame.age
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    producer, emb = fit(path, id=None, features=["age", "spend"], trees=5)
    assert emb.metadata["objective"] == "regression" and "train_l2" in emb.metadata
    assert emb.metadata["features"] == ["age", "spend"] and emb.metadata["categorical"] == []
    np.testing.assert_array_equal(emb.ids, np.arange(300))
    expected = producer.booster_.predict(frame[["age", "spend"]], pred_leaf=True)
    np.testing.assert_array_equal(emb.extras["leaves"], expected)


def test_progress_bar_shows_the_metric(csv, capsys):
    cfg = parse_config(GBDTLeafConfig, {"label": "clicked", "id": "user", "trees": 5, "threads": 1}, "g")
    GBDTLeaf().fit(Inputs([InputSpec("table", csv)]), cfg, progress=True)
    err = capsys.readouterr().err
    assert "gbdt" in err and "train binary_logloss" in err


@pytest.mark.parametrize("change, config, match", [
    (lambda f: f.drop(columns="clicked"), {}, "no label column 'clicked'.*--config label=NAME"),
    (lambda f: f.drop(columns="user"), {}, "no id column 'user'"),
    (lambda f: f.assign(user=["u1"] * len(f)), {}, "data row 2: 'u1' is a duplicate id"),
    (lambda f: f.assign(when=pd.Timestamp("2024-01-01")), {}, "column 'when' has type datetime64"),
    (lambda f: f.assign(clicked=f.clicked * 3), {"objective": "binary"}, "is not 0 or 1"),
    (lambda f: f.assign(clicked="yes"), {}, "'yes' is not a number"),
    (lambda f: f.assign(clicked=np.nan), {}, "every value of label column 'clicked' is empty"),
    (lambda f: f.assign(clicked=1.0), {}, "one class only"),
    (lambda f: f, {"features": ["age", "height"]}, r"features \['height'\] are not columns"),
    (lambda f: f.head(5), {"early_stopping_rounds": 2, "validation_fraction": 0.01}, "leaves 0 for validation"),
])
def test_bad_tables_are_input_errors(tmp_path, change, config, match):
    path = tmp_path / "t.parquet"
    change(table(n=200)).to_parquet(path)
    with pytest.raises(InputError, match=match):
        fit(path, **config)


def test_categorical_must_name_a_feature_and_hold_integers_or_strings(tmp_path):
    path = tmp_path / "t.parquet"
    table(n=100).to_parquet(path)
    with pytest.raises(ConfigError, match=r"categorical \['spend'\] are not feature columns"):
        fit(path, categorical=["spend"], features=["age"])
    with pytest.raises(InputError, match="column 'spend' has type float64; categorical columns must hold"):
        fit(path, categorical=["spend"])


def test_object_column_of_lists_is_refused(tmp_path):
    frame = table(n=50).assign(tags=[["a"]] * 50)
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    with pytest.raises(InputError, match="column 'tags' has type object holding mixed values"):
        fit(path)


@pytest.mark.parametrize("values, match", [
    ({"trees": 0}, "trees=0"),
    ({"leaves": 1}, "leaves=1"),
    ({"label": "y", "id": "y"}, "id and label name the same column"),
    ({"features": ["label", "x"]}, "features must not include the label column"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"tree": 5}, "unknown key 'tree'"),
])
def test_bad_config_values_are_config_errors(values, match):
    with pytest.raises(ConfigError, match=match):
        parse_config(GBDTLeafConfig, values, "producer 'gbdt_leaf'")


@pytest.fixture
def split(tmp_path):
    """The 600-row table as training rows (the 550 labelled) and new rows (the 50 unlabelled, no label column)."""
    frame = table(unlabelled=50)
    frame.to_csv(tmp_path / "all.csv", index=False)
    frame.iloc[50:].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[:50].drop(columns="clicked").to_csv(tmp_path / "new.csv", index=False)
    return tmp_path


def test_infer_gives_new_rows_what_fit_gives_embed_only_rows(split):
    config = {"categorical": ["segment"], "trees": 15, "dim": 32}
    cfg = parse_config(GBDTLeafConfig, {"label": "clicked", "id": "user", "threads": 1, **config}, "gbdt_leaf")
    _, together = fit(split / "all.csv", **config)
    _, trained = fit(split / "train.csv", **config)
    new = GBDTLeaf().infer(trained.state, Inputs([InputSpec("table", split / "new.csv")]), cfg)
    assert list(new.ids) == list(together.ids[:50])
    np.testing.assert_array_equal(new.extras["leaves"], together.extras["leaves"][:50])
    np.testing.assert_array_equal(new.vectors, together.vectors[:50])


def test_infer_publishes_new_rows_with_their_leaves(store, split):
    config = {"label": "clicked", "id": "user", "trees": 8, "threads": 1, "dim": 32}
    v1 = store.run("gbdt_leaf", "users_gbdt", {"table": split / "train.csv"}, config, entity="user", promote="prod")
    new = store.infer("users_gbdt@prod", {"table": split / "new.csv"})
    v2 = store.publish_inferred("users_gbdt@prod", new, promote="prod")
    assert (v1.count, v2.count) == (550, 600)
    fs = store.feast.store
    fs.refresh_registry()
    got = fs.get_online_features(features=[f"{v2.feature_view}:leaves"],
                                 entity_rows=[{"user": "u0003"}, {"user": "u0100"}]).to_dict()
    old = fs.get_online_features(features=[f"{v1.feature_view}:leaves"], entity_rows=[{"user": "u0100"}]).to_dict()
    assert got["leaves"][0] == new.extras["leaves"][3].tolist()  # a new row
    assert got["leaves"][1] == old["leaves"][0]  # a trained row keeps its leaves
    np.testing.assert_allclose(store.vectors("users_gbdt@prod", ["u0003"]).matrix[0], new.vectors[3], rtol=1e-6)


def test_infer_through_the_cli_writes_the_leaves(home, split):
    from click.testing import CliRunner

    from embstore.cli import cli

    def invoke(*args):
        result = CliRunner().invoke(cli, ["--home", str(home), *args])
        assert result.exit_code == 0, result.output
        return result

    invoke("init")
    invoke("run", "gbdt_leaf", "--set", "users", "--entity", "user", "--input", f"table={split / 'train.csv'}",
           "--config", "label=clicked", "--config", "id=user", "--config", "trees=6", "--config", "threads=1")
    out = split / "new_leaves.parquet"
    invoke("infer", "users", "--input", f"table={split / 'new.csv'}", "--out", str(out))
    written = pd.read_parquet(out)
    assert list(written.columns) == ["id", "vector", "leaves"] and len(written) == 50
    _, trained = fit(split / "train.csv", trees=6)
    cfg = parse_config(GBDTLeafConfig, {"label": "clicked", "id": "user", "threads": 1, "trees": 6}, "gbdt_leaf")
    expected = GBDTLeaf().infer(trained.state, Inputs([InputSpec("table", split / "new.csv")]), cfg)
    assert [list(v) for v in written.leaves] == expected.extras["leaves"].tolist()


def test_infer_errors(split):
    _, trained = fit(split / "train.csv", trees=5)
    cfg = parse_config(GBDTLeafConfig, {"label": "clicked", "id": "user", "threads": 1}, "gbdt_leaf")
    frame = pd.read_csv(split / "new.csv")
    frame.drop(columns="spend").to_csv(split / "no_spend.csv", index=False)
    with pytest.raises(InputError, match="no column 'spend', which the trees were trained on"):
        GBDTLeaf().infer(trained.state, Inputs([InputSpec("table", split / "no_spend.csv")]), cfg)
    frame.assign(age=[f"a{i}" for i in range(len(frame))]).to_csv(split / "text_age.csv", index=False)
    with pytest.raises(InputError, match="column 'age' was numeric in training"):
        GBDTLeaf().infer(trained.state, Inputs([InputSpec("table", split / "text_age.csv")]), cfg)
    by_row = parse_config(GBDTLeafConfig, {"label": "clicked", "id": None}, "gbdt_leaf")
    with pytest.raises(ConfigError, match="needs an id column"):
        GBDTLeaf().infer(trained.state, Inputs([InputSpec("table", split / "new.csv")]), by_row)


def test_store_requires_the_table_input(store, tmp_path):
    with pytest.raises(InputError, match="needs input.*'table'"):
        store.run("gbdt_leaf", "g", {})


def test_gbdt_leaf_passes_the_conformance_kit():
    from embstore.testing import check_producer

    assert check_producer(GBDTLeaf).ok
