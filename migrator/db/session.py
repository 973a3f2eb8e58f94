"""The settings of every session of a run, ours and the tool's, in one table gated by server version.

Three kinds of session:
- the lock session (``LOCK``) holds the advisory lock and runs repair DDL: no server timeout may end it
  while the tool works (the lock would vanish with it), and its own DDL waits at most --ddl-lock-timeout;
- the tool's sessions (``TOOL``) get theirs, and `tool_application_name` (the tag by which the run finds,
  watches and cancels them), as startup parameters in its ``--connect-attributes``: every driver of the tool
  sends a DSN key it does not know to the server, and the server applies them after ``PGOPTIONS``, so ours win
  (pgx v5.7, the ``postgres12_pgx`` driver of Temporal v1.29, does not read ``PGOPTIONS`` at all);
- sessions that only read (``READ``: status, plan, wait, the watcher) never wait on a table lock: a catalog
  function that locks a table (``pg_total_relation_size``) gives up after ``READ_LOCK_TIMEOUT_MS``.

What each setting is for:
- ``lock_timeout``: a statement that waits longer for its lock fails with 55P03 instead of queueing every
  later query on that table behind it; the version is then partly applied and the repair engine finishes it.
- ``statement_timeout=0``: a long rewrite is legitimate (a role default must not cut it), a long wait is not.
- ``idle_in_transaction_session_timeout=0``, ``idle_session_timeout=0``: the lock session sits idle while
  the tool works; a role's or database's default must not end it.
- ``client_connection_check_interval``: the server notices a vanished client (``kill -9``) within seconds and
  cancels its statement instead of finishing it unrecorded.

A server that does not know a parameter refuses it (42704 from ``set_config``, FATAL at connection time from
``options``/``PGOPTIONS``), so each row names the ``server_version_num`` from which PostgreSQL has it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

TOOL_APPLICATION_NAME = "temporal-migrator-tool"


def tool_application_name(lock_pid: int) -> str:
    """The tag of one run's tool sessions: the lock session's pid is unique among live sessions, so no other run
    (and no user's ``application_name``) shares it."""
    return f"{TOOL_APPLICATION_NAME}/{lock_pid}"


CONNECTION_CHECK_MS = 2000
READ_LOCK_TIMEOUT_MS = 1000
# PostgreSQL's lock_timeout and statement_timeout are int milliseconds (guc_tables.c: max INT_MAX).
MAX_TIMEOUT_MS = 2**31 - 1


class Session(Enum):
    LOCK = "lock"
    TOOL = "tool"
    READ = "read"


class _DDLLockTimeout:
    """The value of ``lock_timeout`` given by --ddl-lock-timeout."""


DDL_LOCK_TIMEOUT = _DDLLockTimeout()
Value = int | _DDLLockTimeout


@dataclass(frozen=True)
class Setting:
    name: str
    since: int  # the first server_version_num that knows the parameter
    values: dict[Session, Value]  # a session kind missing here leaves the server's own value


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "lock_timeout",
        90300,
        {Session.LOCK: DDL_LOCK_TIMEOUT, Session.TOOL: DDL_LOCK_TIMEOUT, Session.READ: READ_LOCK_TIMEOUT_MS},
    ),
    Setting("statement_timeout", 70300, {Session.LOCK: 0, Session.TOOL: 0}),
    Setting("idle_in_transaction_session_timeout", 90600, {Session.LOCK: 0}),
    Setting("idle_session_timeout", 140000, {Session.LOCK: 0}),
    Setting(
        "client_connection_check_interval",
        140000,
        {Session.LOCK: CONNECTION_CHECK_MS, Session.TOOL: CONNECTION_CHECK_MS},
    ),
)


def milliseconds(seconds: float) -> int:
    return round(seconds * 1000)


def settings_for(session: Session, server_version: int, lock_timeout: float = 0) -> dict[str, int]:
    """The settings of one kind of session on a server of ``server_version`` (0 = no limit, PostgreSQL's own
    convention); ``lock_timeout`` is --ddl-lock-timeout in seconds."""
    chosen: dict[str, int] = {}
    for setting in SETTINGS:
        value = setting.values.get(session)
        if value is None or server_version < setting.since:
            continue
        chosen[setting.name] = milliseconds(lock_timeout) if isinstance(value, _DDLLockTimeout) else value
    return chosen


def session_settings(lock_timeout: float, server_version: int) -> dict[str, int]:
    """The tool's sessions' settings (its ``PGOPTIONS``)."""
    return settings_for(Session.TOOL, server_version, lock_timeout)


def startup_options(session: Session, oldest_server: int) -> str:
    """libpq ``options`` (``-c name=value``) for settings every supported server knows, sent with the startup
    packet: no round trip. Those of newer servers need the server's version, known only once connected."""
    return " ".join(f"-c {name}={value}" for name, value in settings_for(session, oldest_server).items())
