"""A store's home and its settings file, HOME/embstore.yaml, validated when read.

``backend`` names the class that hosts the registries and the online store
(embstore.backends): ``embedded`` (default, no server: files under HOME),
``team`` (PostgreSQL + Redis), or a class path ``package.module:Class`` of a
team's own. The other keys are read by the backend that uses them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pydantic
import yaml

from embstore.config import PluginConfig, parse_config
from embstore.errors import ConfigError

CONFIG_FILE = "embstore.yaml"
HOME_ENV = "EMBSTORE_HOME"
IDENT = re.compile(r"^[a-z][a-z0-9_]{0,50}$")


class StoreSettings(PluginConfig):
    backend: str = pydantic.Field(
        "embedded", min_length=1,
        description="embedded: files under HOME, no server; team: PostgreSQL + Redis; or a class path "
                    "package.module:Class of an embstore.backends.Backend subclass"
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
    engine: str = pydantic.Field(
        "local", min_length=1, description="engine plugin that reads inputs and trains: local (this process) or spark"
    )
    engine_config: dict[str, Any] = pydantic.Field(
        default_factory=dict, description="the engine's config, e.g. {master: 'spark://host:7077', conf: {...}}"
    )

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, validate_default=True, populate_by_name=True)

    @pydantic.field_validator("schema_name", "project")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not IDENT.match(value):
            raise ValueError(f"{value!r} must be lower-case letters, digits and '_'")
        return value

    def repo_path(self, home: Path) -> Path:
        repo = Path(self.feature_repo)
        return repo if repo.is_absolute() else home / repo


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


def parse_settings(values: dict[str, Any] | None) -> StoreSettings:
    return parse_config(StoreSettings, values or {}, "store settings")


def write_default_settings(home: Path, settings: StoreSettings) -> StoreSettings:
    """Write ``settings`` as HOME/embstore.yaml unless the home has one already."""
    path = home / CONFIG_FILE
    if not path.exists():
        body = {k: v for k, v in settings.model_dump(by_alias=True).items() if v not in (None, [], {})}
        path.write_text(
            "# embstore settings; see README.md. backend: team with postgres_url and redis_url for shared servers.\n"
            + yaml.safe_dump(body, sort_keys=False)
        )
    return settings
