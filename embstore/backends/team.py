"""The team backend: shared servers, so many job hosts publish into one store.

The version registry and Feast's SQL registry live in PostgreSQL (``postgres_url``;
embstore's tables in schema ``schema``, Feast's unprefixed tables in
``<schema>_feast``), Feast's online store in Redis (``redis_url``).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from embstore.backends.base import FEAST_CACHE_SECONDS, Backend
from embstore.backends.schema import ensure_pg_schema, pg_advisory_lock
from embstore.errors import ConfigError, EmbstoreError


class TeamBackend(Backend):
    name = "team"

    def validate(self) -> None:
        if not (self.settings.postgres_url and self.settings.redis_url):
            raise ConfigError("store settings: backend 'team' needs postgres_url and redis_url "
                              "(embstore init --postgres URL --redis URL)")

    @property
    def feast_schema(self) -> str:
        return f"{self.settings.schema_name}_feast"

    def registry_url(self) -> str:
        return self.settings.registry_url or with_search_path(self.settings.postgres_url, self.settings.schema_name)

    def feast_registry_url(self) -> str:
        return with_search_path(self.settings.postgres_url, self.feast_schema)

    def feast_config(self, data_dir: Path) -> dict[str, Any]:
        return {
            "registry": {"registry_type": "sql", "path": self.feast_registry_url(), "cache_ttl_seconds": FEAST_CACHE_SECONDS,
                         "sqlalchemy_config_kwargs": {"pool_pre_ping": True}},
            "online_store": {"type": "redis", "connection_string": redis_connection_string(self.settings.redis_url)},
        }

    def prepare(self) -> None:
        ensure_pg_schema(self.feast_registry_url())

    @contextmanager
    def feast_init_lock(self, repo: Path) -> Iterator[None]:
        """A PostgreSQL advisory lock: hosts that open a fresh store at once take turns creating
        Feast's registry tables (Feast's create_all races otherwise: pg_type unique violations)."""
        with pg_advisory_lock(self.feast_registry_url(), self.feast_schema):  # one lock per team store
            yield

    def check_online_store(self, data_dir: Path) -> str:
        import redis

        host, port = redis_address(self.settings.redis_url)
        try:
            redis.Redis(host=host, port=port, socket_connect_timeout=3).ping()
        except redis.RedisError as exc:
            raise EmbstoreError(f"Redis at {host}:{port} unreachable: {exc}; start it or fix redis_url") from None
        return f"Redis at {host}:{port} answers"

    def describe(self) -> str:
        return f"team (PostgreSQL schema {self.settings.schema_name}, Redis)"


def with_search_path(url: str, schema: str) -> str:
    """The URL with libpq's search_path set, so unprefixed tables land in ``schema``."""
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    return parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


def redis_connection_string(url: str) -> str:
    """Feast's redis form ``host:port[,db=N]`` from ``redis://host:port/N`` (or pass it through)."""
    if "://" not in url:
        return url
    from urllib.parse import urlparse

    parsed = urlparse(url)
    out = f"{parsed.hostname or '127.0.0.1'}:{parsed.port or 6379}"
    db = parsed.path.strip("/")
    if db:
        out += f",db={int(db)}"
    if parsed.password:
        out += f",password={parsed.password}"
    return out


def redis_address(url: str) -> tuple[str, int]:
    host, _, rest = redis_connection_string(url).partition(":")
    return host, int(rest.split(",")[0] or 6379)
