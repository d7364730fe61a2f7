"""Cold start: a version saves its producer's state; `infer` embeds new entities from it,
and the result publishes and recalls like any other version."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from embstore.cli import cli
from embstore.errors import ConfigError, IntegrityError
from embstore.catalogue import catalogue

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _side_mean_plugin(monkeypatch):
    monkeypatch.setenv("EMBSTORE_PLUGINS", "dev_plugins.side_mean")
    catalogue(reload=True)
    yield
    monkeypatch.delenv("EMBSTORE_PLUGINS")
    catalogue(reload=True)


@pytest.fixture
def side_files(tmp_path):
    old = tmp_path / "items.csv"
    pd.DataFrame({"item_id": [f"i{k}" for k in range(40)],
                  "genre": ["Comedy" if k % 2 else "Drama|Crime" for k in range(40)]}).to_csv(old, index=False)
    new = tmp_path / "new_items.csv"
    pd.DataFrame({"item_id": ["cold_comedy", "cold_drama"], "genre": ["Comedy", "Drama|Crime"]}).to_csv(new, index=False)
    return old, new


def test_infer_publish_and_recall_cold_items(store, side_files):
    old, new = side_files
    v1 = store.run("side_mean", "items", {"side_info": old}, promote="prod")
    assert any(k.startswith("state/") for k in v1.checksums)
    emb = store.infer("items@prod", {"side_info": new})
    assert emb.ids.tolist() == ["cold_comedy", "cold_drama"]
    v2 = store.publish_inferred("items@prod", emb, promote="prod")
    assert (v2.number, v2.count, v2.metrics["inferred_from"]) == (2, 42, "items@1")
    [res] = store.recall("items@prod", ids=["cold_comedy"], k=5)
    assert all(int(i[1:]) % 2 == 1 for i in res.ids)  # comedies
    again = store.infer("items@2", {"side_info": new})  # the state travels with the new version
    np.testing.assert_array_equal(again.vectors, emb.vectors)


def test_infer_through_the_cli(home, side_files, tmp_path):
    old, new = side_files
    runner = CliRunner()
    assert runner.invoke(cli, ["--home", str(home), "init"]).exit_code == 0
    assert runner.invoke(cli, ["--home", str(home), "run", "side_mean", "--set", "items",
                               "--input", f"side_info={old}"]).exit_code == 0
    out = tmp_path / "cold.parquet"
    result = runner.invoke(cli, ["--home", str(home), "infer", "items", "--input", f"side_info={new}",
                                 "--out", str(out), "--publish", "--promote", "prod"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [str(out), "items@2"]
    assert pd.read_parquet(out)["id"].tolist() == ["cold_comedy", "cold_drama"]


def test_infer_errors(store, side_files, tmp_path):
    from conftest import clustered_embeddings

    old, new = side_files
    store.publish("plain", clustered_embeddings(), entity="plain_id")
    with pytest.raises(ConfigError, match="cannot embed unseen"):
        store.infer("plain", {"side_info": new})
    v = store.run("side_mean", "items", {"side_info": old})
    state = next(Path(v.storage_path, k) for k in v.checksums if k.startswith("state/"))
    state.write_bytes(state.read_bytes()[:-5])
    with pytest.raises(IntegrityError, match="state.pt"):
        store.infer("items", {"side_info": new})
