"""What every command is handed: the home and flags of the ``embstore`` group, and the store
and plugin catalogue they open (the home's ``plugins:`` setting included)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from embstore.errors import ConfigError, EmbstoreError, first_line

if TYPE_CHECKING:
    from embstore.catalogue import PluginCatalogue
    from embstore.store import EmbeddingStore


class State:
    def __init__(self, home: str | None, debug: bool):
        self.home = home
        self.debug = debug

    def store(self) -> "EmbeddingStore":
        from embstore.store import EmbeddingStore

        return EmbeddingStore(self.home)

    def engine(self) -> str:
        """The home's engine setting (local when there is no usable home yet)."""
        from embstore.settings import load_settings, resolve_home

        try:
            return load_settings(resolve_home(self.home)).engine
        except ConfigError:
            return "local"

    def catalogue(self) -> "PluginCatalogue":
        """The plugins a command may use: entry points, EMBSTORE_PLUGINS and the home's ``plugins:``
        setting (none when there is no usable home yet; opening the store then says why)."""
        from embstore.catalogue import catalogue
        from embstore.settings import load_settings, resolve_home

        try:
            modules = load_settings(resolve_home(self.home)).plugins
        except ConfigError:
            modules = []
        return catalogue(modules)


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


class Group(click.Group):
    """Turns embstore's own errors into one line (traceback only with --debug)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EmbstoreError as exc:
            if ctx.params.get("debug"):
                raise
            fail(first_line(exc))
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # an unexpected failure is still one line, with the way to see more
            if ctx.params.get("debug"):
                raise
            fail(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")
