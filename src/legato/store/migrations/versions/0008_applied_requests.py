"""ids of applied write batches (idempotent retries over HTTP)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "applied_requests",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("applied_requests", schema=None) as batch_op:
        batch_op.create_index("ix_applied_requests_at", ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("applied_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_applied_requests_at")
    op.drop_table("applied_requests")
