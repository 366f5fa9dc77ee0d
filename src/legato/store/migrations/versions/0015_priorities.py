"""priorities: task runs, flow runs and deployments get one (higher is claimed first);
task runs name their top-level run (root_id), by which a pool shares out its capacity, and
carry their task's expected_duration (the long-run alert)

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

TABLES = ("task_runs", "flow_runs", "deployments")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("priority", sa.Integer(), nullable=False, server_default="0")
            )
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("root_id", sa.String(36), nullable=True))
        batch_op.add_column(sa.Column("claim_key", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("expected_duration", sa.Float(), nullable=True))
        batch_op.create_index("ix_task_runs_claim", ["pool", "state", "claim_key"])
        batch_op.create_index("ix_task_runs_owner", ["root_id", "pool", "state", "claim_key"])
    # What is queued now keeps its order (claims took the oldest first).
    op.execute("UPDATE task_runs SET claim_key = queued_at WHERE queued_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_task_runs_owner")
        batch_op.drop_index("ix_task_runs_claim")
        batch_op.drop_column("expected_duration")
        batch_op.drop_column("claim_key")
        batch_op.drop_column("root_id")
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("priority")
