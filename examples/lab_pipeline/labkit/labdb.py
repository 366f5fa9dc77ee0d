"""The lab's own database: sessions, recordings, QC verdicts and statistics, in PostgreSQL
(server mode, LAB_DATABASE_URL) or SQLite (embedded). Every write is an upsert on the row's
natural key, so running a step again updates its rows and never adds duplicates."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    create_engine,
    func,
)
from sqlalchemy import Table as _Table
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

metadata = MetaData()

sessions = _Table(
    "sessions",
    metadata,
    Column("session_id", String(100), primary_key=True),
    Column("recorded_on", String(10), nullable=False),
    Column("subjects", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), server_default=func.now()),
)
recordings = _Table(
    "recordings",
    metadata,
    Column("recording", String(200), primary_key=True),
    Column("session_id", String(100), ForeignKey("sessions.session_id"), nullable=False),
    Column("video", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("frames", Integer, nullable=False),
    Column("fps", Float, nullable=False),
    Column("predictions", Text),
    Column("updated_at", DateTime(timezone=True), server_default=func.now()),
)
qc_verdicts = _Table(
    "qc_verdicts",
    metadata,
    Column("recording", String(200), ForeignKey("recordings.recording"), primary_key=True),
    Column("verdict", String(20), nullable=False),  # pass | approved | rejected
    Column("reasons", Text, nullable=False),
    Column("missing_fraction", Float, nullable=False),
    Column("mean_confidence", Float, nullable=False),
    Column("identity_swaps", Integer),
    Column("mean_pixel_error", Float),
    Column("updated_at", DateTime(timezone=True), server_default=func.now()),
)
statistics = _Table(
    "statistics",
    metadata,
    Column("recording", String(200), primary_key=True),
    Column("subject", String(50), primary_key=True),  # an animal, or "pair" for both
    Column("measure", String(100), primary_key=True),
    Column("value", Float, nullable=False),
    Column("updated_at", DateTime(timezone=True), server_default=func.now()),
)
TABLES = {t.name: t for t in (sessions, recordings, qc_verdicts, statistics)}

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def engine(url: str) -> Engine:
    """One engine per database URL in this process, its tables created on first use."""
    with _lock:
        found = _engines.get(url)
        if found is None:
            if url.startswith("sqlite:///"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            args = {"timeout": 30} if url.startswith("sqlite") else {}
            # psycopg 3 (Legato's own driver) for a plain postgresql:// URL
            driver = url.replace("postgresql://", "postgresql+psycopg://", 1)
            found = create_engine(driver, connect_args=args)
            _create_tables(found)
            _engines[url] = found
        return found


def _create_tables(eng: Engine) -> None:
    # Two workers may create them at once: whoever loses the race finds them made.
    for attempt in range(3):
        try:
            metadata.create_all(eng)
            return
        except DBAPIError:
            if attempt == 2:
                raise


def upsert(url: str, table: str, rows: list[dict[str, Any]]) -> int:
    """Insert the rows, or update those whose key is already there; the rows written."""
    if not rows:
        return 0
    eng = engine(url)
    target = TABLES[table]
    if eng.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    keys = [c.name for c in target.primary_key.columns]
    stmt = insert(target)
    changed = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
    changed["updated_at"] = func.now()
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_=changed)
    with eng.begin() as conn:
        conn.execute(stmt, rows)
    return len(rows)


def count(url: str, table: str) -> int:
    """Rows in one of the lab's tables."""
    from sqlalchemy import select

    with engine(url).connect() as conn:
        return int(conn.execute(select(func.count()).select_from(TABLES[table])).scalar_one())


def statistic_rows(recording: str, found: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten nested statistics into (recording, subject, measure, value) rows: keys that
    name an animal give its subject, everything else is the pair's. A measure that could not
    be taken (NaN: an animal never seen) has no row."""
    rows: list[dict[str, Any]] = []

    def walk(prefix: str, subject: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key.startswith("animal "):
                    walk(prefix, key, inner)
                else:
                    walk(f"{prefix}.{key}" if prefix else key, subject, inner)
        elif isinstance(value, int | float) and math.isfinite(value):  # NaN: not measured
            rows.append(
                {
                    "recording": recording,
                    "subject": subject,
                    "measure": prefix,
                    "value": float(value),
                }
            )

    walk("", "pair", found)
    return rows
