"""A store's home and its config file, HOME/embstore.yaml.

The embedded default needs no server: SQLite registry file, Feast repo with a
file offline store and SQLite online store, all under HOME. One line
(``registry_url``) points the version registry at PostgreSQL instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pydantic
import yaml

from embstore.config import PluginConfig, parse_config
from embstore.errors import ConfigError

CONFIG_FILE = "embstore.yaml"
HOME_ENV = "EMBSTORE_HOME"


class StoreSettings(PluginConfig):
    registry_url: str | None = pydantic.Field(
        None, description="SQLAlchemy URL of the version registry; default sqlite file HOME/registry.db"
    )
    feature_repo: str = pydantic.Field(
        "feature_repo", description="Feast repo directory, relative to HOME unless absolute"
    )
    retriever: str = pydantic.Field("faiss", description="default retriever plugin for new versions")
    retriever_config: dict[str, Any] = pydantic.Field(
        default_factory=dict, description="default retriever config, e.g. {index: hnsw, metric: cosine}"
    )
    plugins: list[str] = pydantic.Field(
        default_factory=list, description="extra plugin modules to load by import path (development)"
    )


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
        body = {k: v for k, v in settings.model_dump().items() if v not in (None, [], {})}
        path.write_text(
            "# embstore settings; see README.md. registry_url: postgresql+psycopg://... for a team registry.\n"
            + yaml.safe_dump(body, sort_keys=False)
        )
    return settings
