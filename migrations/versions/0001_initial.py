"""Version registry: sets, versions, aliases and alias history.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-25
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "embstore_sets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("entity", sa.String(200), nullable=False),
        sa.Column("producer", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("name", name="uq_embstore_sets_name"),
    )
    op.create_table(
        "embstore_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("set_id", sa.Integer(), sa.ForeignKey("embstore_sets.id"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("step", sa.String(50)),
        sa.Column("producer", sa.String(200), nullable=False),
        sa.Column("plugin", sa.String(200), nullable=False),
        sa.Column("plugin_version", sa.String(100), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("retriever", sa.String(200), nullable=False),
        sa.Column("retriever_config", sa.JSON(), nullable=False),
        sa.Column("input_fingerprint", sa.String(64)),
        sa.Column("id_type", sa.String(20)),
        sa.Column("dim", sa.Integer()),
        sa.Column("count", sa.Integer()),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("storage_path", sa.Text()),
        sa.Column("feature_view", sa.String(300)),
        sa.Column("checksums", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("owner_host", sa.String(255)),
        sa.Column("owner_pid", sa.Integer()),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("published_at", TS),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("set_id", "number", name="uq_embstore_versions_set_number"),
    )
    op.create_index("ix_embstore_versions_set_id", "embstore_versions", ["set_id"])
    op.create_table(
        "embstore_aliases",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("set_id", sa.Integer(), sa.ForeignKey("embstore_sets.id"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("embstore_versions.id"), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("set_id", "name", name="uq_embstore_aliases_set_name"),
    )
    op.create_index("ix_embstore_aliases_set_id", "embstore_aliases", ["set_id"])
    op.create_table(
        "embstore_alias_history",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("set_id", sa.Integer(), sa.ForeignKey("embstore_sets.id"), nullable=False),
        sa.Column("alias", sa.String(100), nullable=False),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("embstore_versions.id"), nullable=False),
        sa.Column("previous_version_id", sa.Integer(), sa.ForeignKey("embstore_versions.id")),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("moved_at", TS, nullable=False),
    )
    op.create_index("ix_embstore_alias_history_set_id", "embstore_alias_history", ["set_id"])


def downgrade() -> None:
    op.drop_index("ix_embstore_alias_history_set_id", table_name="embstore_alias_history")
    op.drop_table("embstore_alias_history")
    op.drop_index("ix_embstore_aliases_set_id", table_name="embstore_aliases")
    op.drop_table("embstore_aliases")
    op.drop_index("ix_embstore_versions_set_id", table_name="embstore_versions")
    op.drop_table("embstore_versions")
    op.drop_table("embstore_sets")
