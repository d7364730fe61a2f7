"""A store's home and its config file, HOME/embstore.yaml.

Two backends, one switch (``backend``):

- ``embedded`` (default, no server): SQLite registry file, Feast repo with a file
  registry, parquet offline store and SQLite online store, all under HOME.
- ``team``: the version registry and Feast's SQL registry on PostgreSQL
  (``postgres_url``; embstore's tables in schema ``schema``, Feast's unprefixed
  tables in ``<schema>_feast``), and Feast's online store on Redis (``redis_url``).
  Vector files and indexes stay under HOME (a shared volume for many job hosts).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml

from embstore.config import PluginConfig, parse_config
from embstore.errors import ConfigError

CONFIG_FILE = "embstore.yaml"
HOME_ENV = "EMBSTORE_HOME"
IDENT = re.compile(r"^[a-z][a-z0-9_]{0,50}$")


class StoreSettings(PluginConfig):
    backend: Literal["embedded", "team"] = pydantic.Field(
        "embedded", description="embedded: files under HOME, no server; team: PostgreSQL + Redis"
    )
    registry_url: str | None = pydantic.Field(
        None, description="SQLAlchemy URL of the version registry (default: HOME/registry.db, or postgres_url for team)"
    )
    postgres_url: str | None = pydantic.Field(
        None, description="team: SQLAlchemy URL of the PostgreSQL database, e.g. postgresql+psycopg://user@host:5432/db"
    )
    schema_name: str = pydantic.Field(
        "embstore", alias="schema", description="team: PostgreSQL schema of embstore's tables; Feast's go to <schema>_feast"
    )
    redis_url: str | None = pydantic.Field(None, description="team: Redis of Feast's online store, redis://host:port[/db]")
    project: str = pydantic.Field("embstore", description="Feast project name (namespaces Feast's registry rows and Redis keys)")
    feature_repo: str = pydantic.Field("feature_repo", description="Feast repo directory, relative to HOME unless absolute")
    retriever: str = pydantic.Field("faiss", description="default retriever plugin for new versions")
    retriever_config: dict[str, Any] = pydantic.Field(
        default_factory=dict, description="default retriever config, e.g. {index: hnsw, metric: cosine}"
    )
    plugins: list[str] = pydantic.Field(
        default_factory=list, description="extra plugin modules to load by import path (development)"
    )

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, validate_default=True, populate_by_name=True)

    @pydantic.model_validator(mode="after")
    def _team_needs_servers(self) -> "StoreSettings":
        if self.backend == "team" and not (self.postgres_url and self.redis_url):
            raise ValueError("backend 'team' needs postgres_url and redis_url")
        for name in ("schema_name", "project"):
            if not IDENT.match(getattr(self, name)):
                raise ValueError(f"{name} {getattr(self, name)!r} must be lower-case letters, digits and '_'")
        return self

    def registry_url_for(self, home: Path) -> str:
        if self.registry_url:
            return self.registry_url
        if self.backend == "team":
            return with_search_path(self.postgres_url, self.schema_name)
        return f"sqlite:///{home / 'registry.db'}"

    def feast_schema(self) -> str:
        return f"{self.schema_name}_feast"

    def repo_path(self, home: Path) -> Path:
        repo = Path(self.feature_repo)
        return repo if repo.is_absolute() else home / repo


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


def resolve_home(home: str | os.PathLike | None) -> Path:
    if home is None:
        home = os.environ.get(HOME_ENV)
    if not home:
        raise ConfigError(f"no store home: pass --home DIR or set {HOME_ENV}")
    return Path(home).expanduser().resolve()


def load_settings(home: Path) -> StoreSettings:
    path = home / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"{home} is not an embstore home ({CONFIG_FILE} missing); run `embstore --home {home} init`")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of settings")
    return parse_config(StoreSettings, raw, str(path))


def write_default_settings(home: Path, overrides: dict[str, Any] | None = None) -> StoreSettings:
    settings = parse_config(StoreSettings, overrides or {}, "store settings")
    path = home / CONFIG_FILE
    if not path.exists():
        body = {k: v for k, v in settings.model_dump(by_alias=True).items() if v not in (None, [], {})}
        path.write_text(
            "# embstore settings; see README.md. backend: team with postgres_url and redis_url for shared servers.\n"
            + yaml.safe_dump(body, sort_keys=False)
        )
    return settings
