"""The executor's dispatch of the online steps (a fake server): build-index-concurrently runs its statement on the
lock session; online-rewrite and abort-online go to the engine with the run's connect, the run's tag and the
stopper's lock check. The engine itself runs against PostgreSQL in integration/test_online_engine.py."""

from __future__ import annotations

from typing import Any

import pytest

from migrator.core.planner import AbortOnline, BuildIndexConcurrently, OnlineRewrite, Step
from migrator.core.vendor import VendorSchema
from migrator.run import migrate as migrate_module
from migrator.run import online
from migrator.run.lock import HeldLock
from migrator.run.migrate import Report, Shell
from migrator.run.stopper import Stopper
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
