"""What the DDL sessions of a run are doing, read from ``pg_stat_activity`` on a connection of its own.

The sessions are the run's tool sessions (tagged `migrator.db.session.tool_application_name` of the lock
session's pid, so another run's and a user's sessions never match) and our own lock session while it runs a repair
statement; client backends only, as a parallel build's workers repeat their leader's
query and application_name. Each query is one autocommit statement: no snapshot stays open, so the
vendor's ``CREATE INDEX CONCURRENTLY`` never waits for this connection for long (the instant it does, it is not
reported as a blocker). Details of a blocker owned by another
role (state, transaction age) need ``pg_read_all_stats``; without it PostgreSQL shows its pid and role only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from migrator.db.catalog import Rows
from migrator.db.session import tool_application_name

_RUNNING = """
SELECT a.pid, a.query, extract(epoch FROM clock_timestamp() - a.query_start)::float8,
       a.wait_event_type, a.wait_event, pg_blocking_pids(a.pid),
       p.phase, p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total
  FROM pg_stat_activity a LEFT JOIN pg_stat_progress_create_index p ON p.pid = a.pid
 WHERE a.datname = current_database() AND a.state = 'active' AND a.backend_type = 'client backend'
   AND a.pid <> pg_backend_pid() AND (a.application_name = %s OR a.pid = %s)
"""
_BLOCKERS = """
SELECT pid, usename, application_name, backend_type, state,
       extract(epoch FROM clock_timestamp() - xact_start)::float8, query_start
  FROM pg_stat_activity WHERE pid = ANY(%s) AND pid <> pg_backend_pid() ORDER BY pid
"""
_TOOL_STATEMENTS = """
SELECT a.pid, a.wait_event_type IS NOT DISTINCT FROM 'Lock', pg_blocking_pids(a.pid), a.query_start
  FROM pg_stat_activity a
 WHERE a.datname = current_database() AND a.state = 'active' AND a.backend_type = 'client backend'
   AND a.application_name = %s
"""
_CANCEL = """
SELECT pid, pg_cancel_backend(pid) FROM pg_stat_activity
 WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()
   AND (application_name = %s OR pid = %s)
"""


@dataclass(frozen=True)
class Blocker:
    pid: int
    role: str | None
    application_name: str | None
    backend_type: str | None  # "autovacuum worker" for an automatic VACUUM/ANALYZE in the way
    state: str | None
    transaction_seconds: float | None
    query_start: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "role": self.role,
            "application_name": self.application_name,
            "backend_type": self.backend_type,
            "state": self.state,
            "transaction_age": round(self.transaction_seconds, 1) if self.transaction_seconds is not None else None,
            "query_start": self.query_start.isoformat() if self.query_start else None,
        }

    def __str__(self) -> str:
        age = f", transaction open {self.transaction_seconds:.0f}s" if self.transaction_seconds is not None else ""
        who = self.application_name or self.backend_type or "no application_name"
        return f"pid {self.pid} ({who}, role {self.role}, {self.state}{age})"


@dataclass(frozen=True)
class Running:
    """One DDL statement in flight; ``phase`` and the counters come from ``pg_stat_progress_create_index``."""

    pid: int
    query: str
    seconds: float
    wait_event_type: str | None
    wait_event: str | None
    blocked_by: tuple[int, ...]
    phase: str | None = None
    blocks_done: int | None = None
    blocks_total: int | None = None
    tuples_done: int | None = None
    tuples_total: int | None = None


def running(rows: Rows, own_pid: int) -> list[Running]:
    found = rows(_RUNNING, (tool_application_name(own_pid), own_pid))
    return [
        Running(pid, query or "", seconds or 0.0, wtype, wevent, tuple(blocked or ()), *progress)
        for pid, query, seconds, wtype, wevent, blocked, *progress in found
    ]


@dataclass(frozen=True)
class ToolStatement:
    """A statement one of the run's tool sessions is running: when it started, and the blockers it waits for if
    it waits for a heavyweight lock (``wait_event_type = 'Lock'``; None if it does not)."""

    started: datetime | None
    blocked: tuple[int, ...] | None


def tool_statements(rows: Rows, own_pid: int) -> dict[int, ToolStatement]:
    """The run's tool sessions running a statement now: the server's own evidence that a statement that failed
    while waiting gave up on ``lock_timeout``, whatever the tool prints."""
    return {
        pid: ToolStatement(started, tuple(blocked or ()) if waiting else None)
        for pid, waiting, blocked, started in rows(_TOOL_STATEMENTS, (tool_application_name(own_pid),))
    }


def blockers(rows: Rows, pids: tuple[int, ...]) -> list[Blocker]:
    return [Blocker(*row) for row in rows(_BLOCKERS, (list(pids),))]


def cancel_statements(rows: Rows, own_pid: int, settle: float = 5.0) -> list[int]:
    """Cancel every statement of the run still on the server, and wait (up to ``settle`` s) until none is."""
    cancelled = [pid for pid, done in rows(_CANCEL, (tool_application_name(own_pid), own_pid)) if done]
    deadline = time.monotonic() + settle
    while cancelled and running(rows, own_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return cancelled
