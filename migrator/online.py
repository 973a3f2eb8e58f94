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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
import structlog
from psycopg import sql

log = structlog.get_logger("migrator.online")
TOOL_APPLICATION_NAME = "temporal-migrator-tool"
CONNECTION_CHECK_MS = 2000
LOCK_NOT_AVAILABLE = "55P03"
# How the tool's drivers end an error's text: lib/pq "... (55P03)", pgx "... (SQLSTATE 55P03)".
_DRIVER_SQLSTATE = re.compile(r"\((?:SQLSTATE )?([0-9A-Z]{5})\)\s*$")


def milliseconds(seconds: float) -> int:
    return round(seconds * 1000)


def session_settings(lock_timeout: float) -> dict[str, int]:
    """The settings of every session that runs DDL (0 = no limit, PostgreSQL's own convention)."""
    return {
        "lock_timeout": milliseconds(lock_timeout),
        "statement_timeout": 0,
        "client_connection_check_interval": CONNECTION_CHECK_MS,
    }


def tool_session_env(lock_timeout: float, environ: Mapping[str, str]) -> dict[str, str]:
    """``PGAPPNAME`` and ``PGOPTIONS`` for the tool's child environment; the user's PGOPTIONS are kept first."""
    ours = " ".join(f"-c {name}={value}" for name, value in session_settings(lock_timeout).items())
    merged = f"{environ.get('PGOPTIONS', '').strip()} {ours}".strip()
    return {"PGAPPNAME": TOOL_APPLICATION_NAME, "PGOPTIONS": merged}


def driver_sqlstate(error_text: str) -> str | None:
    """The SQLSTATE the tool's driver printed at the end of an error (a code field, not message text)."""
    match = _DRIVER_SQLSTATE.search(error_text)
    return match.group(1) if match else None


@contextmanager
def bounded_lock_wait(conn: psycopg.Connection[tuple[Any, ...]], lock_timeout: float) -> Iterator[None]:
    """Our own DDL session's settings for the body (repair statements); back to the session default after."""
    settings = session_settings(lock_timeout)
    for name, value in settings.items():
        conn.execute(sql.SQL("SELECT set_config({}, {}, false)").format(sql.Literal(name), sql.Literal(str(value))))
    try:
        yield
    finally:
        try:
            for name in settings:
                conn.execute(sql.SQL("RESET {}").format(sql.Identifier(name)))
        except psycopg.Error as error:  # a broken session dies with the run; never hide the original error
            log.warning("ddl.reset_failed", error=str(error))
