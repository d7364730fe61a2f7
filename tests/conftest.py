from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest

from embstore.embeddings import Embeddings

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MOVIELENS = SHARED_DATA / "ml-latest-small"
CORA = SHARED_DATA / "cora"


POSTGRES_URL = os.environ.get("EMBSTORE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("EMBSTORE_TEST_REDIS", "redis://127.0.0.1:6379/0")
BACKENDS = ["embedded", "team"]


def _team_unavailable() -> str | None:
    """Why the PostgreSQL + Redis backend can't be tested here, or None."""
    try:
        import redis
        import sqlalchemy as sa

        engine = sa.create_engine(POSTGRES_URL, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return f"team backend (PostgreSQL {POSTGRES_URL}, Redis {REDIS_URL}) unreachable: {exc}"
    return None


@pytest.fixture(scope="session")
def team_available() -> None:
    reason = _team_unavailable()
    if reason and os.environ.get("CI") == "true":
        pytest.fail(f"CI requires the server-backed variant: {reason}")
    if reason:
        pytest.skip(reason)


def team_settings() -> dict:
    """Settings of a team-backend store isolated in its own schemas and Feast project."""
    tag = uuid.uuid4().hex[:10]
    return {"backend": "team", "postgres_url": POSTGRES_URL, "redis_url": REDIS_URL,
            "schema": f"t_{tag}", "project": f"p_{tag}"}


def drop_team_store(store) -> None:
    import sqlalchemy as sa

    try:
        store.feast.store.teardown()  # the project's online rows in Redis
    except Exception:  # noqa: BLE001 - cleanup is best effort
        pass
    store.close()
    engine = sa.create_engine(POSTGRES_URL, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        for schema in (store.settings.schema_name, store.backend.feast_schema):
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def store(home: Path):
    """An embedded-default store in a temporary home."""
    from embstore.store import EmbeddingStore

    s = EmbeddingStore.init(home, progress=False)
    yield s
    s.close()


@pytest.fixture(params=BACKENDS)
def any_store(request, home: Path):
    """The same store on each backend: embedded files, and PostgreSQL + Redis (team)."""
    from embstore.store import EmbeddingStore

    if request.param == "embedded":
        s = EmbeddingStore.init(home, progress=False)
        yield s
        s.close()
        return
    request.getfixturevalue("team_available")
    s = EmbeddingStore.init(home, progress=False, **team_settings())
    try:
        yield s
    finally:
        drop_team_store(s)


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


@pytest.fixture(scope="module")
def spark_available():
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI requires the spark engine's tests: {exc}")
        pytest.skip(f"pyspark is not installed (pip install 'embstore[spark]'): {exc}")
