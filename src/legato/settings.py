"""Every LEGATO_* environment variable, in one pydantic-settings class.

The README's configuration table lists the same fields; keep the two in step.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from legato.errors import ConfigurationError


def parse_resources(text: str) -> dict[str, float]:
    """Parse ``gpu=2,cpu=8,mem_gb=64`` into a dict; raise ConfigurationError on bad input."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigurationError(
                f"bad resource {part!r}: expected NAME=NUMBER, e.g. gpu=2,cpu=8,mem_gb=64"
            ) from None
    return out


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEGATO_", extra="ignore")

    home: Path = Field(
        default_factory=lambda: Path.home() / ".legato",
        description="Folder for the embedded database, results and logs.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the state database; default sqlite in LEGATO_HOME.",
    )
    result_storage: str | None = Field(
        default=None,
        description="fsspec URL or folder for serialized results; default LEGATO_HOME/results.",
    )
    inline_result_max_bytes: int = Field(
        default=65536, description="JSON results up to this size are stored inline in the DB."
    )
    resources: str | None = Field(
        default=None,
        description="Local capacity, e.g. gpu=2,cpu=8,mem_gb=64; default: detected.",
    )
    max_workers: int | None = Field(
        default=None, description="Threads for concurrent tasks in embedded mode; default 32."
    )
    capture_output: bool = Field(
        default=False, description="Store tasks' print()/stderr output in the run's log."
    )
    log_level: str = Field(default="INFO", description="Lowest level stored from get_logger().")
    allow_pickle: bool = Field(
        default=True,
        description="Allow cloudpickle for results JSON cannot hold (only where you trust "
        "whoever can write the result storage).",
    )
    replay: Literal["rerun", "strict"] = Field(
        default="rerun",
        description="On resume, a call whose inputs match no record: 'rerun' runs it again; "
        "'strict' raises ReplayMismatch naming the argument that changed (per flow: "
        "@flow(replay=...)).",
    )

    remote_pools: bool | None = Field(
        default=None,
        description="Queue tasks that name a pool for that pool's workers instead of running "
        "them here; default: on when LEGATO_API_URL is set.",
    )
    heartbeat_seconds: float = Field(
        default=5.0, gt=0, description="How often workers renew their leases."
    )
    process_start: Literal["auto", "fork", "spawn"] = Field(
        default="auto",
        description="How fresh task processes start: fork (a fork server; Linux), spawn (a "
        "new interpreter each; portable), auto (fork on Linux, spawn elsewhere).",
    )
    user: str | None = Field(
        default=None, description="Who answers questions from this shell (default user@host)."
    )
    debug: bool = Field(default=False, description="Show tracebacks on CLI errors.")

    api_url: str | None = Field(
        default=None,
        description="URL of a Legato server (http://host:8787): runs, the CLI and workers "
        "record there instead of the embedded database.",
    )
    api_token: str | None = Field(
        default=None, description="Bearer token for LEGATO_API_URL (`legato tokens create`)."
    )
    server_host: str = Field(
        default="127.0.0.1", description="Address `legato server start` binds."
    )
    server_port: int = Field(
        default=8787, ge=1, le=65535, description="Port `legato server start` listens on."
    )
    max_body_bytes: int = Field(
        default=16 * 2**20, gt=0, description="Largest request body the server accepts."
    )
    max_waits_per_token: int = Field(
        default=256,
        ge=1,
        description="Long-polls (workers waiting for work, flows for remote tasks) one token "
        "may hold open on the server at once; more are refused with 429 and Retry-After.",
    )
    session_secret: str | None = Field(
        default=None,
        description="Key that signs dashboard session cookies; random per server start when "
        "unset (everyone logs in again after a restart). Set it when several servers share "
        "users. Changing it logs everyone out, unless the old key is kept in "
        "LEGATO_SESSION_OLD_SECRETS.",
    )
    session_old_secrets: str | None = Field(
        default=None,
        description="Comma-separated earlier LEGATO_SESSION_SECRET values: cookies they "
        "signed are still accepted, new ones are signed with LEGATO_SESSION_SECRET only (a "
        "key change without logging everyone out; docs/security.md).",
    )
    session_hours: float = Field(
        default=12.0,
        gt=0,
        description="How long a dashboard login lasts (its cookie and its row on the server).",
    )

    # -- schedules, triggers, notifications, Slack (docs/triggers.md, docs/slack.md) ---------
    public_url: str | None = Field(
        default=None,
        description="Address people open for the dashboard (https://legato.lab.org): run "
        "links in notifications and Slack messages.",
    )
    share_roots: str = Field(
        default="",
        description="Folders or fsspec URLs (comma-separated) whose files share links may "
        "give, besides the result storage, e.g. /data/recordings,s3://lab-extracted; "
        "anything outside them is refused.",
    )
    share_max_days: float = Field(
        default=90.0,
        gt=0,
        description="Longest a share link may live, in days (its default is 7 days).",
    )
    scheduler_tick: float = Field(
        default=5.0, gt=0, description="Seconds between scheduler and file-trigger passes."
    )
    slack_bot_token: str | None = Field(
        default=None, description="Slack bot token (xoxb-...) for questions and notifications."
    )
    slack_signing_secret: str | None = Field(
        default=None, description="Slack signing secret: requests from Slack are verified."
    )
    slack_channel: str | None = Field(
        default=None, description="Channel where ask() questions are posted (#lab or C0123)."
    )
    slack_api_url: str = Field(
        default="https://slack.com/api/", description="Slack Web API base URL (tests: a fake)."
    )
    slack_users: str = Field(
        default="",
        description="Slack user id -> Legato role, e.g. U123=operator,U456=viewer; others are "
        "refused.",
    )
    smtp_host: str = Field(default="localhost", description="SMTP server for email:… channels.")
    smtp_port: int = Field(default=25, ge=1, le=65535, description="SMTP port.")
    smtp_from: str = Field(default="legato@localhost", description="From address of emails.")
    smtp_user: str | None = Field(default=None, description="SMTP login (with smtp_password).")
    smtp_password: str | None = Field(default=None, description="SMTP password.")
    smtp_starttls: bool = Field(default=False, description="Upgrade SMTP with STARTTLS.")
    outbound_allow: str = Field(
        default="",
        description="Hosts, host:port or CIDRs the server may send webhooks to although they "
        "are not public (loopback, private, link-local), e.g. "
        "hooks.lab.internal,10.20.0.0/16,127.0.0.1:9000; others are refused.",
    )
    notify_rate_per_minute: int = Field(
        default=30, ge=1, description="Most notifications sent per channel per minute."
    )
    remind_after_hours: float | None = Field(
        default=24.0,
        gt=0,
        description="A question still waiting this many hours is posted again to its "
        "channels, and again after each such span (empty: never).",
    )
    late_after_minutes: float = Field(
        default=15.0,
        gt=0,
        description="A run queued for workers this long without starting is late: the "
        "`late` event of notification rules.",
    )

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value

    @field_validator("outbound_allow")
    @classmethod
    def _outbound(cls, value: str) -> str:
        from legato.outbound import Policy

        Policy.parse(value)  # a bad entry is an error at start, not a refusal at each send
        return value

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'legato.db'}"

    @property
    def results_url(self) -> str:
        return self.result_storage or str(self.home / "results")

    def local_resources(self) -> dict[str, float]:
        """Detected capacity, with what LEGATO_RESOURCES names replaced (gpu=2 keeps cpus)."""
        found = detect_resources()
        if self.resources:
            found.update(parse_resources(self.resources))
        return found


def detect_resources() -> dict[str, float]:
    """This machine's capacity: CPUs, memory and visible GPUs."""
    found: dict[str, float] = {"cpu": float(os.cpu_count() or 1)}
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        found["mem_gb"] = round(pages / 2**30, 1)
    except (ValueError, OSError):
        pass
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        found["gpu"] = float(len([d for d in visible.split(",") if d.strip()]))
    else:
        found["gpu"] = float(_nvidia_smi_count() or len(list(Path("/dev").glob("nvidia[0-9]*"))))
    return found


def _nvidia_smi_count() -> int:
    """GPUs `nvidia-smi -L` lists (0 without the tool or a driver)."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


@functools.cache
def _cached() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "LEGATO_" + str(first["loc"][0]).upper() if first["loc"] else "LEGATO_*"
        raise ConfigurationError(f"{name}: {first['msg']}") from None


def get_settings() -> Settings:
    """The settings read from the environment (cached; ``reset_settings()`` rereads)."""
    return _cached()


def reset_settings() -> None:
    _cached.cache_clear()


_SECRET_WORDS = ("token", "secret", "password")


def describe_settings(current: Settings | None = None) -> list[tuple[str, str, str]]:
    """(variable, default or current value, description) for every setting; secrets masked."""
    rows = []
    for name, field in Settings.model_fields.items():
        env = f"LEGATO_{name.upper()}"
        if current is not None:
            value = getattr(current, name)
        elif field.default_factory is not None:
            value = "~/.legato" if name == "home" else "see description"
        else:
            value = field.default
        shown = (
            "unset"
            if value is None
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
        )
        if current is not None and value and any(w in name for w in _SECRET_WORDS):
            shown = "****"
        rows.append((env, shown, field.description or ""))
    return rows
