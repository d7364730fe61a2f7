"""Damaged version files are caught by checksum with an error naming the file; nothing
serves wrong vectors silently. (tests/test_store.py covers a truncated index.faiss and a
flipped byte in vectors.npy on recall/vectors; this covers the other files, the other
readers, damage that still parses, warm caches, and the consistency checker.)"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from conftest import clustered_embeddings
from embstore.cli import cli
from embstore.ops.consistency import check_store
from embstore.errors import IntegrityError
from embstore.store import EmbeddingStore


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


def _plausible(path):
    """Replace the file by a well-formed one of the same shape holding other values."""
    name = path.name
    if name == "vectors.npy":
        v = np.load(path)
        np.save(path, v[::-1].copy())
    elif name == "ids.parquet":
        t = pq.read_table(path)
        pq.write_table(pa.table({"id": t.column("id").to_pylist()[::-1]}, schema=t.schema), path)
    elif name == "embeddings.parquet":
        df = pd.read_parquet(path)
        df["embedding"] = list(reversed(df["embedding"].tolist()))
        df.to_parquet(path, index=False)
    elif name == "index.json":
        path.write_text(path.read_text().replace('"metric": "cosine"', '"metric": "ip"'))
    else:
        raw = path.read_bytes()
        path.write_bytes(raw[:-8] + bytes(b ^ 0xFF for b in raw[-8:]))


DAMAGE = {"truncated": _truncate, "flipped_byte": _flip, "plausible_but_different": _plausible}


def _reader(name):
    """The read path that must notice damage to each file."""
    rows = pd.DataFrame({"item_id": [1, 2], "event_timestamp": pd.Timestamp.now(tz="UTC")})
    return {
        "ids.parquet": [lambda s: s.vectors("items@prod", [1]), lambda s: s.recall("items@prod", ids=[1], k=3),
                        lambda s: s.export("items@prod", s.home / "out.parquet")],
        "vectors.npy": [lambda s: s.vectors("items@prod", [1]), lambda s: s.join(rows, "items@prod"),
                        lambda s: s.export("items@prod", s.home / "out.parquet")],
        "embeddings.parquet": [lambda s: s.join(rows, "items@prod")],
        "index/index.faiss": [lambda s: s.recall("items@prod", ids=[1], k=3),
                              lambda s: s.recall("items@prod", vectors=np.ones((1, 16)), k=3)],
        "index/index.json": [lambda s: s.recall("items@prod", ids=[1], k=3)],
    }[name]


FILES = ["ids.parquet", "vectors.npy", "embeddings.parquet", "index/index.faiss", "index/index.json"]


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("name", FILES)
def test_damaged_file_is_named_on_load_and_by_the_checker(home, name, damage):
    store = EmbeddingStore.init(home, progress=False)
    emb = clustered_embeddings()
    store.publish("items", emb, promote="prod")
    store.publish("other", clustered_embeddings(seed=5))  # an intact set, untouched by the damage
    store.close()
    path = home / "sets" / "items" / "v1" / name
    DAMAGE[damage](path)

    fresh = EmbeddingStore(home, progress=False)
    for read in _reader(name):
        with pytest.raises(IntegrityError) as err:
            read(fresh)
        message = str(err.value)
        assert str(path) in message and "checksum" in message, message
        assert len(message.splitlines()) == 1
    np.testing.assert_array_equal(fresh.vectors("other", [4]).matrix[0], clustered_embeddings(seed=5).vectors[4])

    report = check_store(fresh)
    assert [(f.area, f.ref) for f in report.inconsistencies] == [("files", "items@1")], report.inconsistencies
    assert str(path) in report.inconsistencies[0].message
    fresh.close()


def test_damage_after_a_warm_read_is_still_caught(home):
    """A process that already read a version (cached, memory-mapped) notices a later change."""
    store = EmbeddingStore.init(home, progress=False)
    emb = clustered_embeddings()
    store.publish("items", emb, promote="prod")
    np.testing.assert_array_equal(store.vectors("items@prod", [3]).matrix[0], emb.vectors[3])
    assert store.recall("items@prod", ids=[3], k=3)[0].ids
    directory = home / "sets" / "items" / "v1"
    _plausible(directory / "vectors.npy")
    with pytest.raises(IntegrityError, match="vectors.npy does not match its recorded checksum"):
        store.vectors("items@prod", [3])
    with pytest.raises(IntegrityError, match="vectors.npy"):
        store.recall("items@prod", ids=[3], k=3)
    _plausible(directory / "ids.parquet")
    with pytest.raises(IntegrityError, match="ids.parquet"):
        store.vectors("items@prod", [3])
    store.publish("joined", clustered_embeddings(seed=2), promote="prod")
    rows = pd.DataFrame({"item_id": [1, 2], "event_timestamp": pd.Timestamp.now(tz="UTC")})
    assert store.join(rows, "joined@prod")["joined_embedding"].notna().all()  # verified once, then remembered
    store.join(rows, "joined@prod")
    _plausible(home / "sets" / "joined" / "v1" / "embeddings.parquet")
    with pytest.raises(IntegrityError, match="embeddings.parquet does not match its recorded checksum"):
        store.join(rows, "joined@prod")
    store.close()


def test_missing_file_is_named(home):
    store = EmbeddingStore.init(home, progress=False)
    store.publish("items", clustered_embeddings(), promote="prod")
    path = home / "sets" / "items" / "v1" / "vectors.npy"
    path.unlink()
    with pytest.raises(IntegrityError, match="vectors.npy is missing"):
        store.vectors("items@prod", [0])
    report = check_store(store)
    assert len(report.inconsistencies) == 1 and "vectors.npy is missing" in report.inconsistencies[0].message
    store.close()


def test_checker_finds_feast_and_registry_disagreements(home):
    """Damage that no file checksum covers: a wrong online row, a lost feature view, strays."""
    store = EmbeddingStore.init(home, progress=False)
    emb = clustered_embeddings()
    store.publish("items", emb, promote="prod")
    v2 = store.publish("items", clustered_embeddings(seed=2))
    assert check_store(store).ok

    runner = CliRunner()
    result = runner.invoke(cli, ["--home", str(home), "check"])
    assert result.exit_code == 0 and result.output.startswith("ok: "), result.output

    # the online store serves other vectors for one id of v1
    from embstore.backends.files import offline_frame

    wrong = clustered_embeddings(seed=9)
    frame = offline_frame(wrong.validated(), "item_id", store.resolve("items@1").created_at).iloc[[5]]
    store.feast.write_online("items__v1", frame)
    # v2's feature view disappears; a stray directory appears
    store.feast.delete_version("items", 2)
    (home / "sets" / "items" / "v9").mkdir()

    report = check_store(store, online_sample=100)
    found = {(f.area, f.ref) for f in report.inconsistencies}
    assert found == {("online", "items@1"), ("feast", v2.ref), ("files", str(home / "sets" / "items" / "v9"))}, report.inconsistencies
    assert any("id 5" in f.message for f in report.inconsistencies)

    result = runner.invoke(cli, ["--home", str(home), "check", "--online-sample", "100"])
    assert result.exit_code == 1
    assert "items__v2 is missing" in result.output and "INCONSISTENT: " in result.output, result.output
    result = runner.invoke(cli, ["--home", str(home), "check", "--json"])
    assert result.exit_code == 1 and json.loads(result.output)["ok"] is False
    store.close()
