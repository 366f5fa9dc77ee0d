"""The one schema both dialects share. Migrations in ``migrations/`` must produce exactly this
(a drift test checks it)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# Every revision this Legato knows, oldest first. The last one is what the code expects.
KNOWN_REVISIONS = (
    "0001",
    "0002",
    "0003",
    "0004",
    "0005",
    "0006",
    "0007",
    "0008",
    "0009",
    "0010",
    "0011",
    "0012",
    "0013",
    "0014",
    "0015",
)
HEAD_REVISION = KNOWN_REVISIONS[-1]

metadata = MetaData()

flow_runs = Table(
    "flow_runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("flow", String(200), nullable=False),
    Column("state", String(20), nullable=False),
    Column("parameters", Text, nullable=False, default="{}"),
    Column("parent_task_run_id", String(36)),
    Column("pool", String(100)),
    Column("tags", Text, nullable=False, default="[]"),
    Column("result", Text),
    Column("error", Text),
    Column("source", Text),
    Column("owner", String(200)),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("updated_at", Float, nullable=False),
    # Placed on a pool's workers (0003), like task runs: see queue.py.
    Column("deployment", String(200)),
    Column("version", String(64)),
    Column("worker", String(200)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("queued_at", Float),
    Column("lease_expires_at", Float),
    # 0015: claimed before lower ones (queue.py); its task runs' priorities start from it.
    Column("priority", Integer, nullable=False, server_default="0"),
    Index("ix_flow_runs_created", "created_at"),
    Index("ix_flow_runs_queue", "pool", "state", "queued_at"),
    Index("ix_flow_runs_lease", "state", "lease_expires_at"),
    Index("ix_flow_runs_flow_created", "flow", "created_at"),
    Index("ix_flow_runs_state_created", "state", "created_at"),
    Index("ix_flow_runs_parent", "parent_task_run_id"),
    # The dashboard's runs page: top-level runs newest first (0007).
    Index("ix_flow_runs_top_created", "parent_task_run_id", "created_at"),
)

task_runs = Table(
    "task_runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("flow_run_id", String(36), nullable=False),
    Column("task", String(200), nullable=False),
    Column("key", String(300), nullable=False),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("pool", String(100)),
    Column("worker", String(200)),
    Column("resources", Text, nullable=False, default="{}"),
    Column("tags", Text, nullable=False, default="[]"),
    Column("depends_on", Text, nullable=False, default="[]"),
    Column("cache_key", String(128)),
    Column("result", Text),
    Column("error", Text),
    Column("child_flow_run_id", String(36)),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
    # Queued for a pool's workers (0002): ready since queued_at; the holder's lease ends at
    # lease_expires_at; the attempt number is the fencing token.
    Column("queued_at", Float),
    Column("lease_expires_at", Float),
    Column("max_attempts", Integer, nullable=False, server_default="1"),
    Column("payload", Text),
    # The engine's name for the attempt running it (0006): Slurm job id, Dask key, Job name.
    Column("engine_job_id", String(200)),
    # Replay (0009): the call's input fingerprint and one hash per argument, so a resumed
    # flow matches calls by their inputs; superseded_at marks a record whose inputs changed
    # on resume (it stays in the history, its result is never served again).
    Column("fingerprint", String(64)),
    Column("input_hashes", Text),
    Column("superseded_at", Float),
    # A forced rerun (0014, `legato runs rerun`) supersedes records too: who asked for it.
    Column("rerun_by", String(200)),
    # 0015: higher is claimed first; within one priority a pool shares out by top-level
    # run (root_id), so a week of 1,000 child runs counts as one.
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("root_id", String(36)),
    Column("claim_key", Float),  # 0015: claims take the lowest first (store/fairness.py)
    Column("expected_duration", Float),  # 0015: @task(expected_duration=): the long alert
    UniqueConstraint("flow_run_id", "key", name="uq_task_runs_flow_run_key"),
    Index("ix_task_runs_state", "state"),
    Index("ix_task_runs_queue", "pool", "state", "queued_at"),
    Index("ix_task_runs_claim", "pool", "state", "claim_key"),
    Index("ix_task_runs_owner", "root_id", "pool", "state", "claim_key"),
    Index("ix_task_runs_lease", "state", "lease_expires_at"),
)

state_history = Table(
    "state_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(36), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("state", String(20), nullable=False),
    Column("at", Float, nullable=False),
    Column("message", Text),
    Index("ix_state_history_run", "run_id", "id"),
)

logs = Table(
    "logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("flow_run_id", String(36), nullable=False),
    Column("task_run_id", String(36)),
    Column("at", Float, nullable=False),
    Column("level", Integer, nullable=False),
    Column("logger", String(200), nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_logs_flow_run", "flow_run_id", "id"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("flow_run_id", String(36), nullable=False),
    Column("task_run_id", String(36)),
    Column("kind", String(20), nullable=False),
    Column("title", Text),
    Column("data", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_artifacts_flow_run", "flow_run_id", "created_at"),
)

cache_entries = Table(
    "cache_entries",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("task", String(200), nullable=False),
    Column("task_run_id", String(36), nullable=False),
    Column("result", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),
)

questions = Table(
    "questions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("flow_run_id", String(36), nullable=False),
    Column("key", String(300), nullable=False),
    Column("prompt", Text, nullable=False),
    Column("schema", Text, nullable=False),
    Column("state", String(20), nullable=False),
    Column("default", Text),
    Column("answer", Text),
    Column("answered_by", String(200)),
    Column("answered_at", Float),
    Column("error", Text),
    Column("created_at", Float, nullable=False),
    Column("timeout_at", Float),
    Column("notify", Text),  # 0013: JSON list of channels ask(notify=...) named
    UniqueConstraint("flow_run_id", "key", name="uq_questions_flow_run_key"),
    Index("ix_questions_state", "state", "created_at"),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("pool", String(100), nullable=False),
    Column("host", String(200)),
    Column("pid", Integer),
    Column("capacity", Text, nullable=False),
    Column("used", Text, nullable=False),
    Column("state", String(20), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("last_heartbeat", Float, nullable=False),
    Column("version", String(50)),
    # 0011: the token that registered the worker; only it may heartbeat and finish its work.
    Column("token_id", String(36)),
    Index("ix_workers_pool", "pool", "state"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("last_used_at", Float),
    Column("revoked_at", Float),
    # 0011: the pools a runner token may work for (JSON list; NULL: every pool), and when the
    # token stops working (NULL: never).
    Column("pools", Text),
    Column("expires_at", Float),
)

# 0011: dashboard sessions, so logging out ends a session on the server (its cookie names
# the id; a revoked or expired row no longer admits it).
dashboard_sessions = Table(
    "dashboard_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("token_id", String(36), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("revoked_at", Float),
    Index("ix_dashboard_sessions_token", "token_id"),
)

deployments = Table(
    "deployments",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("flow", String(200), nullable=False),
    Column("source", Text, nullable=False),
    Column("pool", String(100), nullable=False),
    Column("parameters", Text, nullable=False),
    Column("tags", Text, nullable=False),
    Column("version", String(64)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # 0011: the flow's parameters as a JSON schema, recorded at deploy, so the server checks
    # a run's parameters without importing the flow (NULL: recorded before 0011).
    Column("parameter_schema", Text),
    Column("priority", Integer, nullable=False, server_default="0"),  # 0015: its runs'
)

concurrency_limits = Table(
    "concurrency_limits",
    metadata,
    # "tag:NAME", "pool:NAME" or "flow:NAME"; at most `limit` task runs RUNNING at once.
    Column("name", String(300), primary_key=True),
    Column("limit", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)

pools = Table(
    "pools",
    metadata,
    # A pool served by legato's own workers ("process") or by an engine (0006): "slurm",
    # "dask", "kubernetes"; options (JSON) say how to reach and use it.
    Column("name", String(100), primary_key=True),
    Column("type", String(20), nullable=False),
    Column("options", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

# -- schedules, triggers, notifications (0005): see store/triggers.py -------------------------

schedules = Table(
    "schedules",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("deployment", String(200), nullable=False),
    Column("cron", String(200)),
    Column("timezone", String(64), nullable=False),
    Column("every", Float),
    Column("catchup", String(10), nullable=False),
    Column("paused", Boolean, nullable=False),
    Column("parameters", Text, nullable=False),
    Column("next_at", Float),
    Column("last_at", Float),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_schedules_due", "paused", "next_at"),
    Index("ix_schedules_deployment", "deployment"),
)

# One row per (deployment, scheduled time) that started a run: the exactly-once key, inserted
# in the transaction that inserts the run.
scheduled_runs = Table(
    "scheduled_runs",
    metadata,
    Column("deployment", String(200), nullable=False),
    Column("scheduled_at", Float, nullable=False),
    Column("schedule_id", String(36)),
    Column("flow_run_id", String(36), nullable=False),
    Column("created_at", Float, nullable=False),
    PrimaryKeyConstraint("deployment", "scheduled_at", name="pk_scheduled_runs"),
)

triggers = Table(
    "triggers",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("deployment", String(200), nullable=False),
    Column("config", Text, nullable=False),
    Column("paused", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Files a file trigger started runs for, by path + size + mtime (a rewritten file is new).
trigger_files = Table(
    "trigger_files",
    metadata,
    Column("trigger", String(200), nullable=False),
    Column("path", String(2000), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime", Float, nullable=False),
    Column("flow_run_id", String(36), nullable=False),
    Column("created_at", Float, nullable=False),
    PrimaryKeyConstraint("trigger", "path", "size", "mtime", name="pk_trigger_files"),
)

# Signed webhook deliveries already accepted: a replay of one is refused.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("hook", String(200), nullable=False),
    Column("delivery", String(128), nullable=False),
    Column("received_at", Float, nullable=False),
    Column("flow_run_id", String(36)),
    PrimaryKeyConstraint("hook", "delivery", name="pk_webhook_deliveries"),
    Index("ix_webhook_deliveries_received", "received_at"),
)

notify_rules = Table(
    "notify_rules",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("events", Text, nullable=False),
    Column("channel", String(500), nullable=False),
    Column("flow", String(200)),
    Column("created_at", Float, nullable=False),
)

# The outbox: each message once (dedup_key), retried with backoff until sent or failed.
notifications = Table(
    "notifications",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("dedup_key", String(300), nullable=False, unique=True),
    Column("rule_id", String(36)),
    Column("channel", String(500), nullable=False),
    Column("event", String(40), nullable=False),
    Column("flow_run_id", String(36)),
    Column("payload", Text, nullable=False),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
    Index("ix_notifications_due", "state", "next_attempt_at"),
    Index("ix_notifications_created", "created_at"),
)

# Where background readers of append-only tables got to (the notifier's place in the history).
cursors = Table(
    "cursors",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", Float, nullable=False),
)

applied_requests = Table(
    "applied_requests",
    metadata,
    # Ids of write batches already committed (0008): a batch re-sent after a lost answer
    # (the server restarted mid-request) is not applied twice. Pruned after a day.
    Column("id", String(64), primary_key=True),
    Column("at", Float, nullable=False),
    Index("ix_applied_requests_at", "at"),
)

# Who changed what (0010): answers, cancels, retries, tokens, deployments, triggers, rules...
# Written by the server for what its routes and pages do, and by the CLI in embedded mode;
# ``detail`` is small JSON that never holds a secret.
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("action", String(50), nullable=False),
    Column("target", String(500), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_audit_events_at", "at"),
    Index("ix_audit_events_action", "action", "id"),
)

# 0012: share links (legato.sharing). Only a SHA-256 of a link's secret is stored, and a
# password only as a scrypt hash; ``items`` is the JSON list of what the link gives.
shares = Table(
    "shares",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("hash", String(64), nullable=False, unique=True),
    Column("flow_run_id", String(36), nullable=False),
    Column("items", Text, nullable=False),
    Column("note", Text),
    Column("password", String(200)),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("revoked_at", Float),
    Index("ix_shares_flow_run", "flow_run_id"),
)

# 0012: every use of a share link: when, from where, what, how many bytes went out.
share_accesses = Table(
    "share_accesses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("share_id", String(36), nullable=False),
    Column("at", Float, nullable=False),
    Column("client", String(100), nullable=False),
    Column("item", String(1000), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("status", Integer, nullable=False),
    Index("ix_share_accesses_share", "share_id", "id"),
)
