"""The imperative shell: observe, plan, act, re-observe — under the lock — until the plan is empty."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
import structlog
from psycopg import sql

from migrator.db import Connection, connect
from migrator.errors import AccessError, DDLError, UnreachableError, UnsafeStateError, WaitTimeoutError
from migrator.lock import advisory_lock
from migrator.observe import observe
from migrator.planner import Action, Plan, Situation, Step, access_problem, plan
from migrator.settings import Settings
from migrator.state import State
from migrator.statements import Kind, Statement
from migrator.tool import run_tool
from migrator.vendor import VendorSchema, VendorVersion
from migrator.versions import parse_version

log = structlog.get_logger("migrator")

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


def _drop_crashed_index_builds(conn: Connection, state: State, statement: Statement) -> None:
    """An interrupted CREATE INDEX CONCURRENTLY leaves an INVALID index of the vendor's name; drop it first."""
    for effect in statement.effects:
        if effect.ref.kind is Kind.INDEX and effect.present and state.catalog.indexes.get(effect.ref.name) is False:
            log.info("repair.drop_invalid_index", index=effect.ref.name)
            conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(effect.ref.name)))


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
            _drop_crashed_index_builds(conn, state, statement)
            try:
                conn.execute(statement.text.encode())
            except psycopg.Error as error:
                raise DDLError(
                    f"repair of v{version.name} failed at statement {index + 1} of {step.total} "
                    f"(SQLSTATE {error.sqlstate}): {error}"
                ) from None
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


def migrate(settings: Settings, tool: str, vendor: VendorSchema, target: VendorVersion) -> Report:
    """Bring the store to ``target``; a second run is a no-op that does not start the tool."""
    report = Report()
    started = time.monotonic()
    with connect(settings) as conn, advisory_lock(conn, settings.database, settings.lock_timeout):
        previous: Step | None = None
        for attempt in range(len(vendor.versions) + 3):
            state, planned = observe_and_plan(conn, settings, vendor, target)
            if attempt == 0:
                report.from_version = state.version
                log.info("state.observed", **planned.to_dict(), invalid_indexes=list(state.catalog.invalid_indexes))
            if planned.refusal:
                raise UnsafeStateError(planned.refusal)
            if not planned.steps:
                for warning in planned.warnings:
                    log.warning("plan.warning", warning=warning)
                break
            log.info("plan.made", steps=[step.to_dict() for step in planned.steps])
            problem = access_problem(state, planned)
            if problem:
                raise AccessError(problem)
            step = planned.steps[0]
            if step == previous:
                raise DDLError(f"step {step.to_dict()} left the database unchanged; see the tool.output events")
            _execute(conn, settings, tool=tool, vendor=vendor, state=state, step=step, report=report)
            previous = step
        else:
            raise DDLError("the run did not converge; see the plan.made events")
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


def inspect(settings: Settings, vendor: VendorSchema, target: VendorVersion) -> tuple[State, Plan]:
    """Observe without the lock and without changing anything (status, plan)."""
    with connect(settings) as conn:
        return observe_and_plan(conn, settings, vendor, target)


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
