from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from embstore.embeddings import Embeddings

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MOVIELENS = SHARED_DATA / "ml-latest-small"
CORA = SHARED_DATA / "cora"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def store(home: Path):
    from embstore.store import EmbeddingStore

    s = EmbeddingStore.init(home, progress=False)
    yield s
    s.close()


def clustered_embeddings(n_clusters: int = 5, per_cluster: int = 20, dim: int = 16, seed: int = 0,
                         string_ids: bool = False) -> Embeddings:
    """Vectors near one of n_clusters random centres; id // per_cluster is the cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim)) * 3
    vecs = np.concatenate([c + rng.normal(scale=0.3, size=(per_cluster, dim)) for c in centres]).astype(np.float32)
    ids = np.arange(n_clusters * per_cluster, dtype=np.int64)
    if string_ids:
        ids = np.array([f"item-{i}" for i in ids], dtype=object)
    return Embeddings(ids=ids, vectors=vecs, metadata={"source": "test"})


@pytest.fixture
def cli_env(home: Path) -> dict:
    env = dict(os.environ)
    env["EMBSTORE_HOME"] = str(home)
    env.pop("EMBSTORE_FAULT_AFTER", None)
    return env
