"""Versions record the time from which their vectors may be used (valid-from).

Existing versions get their build time, the rule they were joined by before.

Revision ID: 0003_valid_from
Revises: 0002_aligned_to
Create Date: 2026-12-01
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0003_valid_from"
down_revision: Union[str, None] = "0002_aligned_to"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("embstore_versions") as batch:
        batch.add_column(sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE embstore_versions SET valid_from = created_at WHERE valid_from IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("embstore_versions") as batch:
        batch.drop_column("valid_from")
