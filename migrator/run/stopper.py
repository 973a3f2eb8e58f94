"""The stopper: the safety of a run that ends early, or loses its lock, depending on nothing courteous.

- While the tool runs, the runner asks `Stopper.poll` a few times a second (on the main thread, over the lock
  session, which is idle then). If that session no longer holds the advisory lock, it raises `LockLostError` and
  the runner SIGTERMs the tool at once: a second migrator may take the lock from then on. It also notes which of
  the run's tool sessions wait for a heavyweight lock, the server's evidence that a statement that then failed
  gave up on ``lock_timeout`` (`saw_lock_wait`: a session's last statement was seen waiting), whatever the tool's
  driver printed.
- Leaving the context with an exception cancels every statement of this run still on the server (the run's
  tool sessions, tagged `tool_application_name` of the lock session's pid, and the lock session), so nothing of
  ours stays queued in front of Temporal's queries. It cancels from its own connection, opened before the first
  DDL; if that could not connect, from the lock session, and if that is gone too, from a new connection. The
  progress watcher (`migrator.run.watcher`) plays no part.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import structlog
from psycopg import sql

from migrator.core.settings import Settings
from migrator.db.catalog import Rows
from migrator.db.driver import Driver
from migrator.db.interface import Connect, Database
from migrator.db.session import tool_application_name
from migrator.errors import LockLostError, MigratorError, Terminated, UnreachableError
from migrator.run.lock import HeldLock

if TYPE_CHECKING:
    from migrator.db.activity import ToolStatement

log = structlog.get_logger("migrator.run.stopper")
STOPPER_APPLICATION_NAME = "temporal-migrator-stop"
CONNECT_SECONDS = 5.0  # at most, for its own connection: it must not hold up the run or its end for long


def _rows(driver: Database, doing: str) -> Rows:
    def rows(query: sql.Composable | str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return driver.query(query, params, doing)

    return rows


class Stopper:
    """Use as a context manager inside the lock; ``driver`` is the lock session."""

    def __init__(
        self,
        settings: Settings,
        driver: Database,
        lock: HeldLock,
        opener: Callable[[], Database] | None = None,
        *,
        connect: Connect = Driver.open,
    ) -> None:
        self.settings = settings
        self.driver = driver
        self.lock = lock
        self.own_pid = driver.backend_pid
        self.application_name = tool_application_name(self.own_pid)
        self.waits: dict[int, ToolStatement] = {}  # the statement each session was last seen waiting in
        self._own: Database | None = None
        self._connect = connect
        self._opener = opener or self._open

    def _open(self) -> Database:
        driver = self._connect(self.settings, timeout=min(CONNECT_SECONDS, self.settings.connect_timeout))
        try:
            driver.query("SELECT set_config('application_name', %s, false)", (STOPPER_APPLICATION_NAME,), "naming")
        except MigratorError:
            driver.close()
            raise
        return driver

    def __enter__(self) -> Stopper:
        return self

    def start(self) -> None:
        """Connect before the first DDL (a no-op run opens no connection); a failure is logged, not fatal."""
        if self._own is not None:
            return
        try:
            self._own = self._opener()
        except Terminated:
            raise
        except MigratorError as error:
            log.warning("stop.connection_unavailable", error=str(error), fallback="the lock session")

    def begin(self) -> None:
        """A tool run starts: what earlier runs' sessions did no longer counts."""
        self.waits = {}

    def poll(self) -> None:
        """Between looks at the running tool: stop it if the lock is lost; note the tool's lock waits."""
        from migrator.db.activity import tool_statements  # noqa: PLC0415 - only once the tool runs (see _cancel)

        if not self.driver.holds_lock(self.lock.key):
            raise self._lost()
        # A statement that gave up on its lock is over by the time the tool reports it, and the look just before
        # may come after that: a session seen idle, or gone, keeps the wait it was last seen in, and so does one
        # seen running the same statement without waiting (it is ending in its error). Only a later statement
        # (another start) shows that the wait ended in the lock.
        try:
            found = tool_statements(_rows(self.driver, "looking at the tool's sessions"), self.own_pid)
        except UnreachableError:  # the lock session ended since it was asked: the lock went with it
            raise self._lost() from None
        for pid, statement in found.items():
            if statement.blocked is not None:
                self.waits[pid] = statement
            elif pid in self.waits and self.waits[pid].started != statement.started:
                del self.waits[pid]

    def _lost(self) -> LockLostError:
        return LockLostError(
            f"the advisory lock on database {self.settings.database!r} was lost while the tool ran (the server "
            "ended our session: idle_session_timeout, a proxy's idle timeout, pg_terminate_backend or a "
            "failover); the tool was stopped and its statements cancelled; rerun migrate (it finishes a partly "
            "applied version)"
        )

    def saw_lock_wait(self) -> bool:
        return bool(self.waits)

    def blocker_pids(self) -> tuple[int, ...]:
        """Who blocked the tool's statements that were last seen waiting."""
        return tuple(sorted({pid for statement in self.waits.values() for pid in statement.blocked or ()}))

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            if kind is not None:
                self._cancel(type(error).__name__)
        finally:
            if self._own is not None:
                self._own.close()

    def _cancel(self, reason: str) -> None:
        """Cancel the run's statements from the first connection that answers (logged; never raises)."""
        # Imported here, not at the top: a run that finds nothing to do never looks at sessions.
        from migrator.db.activity import cancel_statements  # noqa: PLC0415

        candidates: list[tuple[str, Callable[[], Database | None]]] = [
            ("own", lambda: self._own),
            ("lock session", lambda: self.driver),
            ("new", self._fresh),
        ]
        for name, get in candidates:
            try:
                driver = get()
                if driver is None:
                    continue
                try:
                    cancelled = cancel_statements(_rows(driver, "cancelling the run's statements"), self.own_pid)
                finally:
                    if name == "new":
                        driver.close()
            except MigratorError as failure:
                log.warning("ddl.cancel_failed", connection=name, error=str(failure))
                continue
            if cancelled:
                log.warning("ddl.cancelled", pids=cancelled, reason=reason, connection=name)
            return

    def _fresh(self) -> Database | None:
        try:
            return self._opener()
        except MigratorError as error:
            log.warning("ddl.cancel_failed", connection="new", error=str(error))
            return None
