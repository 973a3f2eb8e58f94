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

import structlog

from migrator.db.interface import Database
from migrator.errors import LockLostError, LockTimeoutError, MigratorError

log = structlog.get_logger("migrator.run.lock")
REPORT_EVERY = 5.0
# Polling backoff: 50 ms doubling to 0.5 s, with ±50% jitter. A try-lock is one cheap statement, so a short
# ceiling costs the server little and lets waiters notice a released lock quickly (issue 5's contention goal).
FIRST_PAUSE = 0.05
MAX_PAUSE = 0.5


def lock_key(database: str) -> int:
    digest = hashlib.sha256(f"temporal-migrator:{database}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class HeldLock:
    """The lock while we hold it; `ensure_held` before each step and after each tool run."""

    def __init__(self, driver: Database, database: str, key: int) -> None:
        self.driver = driver
        self.database = database
        self.key = key

    def ensure_held(self, before: str) -> None:
        """Stop before ``before`` unless our session still holds the lock (the server may have ended it)."""
        if not self.driver.holds_lock(self.key):
            raise LockLostError(
                f"the advisory lock on database {self.database!r} was lost (the server ended our session: "
                f"idle_session_timeout, a proxy's idle timeout, pg_terminate_backend or a failover) before {before}; "
                "no further DDL was run; rerun migrate (it finishes a partly applied version)"
            )


@contextmanager
def advisory_lock(driver: Database, database: str, timeout: float) -> Iterator[HeldLock]:
    """Hold the lock for the body on ``driver``'s session, which must be dedicated to us (not behind PgBouncer)."""
    key = lock_key(database)
    start = time.monotonic()
    pause = FIRST_PAUSE
    next_report = start
    while not driver.try_lock(key):
        now = time.monotonic()
        if now - start >= timeout:
            raise LockTimeoutError(
                f"another migrator held the lock on database {database!r} for over {timeout:g}s "
                f"({driver.lock_holder(key) or 'holder gone'}); raise --lock-timeout or stop the other run"
            )
        if now >= next_report:
            log.info("lock.waiting", key=key, waited=round(now - start, 1), **driver.lock_holder(key))
            next_report = now + REPORT_EVERY
        time.sleep(min(pause * random.uniform(0.5, 1.5), max(0.0, timeout - (now - start))))
        pause = min(pause * 2, MAX_PAUSE)
    log.info("lock.acquired", key=key, waited=round(time.monotonic() - start, 2))
    try:
        yield HeldLock(driver, database, key)
    finally:
        try:
            driver.unlock(key)
            log.info("lock.released", key=key)
        except MigratorError as error:  # the lock dies with the connection anyway; never hide the first error
            log.warning("lock.release_failed", key=key, error=str(error))
