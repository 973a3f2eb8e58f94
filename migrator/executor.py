"""The imperative shell: observe, plan, act, re-observe — under the lock — until the plan is empty."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import structlog
from psycopg import sql
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_delay, wait_random_exponential

from migrator.db import Connection, connect
from migrator.errors import (
    AccessError,
    DDLError,
    LockWaitError,
    UnreachableError,
    UnsafeStateError,
    WaitTimeoutError,
)
from migrator.impact import VersionImpact, impact_report, shorten, too_large
from migrator.lock import advisory_lock
from migrator.observe import observe
from migrator.online import bounded_lock_wait
from migrator.planner import Action, Plan, Situation, Step, access_problem, plan
from migrator.progress import Watcher
from migrator.settings import Settings
from migrator.sizes import read_sizes
from migrator.state import State
from migrator.tool import run_tool
from migrator.vendor import VendorSchema, VendorVersion
from migrator.versions import parse_version

log = structlog.get_logger("migrator")
# Pauses between attempts after a lock timeout: full jitter, up to 1 s, 2 s, 4 s ... capped at 30 s, so a
# short blocker costs a few seconds and a long one is not hammered every second.
RETRY_FIRST_PAUSE = 1.0
RETRY_MAX_PAUSE = 30.0

# temporal-sql-tool's own statements for recording a version (postgresql/admin.go), so a repaired version is
# recorded exactly as the tool records one: upsert of schema_version, then a row of schema_update_history.
_WRITE_VERSION = """
INSERT INTO schema_version (version_partition, db_name, creation_time, curr_version, min_compatible_version)
VALUES (0, %s, %s, %s, %s)
ON CONFLICT (version_partition, db_name) DO UPDATE
   SET creation_time = excluded.creation_time, curr_version = excluded.curr_version,
       min_compatible_version = excluded.min_compatible_version
"""
_WRITE_HISTORY = """
INSERT INTO schema_update_history
       (version_partition, year, month, update_time, old_version, new_version, manifest_md5, description)
VALUES (0, %s, %s, %s, %s, %s, %s, %s)
"""


@dataclass
class Report:
    """What a run did; logged as the last event and written to the termination-message file."""

    from_version: str | None = None
    to_version: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    repaired_statements: int = 0
    tool_seconds: float = 0.0


def observe_and_plan(
    conn: Connection, settings: Settings, vendor: VendorSchema, target: VendorVersion
) -> tuple[State, Plan]:
    state = observe(conn, settings.database, vendor)
    planned = plan(state, vendor, target)
    return state, planned


def _run_ddl(conn: Connection, settings: Settings, statement: sql.Composed | bytes, what: str) -> None:
    """One DDL statement of ours, with a bounded lock wait; a lock timeout is retried by `migrate`."""
    try:
        with bounded_lock_wait(conn, settings.ddl_lock_timeout):
            conn.execute(statement)
    except psycopg.errors.LockNotAvailable:
        raise LockWaitError(
            f"{what} gave up waiting for its lock after --ddl-lock-timeout {settings.ddl_lock_timeout:g}s"
        ) from None
    except psycopg.Error as error:
        raise DDLError(f"{what} failed (SQLSTATE {error.sqlstate}): {error}") from None


def _repair(conn: Connection, settings: Settings, state: State, version: VendorVersion, step: Step) -> int:
    """Run the statements a crashed attempt did not, verbatim, then record the version as the tool would."""
    for index, statement in enumerate(version.statements):
        outcome = "skipped" if index < step.applied else "executed"
        log.info(
            "repair.statement",
            version=version.name,
            index=index + 1,
            total=step.total,
            outcome=outcome,
            statement=" ".join(statement.text.split()),
        )
        if outcome == "executed":
            where = f"repair of v{version.name}, statement {index + 1} of {step.total} ({shorten(statement.text, 80)})"
            _run_ddl(conn, settings, statement.text.encode(), where)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    conn.execute(_WRITE_VERSION, (settings.database, now, version.name, version.min_compatible))
    conn.execute(
        _WRITE_HISTORY,
        (now.year, now.month, now, state.version, version.name, version.manifest_md5, version.description),
    )
    log.info("repair.recorded", version=version.name, old_version=state.version)
    return step.total - step.applied


def _execute(
    conn: Connection, settings: Settings, *, tool: str, vendor: VendorSchema, state: State, step: Step, report: Report
) -> None:
    if step.action is Action.SETUP:
        report.tool_seconds += run_tool(settings, tool, ["setup-schema", "-v", step.version])
    elif step.action is Action.DROP_INVALID_INDEX:
        log.info("repair.drop_invalid_index", version=step.version, index=step.index)
        drop = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(step.index))
        _run_ddl(conn, settings, drop, f"dropping the INVALID index {step.index}")
    elif step.action is Action.UPDATE:
        command = ["update-schema", "-d", str(vendor.versioned_dir), "-v", step.version]
        report.tool_seconds += run_tool(settings, tool, command)
    else:
        version = vendor.find(parse_version(step.version))
        assert version is not None, "the planner only repairs versions of the vendor tree"
        report.repaired_statements += _repair(conn, settings, state, version, step)
    report.steps.append(step.to_dict())


def _verify(state: State, planned: Plan, target: VendorVersion) -> None:
    if planned.situation not in (Situation.CURRENT, Situation.AHEAD):
        raise DDLError(f"after the run the database is {planned.situation} at {state.version}, not at {target.name}")
    invalid = state.catalog.invalid_indexes
    if invalid:
        raise DDLError(f"INVALID indexes remain after the run: {', '.join(invalid)}; rerun migrate to rebuild them")


def _converge(
    conn: Connection, settings: Settings, *, tool: str, vendor: VendorSchema, target: VendorVersion, run: Run
) -> tuple[State, Plan]:
    """Observe, plan, run the first step, re-observe, until the plan is empty (one attempt of `migrate`)."""
    previous: Step | None = None
    for _ in range(len(vendor.versions) + 3):
        state, planned = observe_and_plan(conn, settings, vendor, target)
        if not run.observed:
            run.observed = True
            run.report.from_version = state.version
            log.info("state.observed", **planned.to_dict(), invalid_indexes=list(state.catalog.invalid_indexes))
        if planned.refusal:
            raise UnsafeStateError(planned.refusal)
        if not planned.steps:
            for warning in planned.warnings:
                log.warning("plan.warning", warning=warning)
            return state, planned
        log.info("plan.made", steps=[step.to_dict() for step in planned.steps])
        problem = access_problem(state, planned)
        if problem:
            raise AccessError(problem)
        if not run.guarded:
            run.guarded = True
            _guard(conn, settings, planned)
        step = planned.steps[0]
        if step == previous:
            raise DDLError(f"step {step.to_dict()} left the database unchanged; see the tool.output events")
        run.watcher.start(planned.pending)
        _execute(conn, settings, tool=tool, vendor=vendor, state=state, step=step, report=run.report)
        previous = step
    raise DDLError("the run did not converge; see the plan.made events")


def _guard(conn: Connection, settings: Settings, planned: Plan) -> None:
    """--max-rewrite-size: refuse before any DDL when a pending statement rewrites or locks a larger table."""
    if settings.max_rewrite_size is None:  # the catalog's sizes are not even read
        return
    refusal = too_large(impact_of(conn, planned), settings.max_rewrite_size)
    if refusal:
        raise UnsafeStateError(refusal)


def _log_retry(watcher: Watcher) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        outcome = state.outcome
        log.warning(
            "ddl.retrying",
            attempt=state.attempt_number,
            elapsed=round(state.seconds_since_start or 0.0, 1),
            pause=round(state.upcoming_sleep, 1),
            cause=str(outcome.exception()) if outcome else None,
            blockers=[blocker.to_dict() for blocker in watcher.last_blockers],
        )

    return before_sleep


def _gave_up(error: LockWaitError, settings: Settings, watcher: Watcher) -> DDLError:
    """Exit 7 after --ddl-retry-timeout: name the blocker and the fix."""
    if watcher.last_blockers:
        who = "; ".join(str(blocker) for blocker in watcher.last_blockers)
        pids = ", ".join(str(blocker.pid) for blocker in watcher.last_blockers)
        fix = f"end that session (SELECT pg_terminate_backend(pid) for pid {pids}) or"
    else:
        who, fix = "a session that had gone by the time it was looked at", ""
    return DDLError(
        f"{error}; still blocked after --ddl-retry-timeout {settings.ddl_retry_timeout:g}s of retries, by {who}; "
        f"{fix} run migrate again when it is done (the version is finished by the repair then)"
    )


@dataclass
class Run:
    """What one `migrate` carries across retries."""

    report: Report
    watcher: Watcher
    observed: bool = False
    guarded: bool = False


def migrate(settings: Settings, tool: str, vendor: VendorSchema, target: VendorVersion) -> Report:
    """Bring the store to ``target``; a second run is a no-op that does not start the tool.

    A statement that gives up on its lock (``--ddl-lock-timeout``) leaves its version partly applied: the next
    attempt re-observes and repairs, after a jittered exponential pause, until ``--ddl-retry-timeout``.
    """
    report = Report()
    started = time.monotonic()
    with (
        connect(settings) as conn,
        advisory_lock(conn, settings.database, settings.lock_timeout),
        Watcher(settings, conn.info.backend_pid) as watcher,
    ):
        run = Run(report, watcher)
        retrying = Retrying(
            retry=retry_if_exception_type(LockWaitError),
            wait=wait_random_exponential(multiplier=RETRY_FIRST_PAUSE, max=RETRY_MAX_PAUSE),
            stop=stop_after_delay(settings.ddl_retry_timeout),
            before_sleep=_log_retry(watcher),
            reraise=True,
        )
        try:
            state, planned = retrying(_converge, conn, settings, tool=tool, vendor=vendor, target=target, run=run)
        except LockWaitError as error:
            raise _gave_up(error, settings, watcher) from None
        _verify(state, planned, target)
    report.to_version = state.version
    log.info(
        "migrate.done",
        from_version=report.from_version,
        to_version=report.to_version,
        steps=report.steps,
        repaired_statements=report.repaired_statements,
        tool_seconds=round(report.tool_seconds, 2),
        seconds=round(time.monotonic() - started, 2),
    )
    return report


def impact_of(conn: Connection, planned: Plan) -> list[VersionImpact]:
    """The impact report of the pending versions (the catalog's sizes are read only when some are pending)."""
    if not planned.pending:
        return []
    applied = next((step.applied for step in planned.steps if step.action is Action.REPAIR), 0)
    return impact_report(planned.pending, read_sizes(conn), applied)


def inspect(settings: Settings, vendor: VendorSchema, target: VendorVersion) -> tuple[State, Plan, list[VersionImpact]]:
    """Observe without the lock and without changing anything (status, plan), with the pending versions' impact."""
    with connect(settings) as conn:
        state, planned = observe_and_plan(conn, settings, vendor, target)
        return state, planned, impact_of(conn, planned)


def wait(settings: Settings, vendor: VendorSchema, target: VendorVersion, poll: float = 2.0) -> str:
    """Block until the store is at or above ``target``; connection trouble counts as "not yet"."""
    deadline = time.monotonic() + settings.wait_timeout
    last = None
    while True:
        remaining = deadline - time.monotonic()
        try:
            with connect(settings, timeout=max(0.0, min(settings.connect_timeout, remaining))) as conn:
                state = observe(conn, settings.database, vendor)
        except (UnreachableError, psycopg.OperationalError) as error:  # not up yet: keep waiting
            state, last = None, str(error)
        version = state.version if state else None
        try:
            reached = version is not None and parse_version(version) >= target.version
        except ValueError:
            reached = False
        if reached:
            log.info("wait.done", current_version=version, target_version=target.name)
            return version or ""
        if time.monotonic() + poll > deadline:
            raise WaitTimeoutError(
                f"store not at {target.name} within {settings.wait_timeout:g}s (current: {version}"
                f"{', last error: ' + last if last and state is None else ''}); check the schema migration Job"
            )
        log.info("wait.pending", current_version=version, target_version=target.name)
        time.sleep(poll)
