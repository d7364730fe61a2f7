"""`embstore doctor`: check each configured backend and say exactly what is wrong."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from embstore.errors import EmbstoreError


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
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Check(name, False, message)


def diagnose(home: str | os.PathLike | None) -> list[Check]:
    """Run every check that applies; never raises for a backend problem."""
    from embstore.settings import load_settings, resolve_home

    checks: list[Check] = []
    try:
        path = resolve_home(home)
        settings = load_settings(path)
    except EmbstoreError as exc:
        return [Check("settings", False, str(exc))]
    checks.append(Check("settings", True, f"{path / 'embstore.yaml'} (backend {settings.backend})"))

    def registry() -> str:
        import sqlalchemy as sa

        from embstore.registry import current_revision, head_revision, make_engine

        url = settings.registry_url_for(path)
        safe = sa.engine.make_url(url).render_as_string(hide_password=True)
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("select 1"))
            current, head = current_revision(engine), head_revision()
        except sa.exc.OperationalError as exc:
            raise EmbstoreError(f"cannot connect to {safe}: {str(exc.orig).strip().splitlines()[0]}") from None
        finally:
            engine.dispose()
        if current != head:
            return f"{safe} reachable; schema at {current or 'empty'}, will upgrade to {head} on open"
        return f"{safe} reachable, schema at head {head}"

    checks.append(_run("version registry", registry))

    def online() -> str:
        if settings.backend == "team":
            import redis

            from embstore.settings import redis_connection_string

            conn = redis_connection_string(settings.redis_url)
            host, _, rest = conn.partition(":")
            port = int(rest.split(",")[0] or 6379)
            try:
                redis.Redis(host=host, port=port, socket_connect_timeout=3).ping()
            except redis.RedisError as exc:
                raise EmbstoreError(f"Redis at {host}:{port} unreachable: {exc}; start it or fix redis_url") from None
            return f"Redis at {host}:{port} answers"
        data = settings.repo_path(path) / "data"
        if not os.access(data, os.W_OK):
            raise EmbstoreError(f"{data} is not writable")
        return f"SQLite online store in {data}"

    checks.append(_run("online store", online))

    def feast_registry() -> str:
        from embstore.feast_store import FeastBackend, render_repo

        repo = settings.repo_path(path)
        render_repo(repo, settings)
        views = FeastBackend(repo).feature_view_names()
        return f"Feast repo {repo} loads, {len(views)} feature views"

    checks.append(_run("feast registry", feast_registry))

    def files() -> str:
        sets = path / "sets"
        sets.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=sets):
            pass
        return f"{sets} writable"

    checks.append(_run("version files", files))

    def plugins() -> str:
        from embstore.plugins import get_registry

        reg = get_registry(reload=True)
        return f"{len(reg.producers)} producers ({', '.join(sorted(reg.producers))}), {len(reg.retrievers)} retrievers"

    checks.append(_run("plugins", plugins))
    return checks
