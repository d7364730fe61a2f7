"""The plugin catalogue at its first import path, ``embstore.plugins.get_registry``, which plugin
packages scaffolded by embstore 0.1 call in their tests (it lives in embstore.catalogue)."""

from embstore.catalogue import PluginCatalogue, PluginInfo, catalogue

PluginRegistry = PluginCatalogue


def get_registry(reload: bool = False) -> PluginCatalogue:
    return catalogue(reload=reload)


__all__ = ["PluginCatalogue", "PluginInfo", "PluginRegistry", "get_registry"]
