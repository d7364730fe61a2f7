"""Diagnosis of a home's backends: check each one and say exactly what is wrong (``embstore doctor``)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from embstore.errors import EmbstoreError, first_line

if TYPE_CHECKING:
    from embstore.backends.base import Backend
    from embstore.settings import StoreSettings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def _run(name: str, fn: Callable[[], str]) -> Check:
    try:
        return Check(name, True, fn())
    except Exception as exc:  # noqa: BLE001 - every failure becomes a reported line
        return Check(name, False, first_line(exc))


def diagnose(home: str | os.PathLike | None) -> list[Check]:
    """Run every check that applies; never raises for a backend problem."""
    from embstore.backends import open_backend
    from embstore.settings import load_settings, resolve_home

    try:
        path = resolve_home(home)
        settings = load_settings(path)
        backend = open_backend(settings, path)
    except EmbstoreError as exc:
        return [Check("settings", False, str(exc))]
    data = settings.repo_path(path) / "data"
    return [
        Check("settings", True, f"{path / 'embstore.yaml'} (backend {settings.backend})"),
        _run("version registry", lambda: check_registry(backend.registry_url())),
        _run("online store", lambda: backend.check_online_store(data)),
        _run("feast registry", lambda: check_feature_repo(settings, path, backend)),
        _run("version files", lambda: check_files(path / "sets")),
        _run("plugins", lambda: check_plugins(settings)),
    ]


def check_registry(url: str) -> str:
    import sqlalchemy as sa

    from embstore.backends.schema import current_revision, head_revision, make_engine

    safe = sa.engine.make_url(url).render_as_string(hide_password=True)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        current, head = current_revision(engine), head_revision()
    except sa.exc.OperationalError as exc:
        raise EmbstoreError(f"cannot connect to {safe}: {first_line(exc.orig)}") from None
    finally:
        engine.dispose()
    if current != head:
        return f"{safe} reachable; schema at {current or 'empty'}, will upgrade to {head} on open"
    return f"{safe} reachable, schema at head {head}"


def check_feature_repo(settings: "StoreSettings", home: Path, backend: "Backend") -> str:
    from embstore.backends.feature_repo import FeatureRepo, render_repo
    from embstore.catalogue import catalogue
    from embstore.versions.producing import Engines

    repo = settings.repo_path(home)
    engine = Engines(partial(catalogue, tuple(settings.plugins)), settings.engine, settings.engine_config, home).get()
    render_repo(repo, settings.project, backend, engine.feast_offline_store())
    views = FeatureRepo(repo).feature_view_names()
    return f"Feast repo {repo} loads, {len(views)} feature views"


def check_files(sets: Path) -> str:
    sets.mkdir(exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=sets):
        pass
    return f"{sets} writable"


def check_plugins(settings: "StoreSettings") -> str:
    from embstore.catalogue import catalogue

    found = catalogue(settings.plugins, reload=True)
    return (f"{len(found.producers)} producers ({', '.join(sorted(found.producers))}), "
            f"{len(found.retrievers)} retrievers")
