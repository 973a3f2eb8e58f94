"""The stopper against fake sessions: it cancels the run's statements without any watcher, from whichever
connection still answers, stops a tool run whose lock is gone, and keeps the server's evidence of lock waits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from migrator.cli.options import build_settings
from migrator.db.driver import Driver
from migrator.db.session import tool_application_name
from migrator.errors import LockLostError, Terminated, UnreachableError
from migrator.run.lock import HeldLock
from migrator.run.stopper import Stopper

LOCK_PID = 4242
TOOL_PID = 5151
BLOCKER_PID = 6161


class FakeSession:
    """A session the stopper talks to: what it was asked, in order; ``dead`` answers every query with an error."""

    def __init__(self, pid: int, *, holds: bool = True, dead: bool = False, waiting: bool | None = False) -> None:
        """``waiting``: the tool's session runs a statement waiting for a lock (True), one not waiting (False), or
        none (None: idle, not listed)."""
        self.backend_pid = pid
        self.holds = holds
        self.dead = dead
        self.waiting = waiting
        self.started = 1  # when the tool session's statement started: a new value is a later statement
        self.asked: list[tuple[str, tuple[Any, ...]]] = []
        self.closed = False

    def holds_lock(self, key: int) -> bool:
        return self.holds and not self.dead

    def query(self, query: object, params: Sequence[Any], doing: str) -> list[tuple[Any, ...]]:
        text = str(query)
        self.asked.append((text, tuple(params)))
        if self.dead:
            raise UnreachableError(f"{doing} failed: server closed the connection unexpectedly")
        if "pg_cancel_backend" in text:
            return [(TOOL_PID, True)]
        if "pg_blocking_pids" in text and "pg_stat_progress_create_index" not in text:
            if self.waiting is None:
                return []
            return (
                [(TOOL_PID, True, [BLOCKER_PID], self.started)]
                if self.waiting
                else [(TOOL_PID, False, [], self.started)]
            )
        return []  # the settle loop's look at what still runs, and naming the connection

    def close(self) -> None:
        self.closed = True

    def cancels(self) -> list[tuple[Any, ...]]:
        return [params for text, params in self.asked if "pg_cancel_backend" in text]


def stopper(lock_session: FakeSession, *opened: FakeSession | Exception) -> Stopper:
    """A stopper whose own (and any later) connections are ``opened`` in turn: a session or a refusal."""
    queue = list(opened)

    def opener() -> Driver:
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return cast(Driver, item)

    settings = build_settings("migrate", {"user": "temporal"}, {})
    driver = cast(Driver, lock_session)
    return Stopper(settings, driver, HeldLock(driver, "temporal", 99), opener=opener)


def fail_inside(stop: Stopper, error: Exception) -> None:
    """A run that reached its DDL (the stopper connected) and then ended with ``error``."""
    with stop:
        stop.start()
        raise error


def test_a_run_that_fails_cancels_its_statements_from_the_stoppers_own_connection() -> None:
    lock_session, own = FakeSession(LOCK_PID), FakeSession(7000)
    with capture_logs() as events, pytest.raises(Terminated):
        fail_inside(stopper(lock_session, own), Terminated("terminated by SIGTERM"))
    assert own.cancels() == [(tool_application_name(LOCK_PID), LOCK_PID)]
    assert lock_session.cancels() == []
    assert own.closed
    cancelled = [e for e in events if e["event"] == "ddl.cancelled"]
    assert cancelled == [
        {
            "event": "ddl.cancelled",
            "pids": [TOOL_PID],
            "reason": "Terminated",
            "connection": "own",
            "log_level": "warning",
        }
    ]


def test_without_its_own_connection_it_cancels_from_the_lock_session() -> None:
    """The connection limit let the lock session and the tool in, not one more (nor the progress watcher)."""
    lock_session = FakeSession(LOCK_PID)
    refused = UnreachableError("too many connections for role temporal (SQLSTATE 53300)")
    with capture_logs() as events, pytest.raises(Terminated):
        fail_inside(stopper(lock_session, refused), Terminated("terminated by SIGTERM"))
    assert lock_session.cancels() == [(tool_application_name(LOCK_PID), LOCK_PID)]
    assert [e["event"] for e in events] == ["stop.connection_unavailable", "ddl.cancelled"]


def test_with_the_lock_session_gone_too_it_cancels_from_a_new_connection() -> None:
    lock_session, later = FakeSession(LOCK_PID, dead=True), FakeSession(7001)
    refused = UnreachableError("too many connections")
    with capture_logs() as events, pytest.raises(LockLostError):
        fail_inside(stopper(lock_session, refused, later), LockLostError("lost"))
    assert later.cancels() == [(tool_application_name(LOCK_PID), LOCK_PID)]
    assert later.closed
    assert [(e["event"], e.get("connection")) for e in events] == [
        ("stop.connection_unavailable", None),
        ("ddl.cancel_failed", "lock session"),
        ("ddl.cancelled", "new"),
    ]


def test_a_run_that_succeeds_cancels_nothing_and_a_no_op_opens_no_connection() -> None:
    lock_session, own = FakeSession(LOCK_PID), FakeSession(7000)
    with stopper(lock_session, own) as stop:
        stop.start()
    assert (own.cancels(), own.closed) == ([], True)
    with stopper(lock_session, AssertionError("a no-op run must not connect")):
        pass


def test_a_signal_while_it_connects_is_not_taken_for_a_refused_connection() -> None:
    with pytest.raises(Terminated), stopper(FakeSession(LOCK_PID), Terminated("terminated by SIGINT", 2)) as stop:
        stop.start()


def test_poll_stops_the_tool_when_the_lock_session_no_longer_holds_the_lock() -> None:
    lock_session = FakeSession(LOCK_PID)
    stop = stopper(lock_session)
    stop.poll()
    lock_session.holds = False
    with pytest.raises(LockLostError, match="lost while the tool ran"):
        stop.poll()


class EndedBetweenTheTwoQuestions(FakeSession):
    """The server ends the lock session after it answered that it holds the lock."""

    def holds_lock(self, key: int) -> bool:
        held = super().holds_lock(key)
        self.dead = True
        return held


def test_a_lock_session_ended_between_its_lock_check_and_the_next_query_is_a_lost_lock() -> None:
    stop = stopper(EndedBetweenTheTwoQuestions(LOCK_PID))
    with pytest.raises(LockLostError, match="lost while the tool ran"):
        stop.poll()


def test_a_statement_keeps_what_it_was_last_seen_doing_while_it_runs_until_the_next_tool_run() -> None:
    """The look just after a lock timeout, before the tool reported it, sees the session idle, or still running
    the statement that is ending in its error: neither erases the wait; a later statement does; a new tool run
    starts afresh."""
    lock_session = FakeSession(LOCK_PID, waiting=True)
    stop = stopper(lock_session)
    stop.begin()
    stop.poll()
    assert (stop.saw_lock_wait(), stop.blocker_pids()) == (True, (BLOCKER_PID,))
    asked = [params for text, params in lock_session.asked if "IS NOT DISTINCT FROM 'Lock'" in text]
    assert asked == [(tool_application_name(LOCK_PID),)]  # this run's tool sessions only
    lock_session.waiting = False  # the same statement, no longer waiting: ending in its lock timeout
    stop.poll()
    assert (stop.saw_lock_wait(), stop.blocker_pids()) == (True, (BLOCKER_PID,))
    lock_session.waiting = None  # the statement gave up: the session is idle
    stop.poll()
    assert stop.saw_lock_wait()
    lock_session.waiting, lock_session.started = False, 2  # a later statement runs: the wait ended in its lock
    stop.poll()
    assert (stop.saw_lock_wait(), stop.blocker_pids()) == (False, ())
    lock_session.waiting = True
    stop.poll()
    stop.begin()
    assert not stop.saw_lock_wait()


def test_runs_are_told_apart_by_their_lock_sessions() -> None:
    assert tool_application_name(LOCK_PID) != tool_application_name(LOCK_PID + 1)
    assert tool_application_name(LOCK_PID).startswith("temporal-migrator-tool/")
