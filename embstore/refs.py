"""Naming a version: ``set`` (latest published), ``set@3`` (pinned), ``set@prod`` (alias)."""

from __future__ import annotations

import re
from dataclasses import dataclass

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
