"""Bounded lock waits for every DDL statement, ours and the tool's, and sessions that cannot outlive us.

The tool's sessions get these settings, and `tool_application_name` (the tag by which the run finds, watches and
cancels them), as startup parameters in its ``--connect-attributes``: every driver of the tool sends a DSN key it
does not know to the server, and the server applies them after ``PGOPTIONS``, so ours win (pgx v5.7, the
``postgres12_pgx`` driver of Temporal v1.29, does not read ``PGOPTIONS`` at all).
- ``lock_timeout``: a statement that waits longer for its lock fails with 55P03 instead of queueing every
  later query on that table behind it; the version is then partly applied and the repair engine finishes it.
- ``statement_timeout=0``: a long rewrite is legitimate (a role default must not cut it), a long wait is not.
- ``client_connection_check_interval``: the server notices a vanished client (``kill -9``) within seconds and
  cancels its statement instead of finishing it unrecorded.
"""

from __future__ import annotations

TOOL_APPLICATION_NAME = "temporal-migrator-tool"


def tool_application_name(lock_pid: int) -> str:
    """The tag of one run's tool sessions: the lock session's pid is unique among live sessions, so no other run
    (and no user's ``application_name``) shares it."""
    return f"{TOOL_APPLICATION_NAME}/{lock_pid}"


CONNECTION_CHECK_MS = 2000
CONNECTION_CHECK_SINCE = 140000  # client_connection_check_interval is PostgreSQL 14's; 12 and 13 refuse it


def milliseconds(seconds: float) -> int:
    return round(seconds * 1000)


def session_settings(lock_timeout: float, server_version: int) -> dict[str, int]:
    """The settings of every session that runs DDL (0 = no limit, PostgreSQL's own convention)."""
    settings = {"lock_timeout": milliseconds(lock_timeout), "statement_timeout": 0}
    if server_version >= CONNECTION_CHECK_SINCE:
        settings["client_connection_check_interval"] = CONNECTION_CHECK_MS
    return settings
