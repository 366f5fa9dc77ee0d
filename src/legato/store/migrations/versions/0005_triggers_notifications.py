"""schedules, file and webhook triggers, notification rules and outbox

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("deployment", sa.String(length=200), nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("every", sa.Float(), nullable=True),
        sa.Column("catchup", sa.String(length=10), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=True),
        sa.Column("last_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_schedules_due", "schedules", ["paused", "next_at"])
    op.create_index("ix_schedules_deployment", "schedules", ["deployment"])
    op.create_table(
        "scheduled_runs",
        sa.Column("deployment", sa.String(length=200), nullable=False),
        sa.Column("scheduled_at", sa.Float(), nullable=False),
        sa.Column("schedule_id", sa.String(length=36), nullable=True),
        sa.Column("flow_run_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("deployment", "scheduled_at", name="pk_scheduled_runs"),
    )
    op.create_table(
        "triggers",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("deployment", sa.String(length=200), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "trigger_files",
        sa.Column("trigger", sa.String(length=200), nullable=False),
        sa.Column("path", sa.String(length=2000), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime", sa.Float(), nullable=False),
        sa.Column("flow_run_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("trigger", "path", "size", "mtime", name="pk_trigger_files"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("hook", sa.String(length=200), nullable=False),
        sa.Column("delivery", sa.String(length=128), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("hook", "delivery", name="pk_webhook_deliveries"),
    )
    op.create_index("ix_webhook_deliveries_received", "webhook_deliveries", ["received_at"])
    op.create_table(
        "notify_rules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("events", sa.Text(), nullable=False),
        sa.Column("channel", sa.String(length=500), nullable=False),
        sa.Column("flow", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("dedup_key", sa.String(length=300), nullable=False),
        sa.Column("rule_id", sa.String(length=36), nullable=True),
        sa.Column("channel", sa.String(length=500), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedup_key"),
    )
    op.create_index("ix_notifications_due", "notifications", ["state", "next_attempt_at"])
    op.create_index("ix_notifications_created", "notifications", ["created_at"])
    op.create_table(
        "cursors",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    for table in (
        "cursors",
        "notifications",
        "notify_rules",
        "webhook_deliveries",
        "trigger_files",
        "triggers",
        "scheduled_runs",
        "schedules",
    ):
        op.drop_table(table)
