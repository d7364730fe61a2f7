"""What every plugin class is held to, producer or retriever: its name and its Config.

``PluginSubject`` is the context these checks (and the producer and retriever
checks built on it) receive: the class, the config values the kit uses, the
parsed config, and a scratch directory.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping

from embstore.config import PluginConfig, parse_config
from embstore.errors import ConfigError
from embstore.testing.runner import Check, Failed, Subject, check

UNKNOWN_KEY = "no_such_option_for_conformance"


class PluginSubject(Subject):
    """A plugin class under test, with what its checks share.

    cls:      the class (or whatever the caller passed in its place).
    config:   config values over the class's ``conformance_config`` and the Config's defaults.
    workdir:  where files go (a temporary directory, removed by ``close``, by default).
    """

    kind: ClassVar[str] = "plugin"           # "producer" or "retriever"
    base: ClassVar[type] = object            # the class a plugin subclasses
    config_base: ClassVar[type[PluginConfig]] = PluginConfig
    example_name: ClassVar[str] = "name"     # a good name, for the message of a bad one

    def __init__(self, cls: Any, config: Mapping[str, Any] | None = None, *,
                 workdir: str | Path | None = None) -> None:
        super().__init__()
        self.cls = cls
        self.overrides = dict(config or {})
        self._workdir = Path(workdir) if workdir is not None else None
        self._root: Path | None = None
        self._cleanup: weakref.finalize | None = None

    @property
    def id(self) -> str:  # type: ignore[override]
        return f"{self.kind}:{getattr(self.cls, 'name', None) or getattr(self.cls, '__name__', '?')}"

    @property
    def label(self) -> str:  # type: ignore[override]
        cls = self.cls
        return (f"{self.kind} {getattr(cls, 'name', '?')!r} ({getattr(cls, '__module__', '?')}."
                f"{getattr(cls, '__qualname__', cls)!s})")

    def title_fields(self) -> dict[str, str]:
        return {"base": self.base.__name__, "config_base": self.config_base.__name__}

    @property
    def is_subclass(self) -> bool:
        return isinstance(self.cls, type) and issubclass(self.cls, self.base)

    @property
    def config_class(self) -> type[PluginConfig]:
        """``cls.Config``, when it is a proper Config class."""
        return self.needs(check_config_class)

    @property
    def values(self) -> dict:
        """The config values the kit fits with: ``conformance_config`` updated by ``config=``."""
        return self.needs(check_conformance_config)

    @property
    def config(self) -> Any:
        """``values`` parsed by the Config."""
        return self.needs(check_config_parses)

    def parse(self, values: Mapping[str, Any]) -> Any:
        return parse_config(self.cls.Config, values, f"{self.kind} {self.cls.name!r}")

    @property
    def root(self) -> Path:
        """The directory for the kit's files, made on first use."""
        if self._root is None:
            if self._workdir is not None:
                self._root = self._workdir
            else:
                self._root = Path(tempfile.mkdtemp(prefix="embstore-conformance-"))
                self._cleanup = weakref.finalize(self, shutil.rmtree, self._root, ignore_errors=True)
            self._root.mkdir(parents=True, exist_ok=True)
        return self._root

    def close(self) -> None:
        """Remove the temporary directory (a given ``workdir`` is left in place)."""
        if self._cleanup is not None:
            self._cleanup()

    def __enter__(self) -> "PluginSubject":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def name_ok(name: Any) -> bool:
    """A plugin name: letters, digits, '_' or '-'."""
    return isinstance(name, str) and bool(name) and name.replace("_", "").replace("-", "").isalnum()


@check("class: is a {base} subclass")
def check_is_subclass(s: PluginSubject) -> None:
    if not s.is_subclass:
        raise Failed(f"{s.cls!r} is not a {s.base.__name__} subclass (pass the class itself)")


@check("class: name")
def check_name(s: PluginSubject) -> None:
    name = getattr(s.cls, "name", None)
    if not name_ok(name):
        raise Failed(f"name must be a string of letters, digits, '_' or '-', e.g. {s.example_name!r}; "
                     f"got {name!r}")


@check("config: is a {config_base}")
def check_config_class(s: PluginSubject) -> type[PluginConfig]:
    config_cls = getattr(s.cls, "Config", None)
    base = s.config_base
    if not (isinstance(config_cls, type) and issubclass(config_cls, base)):
        raise Failed(f"{s.cls.__name__}.Config must be a {base.__name__} subclass, got {config_cls!r}")
    if config_cls.model_config.get("extra") != "forbid":
        raise Failed(f"{config_cls.__name__} allows extra keys; keep PluginConfig's extra='forbid'")
    return config_cls


@check("config: every field has a default")
def check_defaults(s: PluginSubject) -> None:
    config_cls = s.config_class
    required = [n for n, f in config_cls.model_fields.items() if f.is_required()]
    if required:
        raise Failed(f"{config_cls.__name__} fields without a default: {', '.join(required)}; "
                     "every option needs one so `embstore run` works with no --config")
    config_cls()


@check("config: every field has a description")
def check_descriptions(s: PluginSubject) -> None:
    config_cls = s.config_class
    missing = [n for n, f in config_cls.model_fields.items() if not (f.description or "").strip()]
    if missing:
        raise Failed(f"{config_cls.__name__} fields without a description: {', '.join(missing)}; "
                     "use pydantic.Field(default, description='...')")


@check("config: unknown key is a ConfigError")
def check_unknown_key(s: PluginSubject) -> None:
    try:
        parse_config(s.config_class, {UNKNOWN_KEY: 1}, f"{s.kind} {s.cls.name!r}")
    except ConfigError as exc:
        if UNKNOWN_KEY not in str(exc):
            raise Failed(f"ConfigError does not name the unknown key: {exc}") from None
        return
    raise Failed(f"config key {UNKNOWN_KEY!r} was accepted; unknown keys must be a ConfigError")


@check("config: conformance_config is a dict")
def check_conformance_config(s: PluginSubject) -> dict:
    base = getattr(s.cls, "conformance_config", None) or {}
    if not isinstance(base, Mapping):
        raise Failed(f"{s.cls.__name__}.conformance_config must be a dict, got {type(base).__name__}")
    return {**dict(base), **s.overrides}


@check("config: the test config parses")
def check_config_parses(s: PluginSubject) -> Any:
    s.config_class
    values = s.values
    try:
        return s.parse(values)
    except ConfigError as exc:
        raise Failed(f"the kit's config {dict(values)!r} is rejected: {exc}") from None


@check("config: JSON round trip (as stored in the version row)")
def check_json_round_trip(s: PluginSubject) -> None:
    cfg = s.config
    dumped = cfg.model_dump(mode="json")
    again = s.parse(dumped)
    if again != cfg:
        raise Failed(f"config {dumped} read back from JSON is {again.model_dump(mode='json')}; the version "
                     "row stores the config as JSON, so it must read back the same")


def config_checks(s: PluginSubject) -> Iterator[Check]:
    """The Config checks, in the order the report lists them."""
    for fn in (check_config_class, check_defaults, check_descriptions, check_unknown_key,
               check_conformance_config, check_config_parses, check_json_round_trip):
        yield s.bind(fn)
