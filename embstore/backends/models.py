"""SQLAlchemy models of the version registry.

The schema is owned by the Alembic migrations in migrations/: these classes
describe it for queries; nothing calls ``create_all`` outside tests.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

STATUSES = ("building", "published", "failed", "retired")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class EmbeddingSet(Base):
    """A named table of vectors for one entity kind, filled version by version."""

    __tablename__ = "embstore_sets"
    __table_args__ = (UniqueConstraint("name", name="uq_embstore_sets_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    entity: Mapped[str] = mapped_column(String(200), nullable=False)
    producer: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)

    versions: Mapped[list["Version"]] = relationship(back_populates="set", order_by="Version.number")


class Version(Base):
    """One run of a set. Immutable once published; status tells whether it may serve."""

    __tablename__ = "embstore_versions"
    __table_args__ = (UniqueConstraint("set_id", "number", name="uq_embstore_versions_set_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("embstore_sets.id"), nullable=False, index=True)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="building")
    step: Mapped[Optional[str]] = mapped_column(String(50))
    producer: Mapped[str] = mapped_column(String(200), nullable=False)
    plugin: Mapped[str] = mapped_column(String(200), nullable=False)
    plugin_version: Mapped[str] = mapped_column(String(100), nullable=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    retriever: Mapped[str] = mapped_column(String(200), nullable=False)
    retriever_config: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    input_fingerprint: Mapped[Optional[str]] = mapped_column(String(64))
    id_type: Mapped[Optional[str]] = mapped_column(String(20))
    dim: Mapped[Optional[int]] = mapped_column(Integer)
    count: Mapped[Optional[int]] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    storage_path: Mapped[Optional[str]] = mapped_column(Text)
    feature_view: Mapped[Optional[str]] = mapped_column(String(300))
    checksums: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False, default=dict)
    error: Mapped[Optional[str]] = mapped_column(Text)
    aligned_to: Mapped[Optional[str]] = mapped_column(String(300))  # "set@N" it was rotated onto (0002)
    valid_from: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))  # vectors usable from (0003)
    owner_host: Mapped[Optional[str]] = mapped_column(String(255))
    owner_pid: Mapped[Optional[int]] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    published_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)

    set: Mapped[EmbeddingSet] = relationship(back_populates="versions")


class Alias(Base):
    """A movable name (prod, canary) pointing at one published version of a set."""

    __tablename__ = "embstore_aliases"
    __table_args__ = (UniqueConstraint("set_id", "name", name="uq_embstore_aliases_set_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("embstore_sets.id"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    version_id: Mapped[int] = mapped_column(ForeignKey("embstore_versions.id"), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class AliasEvent(Base):
    """History of alias moves: what pointed where, from when, and why."""

    __tablename__ = "embstore_alias_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("embstore_sets.id"), nullable=False, index=True)
    alias: Mapped[str] = mapped_column(String(100), nullable=False)
    version_id: Mapped[int] = mapped_column(ForeignKey("embstore_versions.id"), nullable=False)
    previous_version_id: Mapped[Optional[int]] = mapped_column(ForeignKey("embstore_versions.id"))
    action: Mapped[str] = mapped_column(String(20), nullable=False)  # promote | rollback
    moved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class Changes(Base):
    """One row whose counter every registry change that can alter what a ref resolves to bumps, in
    the same transaction (0004): readers cache resolved refs until it moves."""

    __tablename__ = "embstore_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    counter: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
