"""A change counter: one row the registry bumps in the same transaction as every publish, alias
move, rollback and version update, so readers can cache resolved refs until it moves.

Revision ID: 0004_changes
Revises: 0003_valid_from
Create Date: 2026-12-01
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004_changes"
down_revision: Union[str, None] = "0003_valid_from"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    changes = op.create_table(
        "embstore_changes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("counter", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(changes, [{"id": 1, "counter": 0}])


def downgrade() -> None:
    op.drop_table("embstore_changes")
