"""Versions record which version they were rotated onto (alignment).

Revision ID: 0002_aligned_to
Revises: 0001_initial
Create Date: 2026-11-26
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002_aligned_to"
down_revision: Union[str, None] = "0001_initial"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # a pinned ref ("set@N") of the reference version, or NULL when not aligned
    with op.batch_alter_table("embstore_versions") as batch:
        batch.add_column(sa.Column("aligned_to", sa.String(300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("embstore_versions") as batch:
        batch.drop_column("aligned_to")
