"""dashboard indexes: top-level flow runs newest first

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The runs page lists top-level runs (no parent) newest first, and counts them.
    op.create_index("ix_flow_runs_top_created", "flow_runs", ["parent_task_run_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_flow_runs_top_created", table_name="flow_runs")
