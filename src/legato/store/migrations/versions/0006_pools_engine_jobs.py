"""pools backed by an engine (process, slurm, dask, kubernetes); engine job ids on task runs

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pools",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    # A nullable column: a plain ADD COLUMN on both dialects (no table copy on SQLite).
    op.add_column("task_runs", sa.Column("engine_job_id", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_runs") as batch:
        batch.drop_column("engine_job_id")
    op.drop_table("pools")
