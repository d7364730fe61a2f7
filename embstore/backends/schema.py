"""The registry's schema: Alembic migrations applied when a registry is opened, SQLAlchemy
engines tuned per database, and PostgreSQL schemas created on demand (team backend)."""

from __future__ import annotations

import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from embstore.errors import ConfigError, EmbstoreError


def migrations_dir() -> Path:
    import embstore_migrations

    return Path(embstore_migrations.__file__).resolve().parent


def alembic_config(connection: sa.Connection | None = None, url: str | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise EmbstoreError(f"migrations have {len(heads)} heads ({heads}); merge them")
    return heads[0]


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": "embstore_alembic_version"})
        return ctx.get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` in one transaction."""
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: sa.Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)


def _search_path(url: sa.engine.URL) -> str | None:
    options = url.query.get("options")
    options = options[0] if isinstance(options, tuple) else options
    if options and "search_path=" in options:
        return options.split("search_path=", 1)[1].split()[0].split(",")[0]
    return None


def ensure_pg_schema(url: str) -> None:
    """Create the schema a PostgreSQL URL's search_path names, if missing (team backend)."""
    parsed = sa.engine.make_url(url)
    schema = _search_path(parsed)
    if not parsed.get_backend_name().startswith("postgresql") or not schema:
        return
    engine = sa.create_engine(parsed, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            if conn.execute(sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}).first() is None:
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    except sa.exc.IntegrityError:
        pass  # another process created it at the same moment (IF NOT EXISTS does not cover that race)
    except OperationalError as exc:
        raise EmbstoreError(
            f"cannot reach PostgreSQL at {parsed.render_as_string(hide_password=True)}: {exc.orig}; "
            "check that it is running and the URL is right (embstore doctor)"
        ) from None
    finally:
        engine.dispose()


def make_engine(url: str) -> sa.Engine:
    try:
        if url.startswith("sqlite"):
            engine = sa.create_engine(url, connect_args={"timeout": 60})

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn, _record):  # concurrent readers with one writer
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=60000")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            return engine
        return sa.create_engine(url, pool_pre_ping=True)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise ConfigError(f"registry_url {url!r} is not a usable SQLAlchemy URL: {exc}") from None


@contextmanager
def pg_advisory_lock(url, name: str) -> Iterator[None]:
    """A PostgreSQL session-level advisory lock keyed by ``name``, held on a connection of its own
    for the block: processes on any host that open one store take turns."""
    key = zlib.crc32(name.encode())
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        engine.dispose()
