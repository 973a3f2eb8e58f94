"""Bounded lock waits for every DDL statement, ours and the tool's, and sessions that cannot outlive us.

The tool's sessions get their settings through the environment, which both of its drivers read (lib/pq for
``postgres12``, pgx for ``postgres12_pgx``): ``PGOPTIONS`` (merged after the user's own, so ours win) and
``PGAPPNAME``, the tag by which the progress watcher finds them and the stop path cancels them.
- ``lock_timeout``: a statement that waits longer for its lock fails with 55P03 instead of queueing every
  later query on that table behind it; the version is then partly applied and the repair engine finishes it.
- ``statement_timeout=0``: a long rewrite is legitimate (a role default must not cut it), a long wait is not.
- ``client_connection_check_interval``: the server notices a vanished client (``kill -9``) within seconds and
  cancels its statement instead of finishing it unrecorded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

TOOL_APPLICATION_NAME = "temporal-migrator-tool"
CONNECTION_CHECK_MS = 2000
CONNECTION_CHECK_SINCE = 140000  # client_connection_check_interval is PostgreSQL 14's; 12 and 13 refuse it
LOCK_NOT_AVAILABLE = "55P03"
# How the tool's drivers end an error's text: lib/pq "... (55P03)", pgx "... (SQLSTATE 55P03)".
_DRIVER_SQLSTATE = re.compile(r"\((?:SQLSTATE )?([0-9A-Z]{5})\)\s*$")


def milliseconds(seconds: float) -> int:
    return round(seconds * 1000)


def session_settings(lock_timeout: float, server_version: int) -> dict[str, int]:
    """The settings of every session that runs DDL (0 = no limit, PostgreSQL's own convention)."""
    settings = {"lock_timeout": milliseconds(lock_timeout), "statement_timeout": 0}
    if server_version >= CONNECTION_CHECK_SINCE:
        settings["client_connection_check_interval"] = CONNECTION_CHECK_MS
    return settings


def tool_session_env(lock_timeout: float, server_version: int, environ: Mapping[str, str]) -> dict[str, str]:
    """``PGAPPNAME`` and ``PGOPTIONS`` for the tool's child environment; the user's PGOPTIONS are kept first."""
    ours = " ".join(f"-c {name}={value}" for name, value in session_settings(lock_timeout, server_version).items())
    merged = f"{environ.get('PGOPTIONS', '').strip()} {ours}".strip()
    return {"PGAPPNAME": TOOL_APPLICATION_NAME, "PGOPTIONS": merged}


def driver_sqlstate(error_text: str) -> str | None:
    """The SQLSTATE the tool's driver printed at the end of an error (a code field, not message text)."""
    match = _DRIVER_SQLSTATE.search(error_text)
    return match.group(1) if match else None
