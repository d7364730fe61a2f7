"""Mistakes a job makes, each caught where the cause is known, before anything is trained or stored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import MOVIELENS, clustered_embeddings
from embstore.cli import cli
from embstore.demo_data import planted_interactions
from embstore.errors import ConfigError, InputError


def invoke(home: Path, *args: str):
    return CliRunner().invoke(cli, ["--home", str(home), *args])


@pytest.fixture
def renamed(tmp_path: Path) -> Path:
    """Interactions with MovieLens's column names."""
    path = tmp_path / "ratings.csv"
    frame = planted_interactions(users=120, clusters=4, items_per_cluster=15, seed=3)
    frame.rename(columns={"user_id": "userId", "item_id": "movieId"}).to_csv(path, index=False)
    return path


def test_export_writes_the_format_its_name_says_or_refuses(store, tmp_path):
    store.publish("items", clustered_embeddings())
    with pytest.raises(ConfigError, match=r"cannot export to vec.npy: name it .parquet .* or .npz"):
        store.export("items", tmp_path / "vec.npy")
    assert not (tmp_path / "vec.npy").exists()
    store.export("items", tmp_path / "vec.npz")
    with np.load(tmp_path / "vec.npz") as saved:
        np.testing.assert_array_equal(saved["vectors"], store.vectors("items", saved["ids"]).matrix)
    assert pd.read_parquet(store.export("items", tmp_path / "vec.parquet")).columns.tolist() == ["id", "vector"]
    result = invoke(store.home, "export", "items", str(tmp_path / "v.npy"))
    assert result.exit_code == 1 and "error: cannot export to v.npy" in result.output


def test_pipeline_check_finds_missing_evaluator_files_and_compose_sources(store, renamed, tmp_path):
    def check(body: str):
        (tmp_path / "job.yaml").write_text(body)
        return invoke(store.home, "pipeline", str(tmp_path / "job.yaml"), "--check")

    train = (f"  - set: items\n    producer: item2vec\n    inputs: {{interactions: {renamed}}}\n"
             "    columns: {interactions: {user_id: userId, item_id: movieId}}\n")
    missing = check("sets:\n" + train + "    evaluate: {hit_rate: {path: heldout.csv}}\n")
    assert missing.exit_code == 1 and "evaluator 'hit_rate' path" in missing.output and "does not exist" in missing.output
    typo = check("sets:\n  - set: both\n    compose: [itemz@prod, items@prod]\n")
    assert typo.exit_code == 1 and "compose source itemz@prod: unknown embedding set 'itemz'" in typo.output
    ok = check("sets:\n" + train + "    promote: prod\n  - set: both\n    compose: [items@prod, items@1]\n")
    assert ok.exit_code == 0, ok.output  # sources an earlier step builds


def test_hit_rate_reads_its_file_with_the_runs_column_mapping(store, renamed):
    cli_run = invoke(store.home, "run", "item2vec", "--set", "items", "--input", f"interactions={renamed}",
                     "--column", "interactions.user_id=userId", "--column", "interactions.item_id=movieId",
                     "--config", "epochs=1", "--evaluate", f"hit_rate:path={renamed},k=10", "--gate", "hr@10>=0")
    assert cli_run.exit_code == 0, cli_run.output
    assert "hr@10" in store.versions("items")[-1].metrics["evaluation"]
    other = renamed.with_name("heldout.csv")
    pd.read_csv(renamed).rename(columns={"userId": "uid"}).to_csv(other, index=False)
    failed = invoke(store.home, "run", "item2vec", "--set", "items", "--input", f"interactions={renamed}",
                    "--column", "interactions.user_id=userId", "--column", "interactions.item_id=movieId",
                    "--config", "epochs=1", "--evaluate", f"hit_rate:path={other}")
    assert failed.exit_code == 1 and "map it with columns={user_id: NAME} in the hit_rate config" in failed.output
    assert "--column" not in failed.output.split("map it with", 1)[1]


def test_a_gate_without_an_evaluator_is_refused_before_training(store, renamed):
    result = invoke(store.home, "run", "item2vec", "--set", "items", "--input", f"interactions={renamed}",
                    "--column", "interactions.user_id=userId", "--column", "interactions.item_id=movieId",
                    "--gate", "hr@10>=0.05", "--promote", "prod")
    assert result.exit_code == 1 and "no evaluator is given to produce it" in result.output
    assert store.sets() == []


def test_leave_last_out_takes_movielens_column_names():
    from embstore_plugins.evaluators import leave_last_out

    ratings = pd.read_csv(MOVIELENS / "ratings.csv", nrows=5000)
    train, full = leave_last_out(ratings, min_rating=3.5)
    assert len(full) == (ratings["rating"] >= 3.5).sum() and len(train) == len(full) - full["userId"].nunique()
    with pytest.raises(InputError, match=r"leave_last_out needs a 'timestamp' column .* columns=\{'timestamp'"):
        leave_last_out(ratings.rename(columns={"timestamp": "when"}))
    train2, _ = leave_last_out(ratings.rename(columns={"timestamp": "when"}), columns={"timestamp": "when"})
    assert len(train2) == len(ratings) - ratings["userId"].nunique()
