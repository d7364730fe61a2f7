"""The plugin catalogue: what the loaded plugins provide (producers, retrievers, evaluators, engines), by name.

Plugins come from the ``embstore`` entry-point group, plus modules named in
``EMBSTORE_PLUGINS`` (comma-separated import paths) and in a home's ``plugins:``
setting, which the caller passes in (``catalogue(settings.plugins)``).
``EMBSTORE_TRACE_PLUGINS=1`` prints every hook call with its results to stderr.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Iterable

import pluggy

from embstore import hookspecs
from embstore.errors import PluginError
from embstore.engine import Engine
from embstore.evaluator import Evaluator
from embstore.producer import Producer
from embstore.retriever import Retriever

ENTRY_POINT_GROUP = "embstore"
PLUGINS_ENV = "EMBSTORE_PLUGINS"
SETTING = "plugins setting"
TRACE_ENV = "EMBSTORE_TRACE_PLUGINS"


@dataclass
class PluginInfo:
    """One loaded plugin module: where it came from and what it registered."""

    name: str
    module: str
    version: str
    source: str  # "entry point", "EMBSTORE_PLUGINS" or "plugins setting"
    hooks: list[str] = field(default_factory=list)
    producers: list[str] = field(default_factory=list)
    retrievers: list[str] = field(default_factory=list)
    evaluators: list[str] = field(default_factory=list)
    engines: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "module": self.module,
            "version": self.version,
            "source": self.source,
            "hooks": self.hooks,
            "producers": self.producers,
            "retrievers": self.retrievers,
            "evaluators": self.evaluators,
            "engines": self.engines,
        }


class PluginCatalogue:
    """What the loaded plugins provide, by name. Built once per process and setting by ``catalogue``."""

    def __init__(self, extra_modules: Iterable[str] = ()):
        self.pm = pluggy.PluginManager("embstore")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.producers: dict[str, type[Producer]] = {}
        self.retrievers: dict[str, type[Retriever]] = {}
        self.evaluators: dict[str, type[Evaluator]] = {}
        self.engines: dict[str, type[Engine]] = {}
        self._owner: dict[tuple[str, str], PluginInfo] = {}
        self._load_entry_points()
        for module_path in env_modules():
            self._load_module_path(module_path, PLUGINS_ENV)
        for module_path in extra_modules:
            self._load_module_path(module_path, SETTING)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"a plugin implements an unknown hook: {exc}") from None
        if os.environ.get(TRACE_ENV):
            self.pm.trace.root.setwriter(sys.stderr.write)
            self.pm.enable_tracing()
        self._collect()

    # -- loading -------------------------------------------------------------

    def _load_entry_points(self) -> None:
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            if self.pm.get_plugin(ep.name) is not None:
                continue  # the same distribution seen twice on sys.path
            try:
                module = ep.load()
            except Exception as exc:  # a broken third-party plugin must say who it is
                dist = ep.dist.name if ep.dist else "?"
                raise PluginError(
                    f"plugin {ep.name!r} (entry point {ep.value!r} of {dist}) failed to import: {exc}"
                ) from exc
            version = ep.dist.version if ep.dist else "unknown"
            self._register(ep.name, module, version, "entry point")

    def _load_module_path(self, module_path: str, source: str) -> None:
        try:
            module = importlib.import_module(module_path)
        except ImportError as exc:
            raise PluginError(
                f"{source} names module {module_path!r}, which cannot be imported: {exc}"
            ) from exc
        name = module_path
        if self.pm.get_plugin(name) is not None or module in self.pm.get_plugins():
            return
        version = getattr(module, "__version__", "dev")
        self._register(name, module, str(version), source)

    def _register(self, name: str, module: ModuleType, version: str, source: str) -> None:
        if self.pm.is_registered(module):
            return
        try:
            self.pm.register(module, name=name)
        except ValueError as exc:
            raise PluginError(f"plugin name {name!r} registered twice: {exc}") from None
        hooks = sorted(impl.name for impl in self.pm.get_hookcallers(module) or [])
        self.plugins[name] = PluginInfo(name, module.__name__, version, source, hooks)

    # -- collection ----------------------------------------------------------

    def _collect(self) -> None:
        for plugin_name, info in self.plugins.items():
            module = self.pm.get_plugin(plugin_name)
            caller_names = {c.name for c in self.pm.get_hookcallers(module) or []}
            for hook_name, base, table, listing in (
                ("register_producers", Producer, self.producers, info.producers),
                ("register_retrievers", Retriever, self.retrievers, info.retrievers),
                ("register_evaluators", Evaluator, self.evaluators, info.evaluators),
                ("register_engines", Engine, self.engines, info.engines),
            ):
                if hook_name not in caller_names:
                    continue
                others = [p for p in self.pm.get_plugins() if p is not module]
                caller = self.pm.subset_hook_caller(hook_name, remove_plugins=others)  # traced like any call

                def register(cls: type, _base=base, _table=table, _listing=listing, _info=info) -> None:
                    self._add(cls, _base, _table, _listing, _info)

                caller(register=register)

    def _add(self, cls: type, base: type, table: dict, listing: list, info: PluginInfo) -> None:
        kind = base.__name__.lower()
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(
                f"plugin {info.name!r} registered {cls!r} as a {kind}, but it is not a {base.__name__} subclass"
            )
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise PluginError(f"{kind} {cls.__qualname__} from plugin {info.name!r} needs a name like 'item2vec'")
        if name in table:
            other = self._owner[(kind, name)]
            raise PluginError(
                f"duplicate {kind} name {name!r}: registered by plugin {other.name!r} and by {info.name!r}; "
                "rename one of them or uninstall one package"
            )
        table[name] = cls
        self._owner[(kind, name)] = info
        listing.append(name)

    # -- lookup --------------------------------------------------------------

    def producer(self, name: str) -> type[Producer]:
        try:
            return self.producers[name]
        except KeyError:
            known = ", ".join(sorted(self.producers)) or "none"
            raise PluginError(f"unknown producer {name!r} (installed: {known})") from None

    def retriever(self, name: str) -> type[Retriever]:
        try:
            return self.retrievers[name]
        except KeyError:
            known = ", ".join(sorted(self.retrievers)) or "none"
            raise PluginError(f"unknown retriever {name!r} (installed: {known})") from None

    def engine(self, name: str) -> type[Engine]:
        try:
            return self.engines[name]
        except KeyError:
            known = ", ".join(sorted(self.engines)) or "none"
            raise PluginError(f"unknown engine {name!r} (installed: {known})") from None

    def evaluator(self, name: str) -> type[Evaluator]:
        try:
            return self.evaluators[name]
        except KeyError:
            known = ", ".join(sorted(self.evaluators)) or "none"
            raise PluginError(f"unknown evaluator {name!r} (installed: {known})") from None

    def owner(self, kind: str, name: str) -> PluginInfo:
        return self._owner[(kind, name)]


def env_modules() -> tuple[str, ...]:
    return tuple(m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip())


_loaded: dict[tuple, PluginCatalogue] = {}


def catalogue(modules: Iterable[str] = (), reload: bool = False) -> PluginCatalogue:
    """The catalogue of the entry points, ``EMBSTORE_PLUGINS`` and ``modules`` (a home's ``plugins:``
    setting), loaded once per process for each such combination (again with ``reload=True``)."""
    key = (env_modules(), tuple(modules))
    if reload or key not in _loaded:
        _loaded[key] = PluginCatalogue(key[1])
    return _loaded[key]
