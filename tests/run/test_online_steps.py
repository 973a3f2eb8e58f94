"""The executor's dispatch of the online steps (a fake server): build-index-concurrently runs its statement on the
lock session; online-rewrite and abort-online go to the engine with the run's connect, the run's tag and the
stopper's lock check. The engine itself runs against PostgreSQL in integration/test_online_engine.py."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, cast

import pytest
import structlog.testing

from migrator.core.online import Phase
from migrator.core.planner import AbortOnline, BuildIndexConcurrently, OnlineRewrite, Step
from migrator.core.shadow import trigger_statements
from migrator.core.vendor import VendorSchema
from migrator.db.interface import Database
from migrator.errors import UnsafeStateError
from migrator.run import migrate as migrate_module
from migrator.run import online
from migrator.run.lock import HeldLock
from migrator.run.migrate import Report, Shell
from migrator.run.stopper import Stopper
from tests.core.test_shadow import SHAPE
from tests.run.fakes import FakeServer, FakeTool
from tests.run.test_migrate import settings


def execute(server: FakeServer, step: Step) -> Stopper:
    session = server.connect(settings(), primary=True)
    shell = Shell(settings(), "temporal-sql-tool", server.vendor, FakeTool(server), server.connect)
    stopper = Stopper(settings(), session, HeldLock(session, "temporal", 1), connect=server.connect)
    migrate_module._execute(session, shell, step, Report(), stopper)
    return stopper


def test_build_index_concurrently_runs_its_statement_on_the_lock_session(mini_vendor: VendorSchema) -> None:
    server = FakeServer(mini_vendor)
    text = "CREATE INDEX CONCURRENTLY IF NOT EXISTS by_x ON t (x)"
    execute(server, BuildIndexConcurrently("1.1", "t", "by_x", text))
    assert server.named("run") == [text]
    assert server.named("execute") == []  # not taken for a vendor statement of the store's sequence


def test_the_online_steps_go_to_the_engine(mini_vendor: VendorSchema, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(online, "rewrite", lambda *args: calls.append(("rewrite", args)))
    monkeypatch.setattr(online, "abort", lambda *args: calls.append(("abort", args)))
    server = FakeServer(mini_vendor)
    step = OnlineRewrite("visits", ("1.13", "1.14"), ("ALTER TABLE visits ADD COLUMN x int",), "estimate 40 s")
    stopper = execute(server, step)
    (name, (given, connect, tag, carried, check)), *_ = calls
    assert (name, carried, tag) == ("rewrite", step, stopper.application_name)
    assert given == settings()
    assert connect == server.connect
    assert check == stopper.poll  # the engine checks the lock between batches
    assert tag == f"temporal-migrator-tool/{stopper.own_pid}"
    execute(server, AbortOnline("visits"))
    assert [name for name, _ in calls] == ["rewrite", "abort"]
    assert calls[1][1][3] == AbortOnline("visits")
    assert server.named("run") == []  # the engine's statements are its own session's, not the lock session's


def test_online_progress_is_one_redrawn_line_on_a_terminal_then_one_event(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[str] = []
    checks: list[int] = []
    monkeypatch.setattr(online, "draw", drawn.append)
    progress = online.Progress(0.0, "visits", in_place=True, check=lambda: checks.append(1))
    with structlog.testing.capture_logs() as logged:
        progress.report(Phase.COPY, rows=2000, rows_per_second=4000)
        progress.report(Phase.COPY, rows=4000, rows_per_second=4000)
        progress.report(Phase.COPY, final=True, rows=4500)
    assert [line.split(" ", 1)[1] for line in drawn] == [
        "ddl.progress online copy visits 0s rows 2000 rows_per_second 4000",
        "ddl.progress online copy visits 0s rows 4000 rows_per_second 4000",
    ]
    assert [(event["event"], event["online"], event["rows"]) for event in logged] == [("ddl.progress", "copy", 4500)]
    assert len(checks) == 3  # the lock is checked whenever progress is reported


def test_online_progress_is_events_at_most_every_interval_in_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(online, "draw", lambda line: pytest.fail(f"drawn: {line}"))
    progress = online.Progress(60.0, "visits")
    with structlog.testing.capture_logs() as logged:
        for backlog in (900, 800, 700):
            progress.report(Phase.CATCHUP, backlog=backlog, trend=-100)
        progress.report(Phase.CATCHUP, final=True, backlog=150, trend=-550)
    assert [event["backlog"] for event in logged] == [900, 150]


def test_the_vendor_statements_are_sorted_for_the_shadow_and_refused_before_any_ddl() -> None:
    step = OnlineRewrite(
        "visits",
        ("1.13",),
        (
            "ALTER TABLE visits ADD COLUMN IF NOT EXISTS x bigint GENERATED ALWAYS AS ((doc->'X')::bigint) STORED",
            "DO $$ BEGIN END $$",
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS by_x ON visits (namespace_id, x)",
        ),
        "test",
    )
    work = online.ShadowWork.of(step)
    assert work.alters == (step.statements[0],)
    assert work.indexes == ("CREATE INDEX IF NOT EXISTS by_x ON temporal_migrator_online.visits (namespace_id, x)",)
    refused = OnlineRewrite("visits", ("1.13",), ("UPDATE visits SET x = 1",), "test")
    with pytest.raises(UnsafeStateError, match=r"cannot apply to a shadow.*changed nothing"):
        online.ShadowWork.of(refused)


class Recorder:
    """A session that records the engine's statements with the transactions around them: no capture trigger yet,
    no session holding the table, every lock granted."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def run(self, query: object, params: Sequence[Any], doing: str) -> list[tuple[Any, ...]]:
        text = query if isinstance(query, str) else repr(query)
        self.log.append(" ".join([text, *map(str, params)]))
        return [] if "FROM pg_locks" in text else [(0,)]

    @contextlib.contextmanager
    def transaction(self, doing: str, *, repeatable: bool = False) -> Iterator[None]:
        self.log.append("BEGIN")
        yield
        self.log.append("COMMIT")


def test_the_capture_triggers_wait_for_their_lock_no_longer_than_the_swap() -> None:
    """Their lock blocks the table's writes while it waits: looked for first, autovacuum and long writers (not
    readers) postpone the attempt, and the wait is half of --max-stall (1 s), not --ddl-lock-timeout (5 s)."""
    session = Recorder()
    step = OnlineRewrite("visits", ("1.13",), (), "estimate 40 s")
    engine = online.Engine(
        cast(Database, session), settings(), "temporal", SHAPE, step, lambda: None, online.ShadowWork((), ())
    )
    engine.capture()
    triggers = session.log.index("BEGIN")
    holders = session.log[triggers - 1]
    assert "FROM pg_locks" in holders
    assert "RowExclusiveLock" in holders
    assert "AccessShareLock" not in holders
    assert session.log[triggers + 1] == "SELECT set_config('lock_timeout', %s, true) 500ms"
    assert session.log[triggers + 2 : session.log.index("COMMIT")] == list(trigger_statements(SHAPE))
