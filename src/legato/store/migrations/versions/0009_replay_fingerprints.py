"""input fingerprints on task runs (replay checked against inputs)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fingerprint", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("input_hashes", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("superseded_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.drop_column("superseded_at")
        batch_op.drop_column("input_hashes")
        batch_op.drop_column("fingerprint")
