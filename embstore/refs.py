"""Naming and describing versions: refs (``set`` latest published, ``set@3`` pinned,
``set@prod`` an alias) and the read-only ``VersionInfo`` snapshot every API returns."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from embstore.errors import ConfigError

SET_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
ALIAS_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")


def check_set_name(name: str) -> str:
    if not SET_NAME.match(name or "") or "__" in name:
        raise ConfigError(
            f"set name {name!r} is not valid: use letters, digits and single underscores, "
            "starting with a letter (e.g. item_item2vec)"
        )
    return name


def check_alias_name(name: str) -> str:
    if not ALIAS_NAME.match(name or ""):
        raise ConfigError(
            f"alias {name!r} is not valid: start with a letter, then letters, digits, '_' or '-' (e.g. prod)"
        )
    return name


@dataclass(frozen=True)
class Ref:
    set: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Ref":
        name, sep, tag = str(text).partition("@")
        check_set_name(name)
        if not sep:
            return cls(name)
        if tag.isdigit():
            return cls(name, version=int(tag))
        if not tag:
            raise ConfigError(f"ref {text!r} ends with '@': name a version (set@3) or an alias (set@prod)")
        return cls(name, alias=check_alias_name(tag))

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.set}@{self.version}"
        if self.alias is not None:
            return f"{self.set}@{self.alias}"
        return self.set


@dataclass(frozen=True)
class VersionInfo:
    """A detached, read-only snapshot of a version row, safe to pass around."""

    set: str
    number: int
    status: str
    step: str | None
    producer: str
    plugin: str
    plugin_version: str
    config: dict[str, Any]
    retriever: str
    retriever_config: dict[str, Any]
    input_fingerprint: str | None
    id_type: str | None
    dim: int | None
    count: int | None
    metrics: dict[str, Any]
    storage_path: str | None
    feature_view: str | None
    checksums: dict[str, str]
    error: str | None
    entity: str
    created_at: datetime
    published_at: datetime | None
    aliases: tuple[str, ...] = ()
    aligned_to: str | None = None  # pinned ref of the version it was rotated onto, if aligned
    valid_from: datetime | None = None  # training rows at or after this time may use the vectors

    @property
    def ref(self) -> str:
        return f"{self.set}@{self.number}"

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key in ("created_at", "published_at", "valid_from"):
            out[key] = out[key].isoformat() if out[key] else None
        out["aliases"] = list(self.aliases)
        out["ref"] = self.ref
        return out
