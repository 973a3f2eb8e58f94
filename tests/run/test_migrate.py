"""The migrate loop on a fake server and a fake tool (tests/run/fakes.py): retries, rounds, verification, the
verdict, the lock, cancel on stop and --create-database, in milliseconds and without PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from migrator.cli.options import build_settings
from migrator.core.online import OnlineProgress, Phase, TableFacts
from migrator.core.planner import Situation, plan
from migrator.core.settings import Settings
from migrator.core.sizes import TableSize
from migrator.core.state import Access, State
from migrator.core.vendor import VendorSchema
from migrator.errors import (
    AccessError,
    DDLError,
    ExitStatus,
    LockLostError,
    MigratorError,
    Terminated,
    UnsafeStateError,
)
from migrator.run import migrate as migrate_module
from migrator.run.migrate import Report, RunFailed, migrate
from tests.run.fakes import MAINTENANCE, FakeServer, FakeTool, statements_through

MB = 1024**2


def settings(**values: str | bool) -> Settings:
    return build_settings("migrate", {"user": "temporal", "database": "temporal", **values}, {})


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop's pauses between attempts are jittered up to 1 s, 2 s, ...; here a few milliseconds."""
    monkeypatch.setattr(migrate_module, "RETRY_FIRST_PAUSE", 0.001)


def run(server: FakeServer, tool: FakeTool | None = None, **values: str | bool) -> Report:
    vendor = server.vendor
    return migrate(
        settings(**values), "temporal-sql-tool", vendor, vendor.newest, connect=server.connect,
        tool_runner=tool or FakeTool(server),
    )  # fmt: skip


def failure(server: FakeServer, tool: FakeTool | None = None, **values: str | bool) -> tuple[MigratorError, Report]:
    with pytest.raises(RunFailed) as failed:
        run(server, tool, **values)
    assert isinstance(failed.value.error, MigratorError)
    return failed.value.error, failed.value.report


def at(vendor: VendorSchema, version: str, **fields: Any) -> FakeServer:
    """A store recorded at ``version``, with every statement up to it in place (unless ``applied`` says)."""
    fields = {"recorded": version, "applied": statements_through(version), **fields}
    return FakeServer(vendor, set_up=True, **fields)


Logs = list[MutableMapping[str, Any]]


def events(logs: Logs, name: str) -> list[MutableMapping[str, Any]]:
    return [event for event in logs if event["event"] == name]


def done_steps(logs: Logs) -> list[dict[str, Any]]:
    return [{k: v for k, v in event.items() if k not in ("event", "log_level")} for event in events(logs, "step.done")]


# -- the plan, carried out ---------------------------------------------------------------------------------


def test_an_empty_store_is_set_up_then_updated_one_step_done_per_planned_step(mini_vendor: VendorSchema) -> None:
    server = FakeServer(mini_vendor)
    planned = plan(server.state(), mini_vendor, mini_vendor.newest)
    with capture_logs() as logs:
        report = run(server)
    assert done_steps(logs) == [step.to_dict() for step in planned.steps] == report.steps
    assert server.named("tool") == ["setup-schema -v 0.0", f"update-schema -v {mini_vendor.newest.name}"]
    assert (server.recorded, server.lock_holder) == (mini_vendor.newest.name, None)  # and the lock released
    assert (report.from_version, report.to_version) == (None, mini_vendor.newest.name)


def test_a_second_run_starts_no_tool_and_opens_no_other_session(mini_vendor: VendorSchema) -> None:
    server = at(mini_vendor, mini_vendor.newest.name)
    report = run(server)
    assert report.steps == []
    assert server.named("tool") == []
    assert server.named("connect") == ["temporal"]  # the lock session only: no watcher for a no-op


def test_a_store_at_its_target_is_observed_without_definitions(mini_vendor: VendorSchema) -> None:
    """A no-op plans from which objects exist; reading definitions would double its catalog read."""
    server = at(mini_vendor, mini_vendor.newest.name)
    run(server)
    assert (len(server.named("presence")), server.named("definitions")) == (1, [])


def test_every_round_that_plans_pending_versions_reads_the_definitions(mini_vendor: VendorSchema) -> None:
    """From the second round on the statements are read already, so only the pending versions ask for them."""
    server = at(mini_vendor, "1.0")
    failure(server, FakeTool(server, does_nothing=True))
    assert len(server.named("definitions")) == len(server.named("presence")) == migrate_module.MAX_ROUNDS


def test_a_partly_applied_version_is_repaired_statement_by_statement(mini_vendor: VendorSchema) -> None:
    server = at(mini_vendor, "1.0", applied=statements_through("1.0") + 2)
    with capture_logs() as logs:
        report = run(server)
    assert [step["action"] for step in report.steps] == [
        "skip-statement", "skip-statement", "run-statement", "record-version", "update-schema",
    ]  # fmt: skip
    assert report.repaired_statements == 1
    assert [event["outcome"] for event in events(logs, "repair.statement")] == ["skipped", "skipped", "executed"]
    assert server.named("record_version") == [("1.1", "1.0")]
    assert server.recorded == mini_vendor.newest.name


def test_an_invalid_leftover_index_is_dropped_before_its_rebuild(mini_vendor: VendorSchema) -> None:
    # v1.2 stopped in its last statement, CREATE INDEX accounts_by_name: the build left the index INVALID
    server = at(mini_vendor, "1.1", applied=statements_through("1.2") - 1, invalid={"accounts_by_name"})
    report = run(server)
    assert report.steps[0] == {"action": "drop-invalid-index", "version": "1.2", "index": "accounts_by_name"}
    assert server.named("drop_index") == ["accounts_by_name"]
    assert server.recorded == mini_vendor.newest.name


# -- retries and rounds ------------------------------------------------------------------------------------


def test_a_lock_timeout_is_retried_and_the_partly_applied_version_repaired(mini_vendor: VendorSchema) -> None:
    server = at(mini_vendor, "1.0")
    tool = FakeTool(server, gives_up=[2])  # the first update gives up on v1.1's third statement
    with capture_logs() as logs:
        report = run(server, tool)
    [retrying] = events(logs, "ddl.retrying")
    assert "55P03" in retrying["cause"]
    assert [step["action"] for step in report.steps] == [  # after the update that gave up (not done)
        "skip-statement", "skip-statement", "run-statement", "record-version", "update-schema",
    ]  # fmt: skip
    assert server.named("tool") == [f"update-schema -v {mini_vendor.newest.name}"] * 2
    assert server.named("execute") == [" ".join(mini_vendor.versions[1].statements[2].text.split())]
    assert server.recorded == mini_vendor.newest.name


def test_a_statement_still_blocked_after_the_retry_timeout_fails_with_exit_7(mini_vendor: VendorSchema) -> None:
    server = at(mini_vendor, "1.0")
    tool = FakeTool(server, gives_up=[0] * 10_000)  # every update gives up on its first statement
    error, _ = failure(server, tool, ddl_retry_timeout="0.2")
    assert isinstance(error, DDLError)
    assert error.status is ExitStatus.DDL_FAILED
    assert "still blocked after --ddl-retry-timeout 0.2s" in str(error)
    assert len(server.named("tool")) >= 2
    assert server.lock_holder is None


def test_a_plan_that_does_not_converge_fails_after_the_last_round(mini_vendor: VendorSchema) -> None:
    server = at(mini_vendor, "1.0")
    error, report = failure(server, FakeTool(server, does_nothing=True))
    assert isinstance(error, DDLError)
    assert "did not converge" in str(error)
    assert len(server.named("tool")) == migrate_module.MAX_ROUNDS
    assert [step["action"] for step in report.steps] == ["update-schema"] * migrate_module.MAX_ROUNDS


# -- verification ------------------------------------------------------------------------------------------


def test_a_run_whose_result_differs_from_a_clean_install_fails_with_exit_7(mini_vendor: VendorSchema) -> None:
    server = at(mini_vendor, "1.1")
    server.on("tool", lambda: server.missing.add("later"))  # the update "succeeds" without its table
    error, report = failure(server)
    assert isinstance(error, DDLError)
    assert "differs from a clean install" in str(error)
    assert "table later" in str(error)
    assert [step["action"] for step in report.steps] == ["update-schema"]


def test_a_run_that_did_nothing_does_not_verify(mini_vendor: VendorSchema) -> None:
    """Verifying would read every SQL file of the tree; a no-op reads none, and has nothing to redo anyway."""
    server = at(mini_vendor, mini_vendor.newest.name, missing={"later"})
    with capture_logs() as logs:
        report = run(server)
    assert (report.steps, report.to_version) == ([], mini_vendor.newest.name)
    assert events(logs, "verify.differs") == []
    assert server.named("tool") == []


# -- the verdict: nothing runs when the plan says stop -------------------------------------------------------


@pytest.mark.parametrize(("limit", "stopped"), [("1MB", True), ("100MB", False)])
def test_the_rewrite_guard_stops_before_any_ddl(mini_vendor: VendorSchema, limit: str, stopped: bool) -> None:
    server = at(mini_vendor, "1.1", sizes={"accounts": TableSize(10_000, 5 * MB)})  # v1.2 rebuilds an index
    if stopped:
        error, report = failure(server, max_rewrite_size=limit)
        assert isinstance(error, UnsafeStateError)
        assert "larger than --max-rewrite-size 1 MB" in str(error)
        assert (report.steps, server.named("tool")) == ([], [])
    else:
        assert run(server, max_rewrite_size=limit).to_version == mini_vendor.newest.name
    assert "reading table sizes" in server.named("query")


def test_the_guard_reads_no_sizes_on_a_no_op(mini_vendor: VendorSchema) -> None:
    server = at(mini_vendor, mini_vendor.newest.name)
    run(server, max_rewrite_size="1MB")
    assert "reading table sizes" not in server.named("query")


def test_the_preflight_stops_before_any_ddl_with_exit_4(mini_vendor: VendorSchema) -> None:
    server = FakeServer(mini_vendor, access=Access(user="temporal", can_create_in_schema=False))
    error, report = failure(server)
    assert isinstance(error, AccessError)
    assert 'GRANT CREATE ON SCHEMA "public" TO "temporal"' in str(error)
    assert (report.steps, server.named("tool"), server.lock_holder) == ([], [], None)


def test_a_refused_state_changes_nothing_with_exit_6(mini_vendor: VendorSchema) -> None:
    server = at(mini_vendor, "1.1", recorded="one point one")
    error, report = failure(server)
    assert isinstance(error, UnsafeStateError)
    assert (report.steps, server.named("tool"), server.named("execute")) == ([], [], [])


# -- the lock ----------------------------------------------------------------------------------------------


def lose_lock(server: FakeServer) -> Callable[[], None]:
    def lose() -> None:
        server.lock_lost = True

    return lose


def test_a_lock_lost_before_the_first_step_runs_no_step(mini_vendor: VendorSchema) -> None:
    server = FakeServer(mini_vendor)
    server.on("holds_lock", lose_lock(server))
    error, report = failure(server)
    assert isinstance(error, LockLostError)
    assert error.status is ExitStatus.UNREACHABLE
    assert "before step setup-schema 0.0" in str(error)
    assert (report.steps, server.named("tool")) == ([], [])


def test_a_lock_lost_during_a_tool_run_stops_the_run_after_it(mini_vendor: VendorSchema) -> None:
    server = FakeServer(mini_vendor)
    server.on("tool", lose_lock(server))  # while setup-schema runs
    error, report = failure(server)
    assert isinstance(error, LockLostError)
    assert "after setup-schema 0.0" in str(error)
    assert [step["action"] for step in report.steps] == ["setup-schema"]
    assert server.named("tool") == ["setup-schema -v 0.0"]  # the update never started


def test_a_lock_lost_after_a_repair_statement_runs_nothing_more(mini_vendor: VendorSchema) -> None:
    server = at(mini_vendor, "1.1", applied=statements_through("1.1") + 1)  # v1.2: three statements to run
    server.on("execute", lose_lock(server))
    error, report = failure(server)
    assert isinstance(error, LockLostError)
    assert len(server.named("execute")) == 1
    assert server.named("record_version") == []
    assert report.steps[-1]["action"] == "run-statement"


def test_the_lock_is_waited_for_then_taken(mini_vendor: VendorSchema) -> None:
    server = at(mini_vendor, mini_vendor.newest.name, lock_holder=7)

    def release() -> None:
        server.lock_holder = None

    server.on("try_lock", lambda: None, release)  # held at the first try, released before the second
    run(server)
    assert len(server.named("try_lock")) == 2


# -- stopping ----------------------------------------------------------------------------------------------


def test_a_stop_during_a_tool_run_cancels_the_runs_statements_on_the_server(mini_vendor: VendorSchema) -> None:
    server = at(mini_vendor, "1.0")

    def terminated() -> None:
        server.running.append(4242)  # the tool's statement, still on the server when the signal arrives
        raise Terminated("terminated by SIGTERM; the tool (if running) was stopped first", 15)

    server.on("tool", terminated)
    with capture_logs() as logs:
        error, _ = failure(server)
    assert isinstance(error, Terminated)
    assert server.named("cancel") == [[4242]]
    assert [event["pids"] for event in events(logs, "ddl.cancelled")] == [[4242]]
    assert server.lock_holder is None


def test_a_failed_run_cancels_nothing_when_nothing_of_it_is_running(mini_vendor: VendorSchema) -> None:
    server = at(mini_vendor, "1.0")
    server.on("tool", DDLError("temporal-sql-tool update-schema failed with exit code 1"))
    failure(server)
    assert server.named("cancel") == [[]]


# -- --create-database -------------------------------------------------------------------------------------


def test_a_missing_database_is_created_as_the_first_step_of_its_plan(mini_vendor: VendorSchema) -> None:
    server = FakeServer(mini_vendor, exists=False)
    absent_state = State("temporal", access=Access(can_create_database=True), exists=False)
    absent = plan(absent_state, mini_vendor, mini_vendor.newest)
    assert absent.situation is Situation.ABSENT
    with capture_logs() as logs:
        report = run(server, create_database=True)
    assert report.steps == [step.to_dict() for step in absent.steps] == done_steps(logs)
    assert server.named("create_database") == ["temporal"]
    assert [event["state"] for event in events(logs, "state.observed")] == ["absent", "empty"]
    assert server.named("connect")[:3] == ["temporal", MAINTENANCE, MAINTENANCE]


def test_an_existing_database_never_touches_the_maintenance_database(mini_vendor: VendorSchema) -> None:
    server = FakeServer(mini_vendor, postgres_refused=True)
    report = run(server, create_database=True)
    assert [step["action"] for step in report.steps] == ["setup-schema", "update-schema"]
    assert MAINTENANCE not in server.named("connect")
    assert server.named("create_database") == []


def test_a_missing_database_without_createdb_stops_with_exit_4(mini_vendor: VendorSchema) -> None:
    server = FakeServer(mini_vendor, exists=False, may_create_databases=False)
    error, report = failure(server, create_database=True)
    assert isinstance(error, AccessError)
    assert 'ALTER ROLE "temporal" CREATEDB' in str(error)
    assert (report.steps, server.named("create_database"), server.exists) == ([], [], False)


def test_a_database_created_meanwhile_by_another_run_is_used(mini_vendor: VendorSchema) -> None:
    server = FakeServer(mini_vendor, exists=False)

    def other_run_creates_it() -> None:
        server.exists = True

    server.on("create_database", other_run_creates_it)
    with capture_logs() as logs:
        report = run(server, create_database=True)
    assert [event.get("created_by") for event in events(logs, "database.exists")] == ["another session"]
    assert report.steps[0] == {"action": "create-database", "database": "temporal"}


def test_without_the_flag_a_missing_database_is_not_created(mini_vendor: VendorSchema) -> None:
    server = FakeServer(mini_vendor, exists=False)
    error, _ = failure(server)
    assert error.status is ExitStatus.UNREACHABLE
    assert server.named("create_database") == []


def test_a_database_created_between_the_two_looks_is_simply_connected_to(mini_vendor: VendorSchema) -> None:
    server = FakeServer(mini_vendor, exists=False)

    def created_meanwhile() -> None:
        server.exists = True

    server.on("connect", lambda: None, created_meanwhile)  # 3D000 on the target, then found in pg_database
    report = run(server, create_database=True)
    assert server.named("connect")[:3] == ["temporal", MAINTENANCE, "temporal"]
    assert server.named("create_database") == []
    assert [step["action"] for step in report.steps] == ["setup-schema", "update-schema"]


# -- online or plain ---------------------------------------------------------------------------------------


def test_a_no_op_reads_neither_sizes_nor_table_facts(mini_vendor: VendorSchema) -> None:
    server = at(mini_vendor, mini_vendor.newest.name)
    run(server)
    assert [doing for doing in server.named("query") if doing.startswith("reading")] == []


def test_a_small_table_stays_plain_in_auto_after_reading_its_facts(mini_vendor: VendorSchema) -> None:
    server = at(mini_vendor, "1.1", sizes={"accounts": TableSize(10_000, 5 * MB)})  # v1.2 rebuilds an index
    with capture_logs() as logs:
        assert run(server).to_version == mini_vendor.newest.name
    assert [step["action"] for step in done_steps(logs)] == ["update-schema"]
    assert server.named("query").count("reading table facts") == 1


def test_plain_mode_reads_no_table_facts(mini_vendor: VendorSchema) -> None:
    server = at(mini_vendor, "1.1", sizes={"accounts": TableSize(10_000, 500 * MB)})
    assert run(server, rewrite_mode="plain").to_version == mini_vendor.newest.name
    assert "reading table facts" not in server.named("query")
    assert "reading table sizes" not in server.named("query")  # nor sizes: no guard, no decision to make


def test_an_online_rewrite_refused_by_its_preflight_stops_before_any_ddl(mini_vendor: VendorSchema) -> None:
    unkeyed = TableFacts("accounts", 0, (), ("view account_names",), ())
    server = at(mini_vendor, "1.1", sizes={"accounts": TableSize(10, 8192)}, facts={"accounts": unkeyed})
    error, report = failure(server, rewrite_mode="online")
    assert isinstance(error, UnsafeStateError)
    assert "accounts has no primary key" in str(error)
    assert "view account_names" in str(error)
    assert (report.steps, server.named("tool"), server.named("execute")) == ([], [], [])


@pytest.mark.parametrize(
    ("phase", "values", "fix"),
    [
        (Phase.COPY, {"rewrite_mode": "plain"}, "migrate --abort-online to remove it first"),
        (Phase.CLEANUP, {"abort_online": True}, "run migrate without --abort-online to finish it"),
    ],
)
def test_a_rewrite_in_progress_refuses_what_cannot_run_beside_it(
    mini_vendor: VendorSchema, phase: Phase, values: dict[str, Any], fix: str
) -> None:
    server = at(mini_vendor, "1.1", online=OnlineProgress("accounts", ("1.2",), phase))
    error, report = failure(server, **values)
    assert isinstance(error, UnsafeStateError)
    assert fix in str(error)
    assert (report.steps, server.named("tool"), server.named("execute"), server.recorded) == ([], [], [], "1.1")


def test_abort_online_with_nothing_in_progress_changes_nothing_and_warns(mini_vendor: VendorSchema) -> None:
    server = at(mini_vendor, "1.1")
    with capture_logs() as logs:
        report = run(server, abort_online=True)
    assert (report.steps, report.to_version, server.named("tool")) == ([], "1.1", [])
    assert any("nothing to abort" in event["warning"] for event in events(logs, "plan.warning"))
