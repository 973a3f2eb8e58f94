"""A session-level advisory lock that serialises migrators of one database, taken by polling.

Key: the signed 64-bit integer made of the first 8 bytes of sha256("temporal-migrator:" + db_name), so every
migrator of the same store agrees on it without configuration (advisory locks are per database already).

Waiters poll ``pg_try_advisory_lock`` between sleeps (see FIRST_PAUSE/MAX_PAUSE) instead of blocking in
``pg_advisory_lock``: a waiter blocked inside a statement holds a snapshot, and the vendor's
``CREATE INDEX CONCURRENTLY`` run by the holder would wait for it forever — a deadlock PostgreSQL does not
detect. The lock dies with its connection, so a killed pod never leaves it behind.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import structlog

from migrator.errors import LockTimeoutError

log = structlog.get_logger("migrator.lock")
REPORT_EVERY = 5.0
# Polling backoff: 50 ms doubling to 0.5 s, with ±50% jitter. A try-lock is one cheap statement, so a short
# ceiling costs the server little and lets waiters notice a released lock quickly (issue 5's contention goal).
FIRST_PAUSE = 0.05
MAX_PAUSE = 0.5
_HOLDER = """
SELECT a.pid, a.application_name, a.backend_start, a.state_change, host(a.client_addr)
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.classid::bigint = (%(key)s >> 32) & 4294967295 AND l.objid::bigint = %(key)s & 4294967295
"""


def lock_key(database: str) -> int:
    digest = hashlib.sha256(f"temporal-migrator:{database}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _holder(conn: psycopg.Connection[tuple[Any, ...]], key: int) -> dict[str, Any]:
    row = conn.execute(_HOLDER, {"key": key}).fetchone()
    if row is None:
        return {}
    pid, application, started, since, address = row
    return {
        "holder_pid": pid,
        "holder_application": application,
        "holder_address": address,
        "holder_connected_at": started.isoformat() if started else None,
        "holder_since": since.isoformat() if since else None,
    }


@contextmanager
def advisory_lock(conn: psycopg.Connection[tuple[Any, ...]], database: str, timeout: float) -> Iterator[None]:
    """Hold the lock for the body; ``conn`` must be autocommit and dedicated to us (not behind PgBouncer)."""
    key = lock_key(database)
    start = time.monotonic()
    pause = FIRST_PAUSE
    next_report = start
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if row and row[0]:
            break
        now = time.monotonic()
        if now - start >= timeout:
            raise LockTimeoutError(
                f"another migrator held the lock on database {database!r} for over {timeout:g}s "
                f"({_holder(conn, key) or 'holder gone'}); raise --lock-timeout or stop the other run"
            )
        if now >= next_report:
            log.info("lock.waiting", key=key, waited=round(now - start, 1), **_holder(conn, key))
            next_report = now + REPORT_EVERY
        time.sleep(min(pause * random.uniform(0.5, 1.5), max(0.0, timeout - (now - start))))
        pause = min(pause * 2, MAX_PAUSE)
    log.info("lock.acquired", key=key, waited=round(time.monotonic() - start, 2))
    try:
        yield
    finally:
        try:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            log.info("lock.released", key=key)
        except psycopg.Error as error:  # the lock dies with the connection anyway
            log.warning("lock.release_failed", key=key, error=str(error))
