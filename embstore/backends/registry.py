"""The version registry: sets, versions, aliases and their history in SQL.

Any SQLAlchemy URL works; the schema is brought to the Alembic head when the
registry is opened (embstore.backends.schema), so a store created by an older
embstore upgrades itself; processes opening a fresh store at once take turns
(a PostgreSQL advisory lock, a file lock beside a SQLite file), and a registry
already at the head opens with one query and no Alembic.

Every transaction that can change what a ref resolves to (publish, alias moves and
rollbacks, version updates, metrics) ends by bumping one counter row
(``embstore_changes``); ``change_marker()`` reads it on a connection of its own, so
a reader can keep resolved refs until it moves (embstore.versions.reader).
"""

from __future__ import annotations

import os
import re
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from embstore.backends.models import Alias, AliasEvent, Changes, EmbeddingSet, Version, utcnow
from embstore.backends.schema import (
    current_revision,
    ensure_pg_schema,
    head_revision,
    make_engine,
    migrations_dir,
    pg_advisory_lock,
    upgrade,
)
from embstore.errors import BackendUnavailableError, ConfigError, EmbstoreError, NotFoundError, first_line
from embstore.processes import HOST, pid_alive
from embstore.refs import Ref, VersionInfo, check_alias_name, check_set_name

def quick_head() -> str | None:
    """The head revision, read from the migration files by pattern instead of by Alembic (which
    costs a read-only CLI call 0.1-0.2 s to import); None when they do not read as one linear
    chain (a merge, an unusual header), and then Alembic decides."""
    revisions, downs = set(), set()
    for path in (migrations_dir() / "versions").glob("*.py"):
        text = path.read_text()
        rev = re.search(r"^revision\b[^=\n]*=\s*[\"']([^\"']+)[\"']", text, re.M)
        down = re.search(r"^down_revision\b[^=\n]*=\s*(?:[\"']([^\"']+)[\"']|None)\s*$", text, re.M)
        if rev is None or down is None:
            return None
        revisions.add(rev.group(1))
        if down.group(1):
            downs.add(down.group(1))
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 and len(revisions) == len(downs) + 1 else None


def _aware(ts: datetime | None) -> datetime | None:
    if ts is not None and ts.tzinfo is None:
        return ts.replace(tzinfo=timezone.utc)  # SQLite drops the zone; we only store UTC
    return ts


def _info(v: Version, aliases: tuple[str, ...] = ()) -> VersionInfo:
    return VersionInfo(
        set=v.set.name, number=v.number, status=v.status, step=v.step, producer=v.producer,
        plugin=v.plugin, plugin_version=v.plugin_version, config=dict(v.config or {}),
        retriever=v.retriever, retriever_config=dict(v.retriever_config or {}),
        input_fingerprint=v.input_fingerprint, id_type=v.id_type, dim=v.dim, count=v.count,
        metrics=dict(v.metrics or {}), storage_path=v.storage_path, feature_view=v.feature_view,
        checksums=dict(v.checksums or {}), error=v.error, entity=v.set.entity,
        created_at=_aware(v.created_at), published_at=_aware(v.published_at), aliases=aliases,
        aligned_to=v.aligned_to, valid_from=_aware(v.valid_from),
    )


class ChangeMarker:
    """Reads the registry's change counter with one primary-key query, on raw connections of its
    own (outside the registry's pool; autocommit, so each read sees every committed change):
    a few microseconds on SQLite, one round trip on PostgreSQL. Threads share a free list of
    connections: as many are opened as threads read at once, at most ``keep`` stay open."""

    QUERY = "SELECT counter FROM embstore_changes WHERE id = 1"

    def __init__(self, url: str, keep: int = 8):
        self.url = url
        self.keep = keep
        self._engine: sa.Engine | None = None
        self._free: list = []  # (connection, cursor)
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def read(self) -> int | None:
        """The counter now, or None when it cannot be read (the row or table missing, the
        database unreachable): then the caller must not rely on anything it cached."""
        pair = self._take()
        if pair is None:
            return None
        try:
            cur = pair[1]
            cur.execute(self.QUERY)
            row = cur.fetchone()
        except Exception:  # noqa: BLE001 - any failure means "unknown"; the registry query says why
            self._close(pair)
            return None
        with self._lock:
            if len(self._free) < self.keep and self._pid == os.getpid():
                self._free.append(pair)
                pair = None
        if pair is not None:
            self._close(pair)
        return None if row is None else int(row[0])

    def _take(self):
        with self._lock:
            if self._pid != os.getpid():  # a forked child must not share its parent's sockets
                self._free, self._engine, self._pid = [], None, os.getpid()
            if self._free:
                return self._free.pop()
        try:
            if self._engine is None:
                sqlite = self.url.startswith("sqlite")
                self._engine = sa.create_engine(
                    self.url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT",
                    connect_args={"timeout": 60, "check_same_thread": False} if sqlite else {})
            fairy = self._engine.raw_connection()
            conn = fairy.driver_connection
            fairy.detach()  # ours from now on: closed by close()
            return conn, conn.cursor()
        except Exception:  # noqa: BLE001
            return None

    @staticmethod
    def _close(pair) -> None:
        try:
            pair[0].close()
        except Exception:  # noqa: BLE001 - a dead connection may not close cleanly
            pass

    def close(self) -> None:
        with self._lock:
            free, self._free = self._free, []
            engine, self._engine = self._engine, None
        if self._pid == os.getpid():
            for pair in free:
                self._close(pair)
        if engine is not None:
            engine.dispose()


class Registry:
    """Typed operations on the registry tables; every change is one transaction."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._unmarked: dict[tuple[str, int], str] = {}  # failed while the registry was down; marked once back
        self._ensure_schema()
        self._marker = ChangeMarker(url)

    def _ensure_schema(self) -> None:
        stored = self._stored_revision()
        if stored is not None and stored == quick_head():
            return  # at the head: one query, no Alembic
        try:
            with self._migration_lock():  # processes opening a fresh store at once take turns
                ensure_pg_schema(self.url)
                head = head_revision()
                if current_revision(self.engine) != head:
                    upgrade(self.engine)
        except OperationalError as exc:
            raise EmbstoreError(
                f"cannot reach the version registry at {self._safe_url()}: {exc.orig}; "
                "check that the database is running and the URL is right (embstore doctor)"
            ) from None

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """Held while the schema is created or upgraded: a PostgreSQL advisory lock named by the
        URL (database and search_path), a file lock beside a SQLite file; other databases none."""
        url = sa.engine.make_url(self.url)
        backend = url.get_backend_name()
        if backend.startswith("postgresql"):
            with pg_advisory_lock(url, "embstore registry " + self._safe_url()):
                yield
        elif backend == "sqlite" and url.database and url.database != ":memory:":
            from filelock import FileLock

            with FileLock(f"{url.database}.migrations.lock", timeout=600):
                yield
        else:
            yield

    def _stored_revision(self) -> str | None:
        """The revision in the version table, or None when it cannot be read (no table yet, or the
        database down: the Alembic path then creates it or says what is wrong)."""
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT version_num FROM embstore_alembic_version")).all()
        except sa.exc.DBAPIError:
            return None
        return rows[0][0] if len(rows) == 1 else None

    def _safe_url(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def session(self, changes: bool = False) -> Iterator[Session]:
        """One transaction. ``changes``: it may change what a ref resolves to, so it ends by
        bumping the change counter (last, so every writer takes that row's lock after its others:
        no lock-order deadlock on PostgreSQL)."""
        try:
            with self._session.begin() as s:
                yield s
                if changes:
                    s.flush()
                    bumped = s.execute(sa.update(Changes).where(Changes.id == 1)
                                       .values(counter=Changes.counter + 1)).rowcount
                    if not bumped:  # the row was deleted by hand: recreate it (readers saw None meanwhile)
                        s.add(Changes(id=1, counter=1))
        except (OperationalError, sa.exc.InterfaceError) as exc:  # server down, connection lost, locked
            detail = first_line(getattr(exc, "orig", None) or exc)
            raise BackendUnavailableError(
                f"the version registry at {self._safe_url()} is unreachable: {detail}; "
                "check that the database is running (embstore doctor), then retry"
            ) from exc

    def close(self) -> None:
        self._marker.close()
        self.engine.dispose()

    def change_marker(self) -> int | None:
        """The change counter: it differs from an earlier reading whenever a publish, alias move,
        rollback or version update committed since (None when it cannot be read)."""
        return self._marker.read()

    # -- sets and versions ---------------------------------------------------

    def _get_set(self, s: Session, name: str) -> EmbeddingSet:
        found = s.scalar(select(EmbeddingSet).where(EmbeddingSet.name == name))
        if found is None:
            known = ", ".join(s.scalars(select(EmbeddingSet.name).order_by(EmbeddingSet.name))) or "none yet"
            raise NotFoundError(f"unknown embedding set {name!r} (sets: {known})")
        return found

    def set_names(self) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(EmbeddingSet.name).order_by(EmbeddingSet.name)))

    def begin_version(self, set_name: str, entity: str, producer: str, plugin: str, plugin_version: str,
                      config: dict, retriever: str, retriever_config: dict,
                      input_fingerprint: str | None, valid_from: datetime | None = None) -> VersionInfo:
        """Reserve the next version number of a set (creating the set on first use). ``valid_from``
        defaults to the build time (now)."""
        check_set_name(set_name)
        self.mark_unmarked()
        for attempt in range(20):
            try:
                with self.session() as s:
                    es = s.scalar(select(EmbeddingSet).where(EmbeddingSet.name == set_name))
                    if es is None:
                        es = EmbeddingSet(name=set_name, entity=entity, producer=producer, created_at=utcnow())
                        s.add(es)
                        s.flush()
                    elif es.entity != entity:
                        raise ConfigError(
                            f"set {set_name!r} holds entity {es.entity!r}, not {entity!r}; "
                            "use another set name or the same entity"
                        )
                    last = s.scalar(select(sa.func.max(Version.number)).where(Version.set_id == es.id)) or 0
                    now = utcnow()
                    v = Version(
                        set=es, number=last + 1, status="building", step="start", producer=producer,
                        plugin=plugin, plugin_version=plugin_version, config=config, retriever=retriever,
                        retriever_config=retriever_config, input_fingerprint=input_fingerprint,
                        metrics={}, checksums={}, owner_host=HOST, owner_pid=os.getpid(),
                        created_at=now, updated_at=now, valid_from=valid_from or now,
                    )
                    s.add(v)
                    s.flush()
                    return _info(v)
            except SAIntegrityError:
                time.sleep(0.05 * (attempt + 1))  # another publisher took that number: take the next
        raise EmbstoreError(f"could not reserve a version number for {set_name!r} after 20 attempts")

    def _get_version(self, s: Session, set_name: str, number: int) -> Version:
        es = self._get_set(s, set_name)
        v = s.scalar(select(Version).where(Version.set_id == es.id, Version.number == number))
        if v is None:
            raise NotFoundError(f"{set_name}@{number} does not exist")
        return v

    def update_version(self, set_name: str, number: int, **fields: Any) -> None:
        with self.session(changes=True) as s:
            v = self._get_version(s, set_name, number)
            for key, value in fields.items():
                setattr(v, key, value)
            v.updated_at = utcnow()

    def mark_failed(self, set_name: str, number: int, error: str) -> None:
        """If the registry is down, remembered and done by the next begin_version or reap in this process."""
        try:
            with self.session() as s:
                v = self._get_version(s, set_name, number)
                if v.status == "building":
                    v.status = "failed"
                    v.error = error[:4000]
                    v.updated_at = utcnow()
        except BackendUnavailableError:
            self._unmarked[(set_name, number)] = error
            raise
        self._unmarked.pop((set_name, number), None)

    def mark_unmarked(self) -> None:
        """Mark failed the versions whose failure could not be recorded while the registry was down."""
        for (set_name, number), error in list(self._unmarked.items()):
            self.mark_failed(set_name, number, error)

    def publish(self, set_name: str, number: int, alias: str | None, **fields: Any) -> VersionInfo:
        """Mark published and (optionally) move an alias, in one transaction."""
        with self.session(changes=True) as s:
            v = self._get_version(s, set_name, number)
            if v.status != "building":
                raise EmbstoreError(f"{set_name}@{number} is {v.status}, cannot publish it")
            for key, value in fields.items():
                setattr(v, key, value)
            now = utcnow()
            v.status, v.step, v.published_at, v.updated_at = "published", "published", now, now
            s.flush()
            if alias:
                self._move_alias(s, v, alias, "promote")
            return _info(v, self._aliases_of(s, v))

    def extend_metrics(self, set_name: str, number: int, metrics: dict[str, Any]) -> VersionInfo:
        """Merge ``metrics`` into a version's metrics (top-level keys replaced; nested dicts merged
        one level deep). Metrics may grow after publish (drift reports, evaluations); vectors never change."""
        with self.session(changes=True) as s:
            v = self._get_version(s, set_name, number)
            s.refresh(v, with_for_update=True)
            merged = dict(v.metrics or {})
            for key, value in metrics.items():
                if isinstance(value, dict) and isinstance(merged.get(key), dict):
                    merged[key] = {**merged[key], **value}
                else:
                    merged[key] = value
            v.metrics = merged
            v.updated_at = utcnow()
            s.flush()
            return _info(v, self._aliases_of(s, v))

    def reap_dead_builders(self) -> list[str]:
        """Mark failed the building versions whose publishing process on this host has died."""
        self.mark_unmarked()
        reaped = []
        with self.session() as s:
            for v in s.scalars(select(Version).where(Version.status == "building")):
                if v.owner_host == HOST and v.owner_pid and not pid_alive(v.owner_pid):
                    v.status = "failed"
                    v.error = f"publishing process {v.owner_pid} died during step {v.step!r}"
                    v.updated_at = utcnow()
                    reaped.append(f"{v.set.name}@{v.number}")
        return reaped

    def owners(self, set_name: str) -> dict[int, tuple[str | None, int | None]]:
        """Version number -> (host, pid) of the process that published (or is publishing) it."""
        with self.session() as s:
            rows = s.execute(
                select(Version.number, Version.owner_host, Version.owner_pid)
                .join(EmbeddingSet, Version.set_id == EmbeddingSet.id)
                .where(EmbeddingSet.name == set_name)
            ).all()
        return {n: (h, p) for n, h, p in rows}

    def versions(self, set_name: str) -> list[VersionInfo]:
        with self.session() as s:
            es = self._get_set(s, set_name)
            aliases: dict[int, list[str]] = {}
            for a in s.scalars(select(Alias).where(Alias.set_id == es.id).order_by(Alias.name)):
                aliases.setdefault(a.version_id, []).append(a.name)
            rows = s.scalars(select(Version).where(Version.set_id == es.id).order_by(Version.number))
            return [_info(v, tuple(aliases.get(v.id, ()))) for v in rows]

    def version(self, set_name: str, number: int) -> VersionInfo:
        with self.session() as s:
            v = self._get_version(s, set_name, number)
            return _info(v, self._aliases_of(s, v))

    def resolve(self, ref: Ref | str) -> VersionInfo:
        """The published version a ref names; failed or building versions are never returned."""
        ref = Ref.parse(ref) if isinstance(ref, str) else ref
        with self.session() as s:
            es = self._get_set(s, ref.set)
            if ref.alias is not None:
                a = s.scalar(select(Alias).where(Alias.set_id == es.id, Alias.name == ref.alias))
                if a is None:
                    known = ", ".join(s.scalars(select(Alias.name).where(Alias.set_id == es.id))) or "none"
                    raise NotFoundError(f"set {ref.set!r} has no alias {ref.alias!r} (aliases: {known})")
                v = s.get(Version, a.version_id)
            elif ref.version is not None:
                v = self._get_version(s, ref.set, ref.version)
                if v.status != "published":
                    raise NotFoundError(f"{ref} is {v.status}, not published" + (f": {v.error}" if v.error else ""))
            else:
                v = s.scalar(
                    select(Version)
                    .where(Version.set_id == es.id, Version.status == "published")
                    .order_by(Version.number.desc())
                    .limit(1)
                )
                if v is None:
                    raise NotFoundError(f"set {ref.set!r} has no published version yet")
            return _info(v, self._aliases_of(s, v))

    # -- aliases -------------------------------------------------------------

    def _aliases_of(self, s: Session, v: Version) -> tuple[str, ...]:
        return tuple(s.scalars(select(Alias.name).where(Alias.version_id == v.id).order_by(Alias.name)))

    def _move_alias(self, s: Session, v: Version, alias: str, action: str) -> None:
        check_alias_name(alias)
        if v.status != "published":
            raise EmbstoreError(f"{v.set.name}@{v.number} is {v.status}; only published versions take aliases")
        a = s.scalar(select(Alias).where(Alias.set_id == v.set_id, Alias.name == alias).with_for_update())
        previous = a.version_id if a else None
        now = utcnow()
        if a is None:
            s.add(Alias(set_id=v.set_id, name=alias, version_id=v.id, updated_at=now))
        else:
            a.version_id, a.updated_at = v.id, now
        s.add(AliasEvent(set_id=v.set_id, alias=alias, version_id=v.id, previous_version_id=previous,
                         action=action, moved_at=now))

    def promote(self, ref: Ref | str, alias: str) -> VersionInfo:
        ref = Ref.parse(ref) if isinstance(ref, str) else ref
        target = self.resolve(ref)
        with self.session(changes=True) as s:
            v = self._get_version(s, target.set, target.number)
            self._move_alias(s, v, alias, "promote")
            return _info(v, self._aliases_of(s, v))

    def promote_many(self, versions: list[tuple[str, int]], alias: str) -> list[VersionInfo]:
        """Move ``alias`` of several sets at once (e.g. FM's user and item sets)."""
        with self.session(changes=True) as s:
            rows = [self._get_version(s, name, number) for name, number in versions]
            for v in rows:
                self._move_alias(s, v, alias, "promote")
            s.flush()
            return [_info(v, self._aliases_of(s, v)) for v in rows]

    def rollback(self, set_name: str, alias: str) -> VersionInfo:
        """Point ``alias`` back at the version it named before its last move."""
        with self.session(changes=True) as s:
            es = self._get_set(s, set_name)
            a = s.scalar(select(Alias).where(Alias.set_id == es.id, Alias.name == alias))
            if a is None:
                raise NotFoundError(f"set {set_name!r} has no alias {alias!r}")
            last = s.scalar(
                select(AliasEvent)
                .where(AliasEvent.set_id == es.id, AliasEvent.alias == alias)
                .order_by(AliasEvent.id.desc())
                .limit(1)
            )
            if last is None or last.previous_version_id is None:
                raise EmbstoreError(f"{set_name}@{alias} has no earlier version to roll back to")
            previous = s.get(Version, last.previous_version_id)
            if previous.status != "published":
                raise EmbstoreError(
                    f"{set_name}@{previous.number}, which {alias!r} named before, is {previous.status}"
                )
            self._move_alias(s, previous, alias, "rollback")
            return _info(previous, self._aliases_of(s, previous))

    def alias_history(self, set_name: str) -> list[dict[str, Any]]:
        with self.session() as s:
            es = self._get_set(s, set_name)
            numbers = dict(s.execute(select(Version.id, Version.number).where(Version.set_id == es.id)).all())
            events = s.scalars(select(AliasEvent).where(AliasEvent.set_id == es.id).order_by(AliasEvent.id))
            return [
                {
                    "alias": e.alias,
                    "version": numbers[e.version_id],
                    "previous": numbers.get(e.previous_version_id),
                    "action": e.action,
                    "moved_at": _aware(e.moved_at).isoformat(),
                }
                for e in events
            ]
