"""The imperative shell: under the lock, observe, plan, and carry out the plan's steps — nothing else.

The executor decides nothing of its own: every action it takes is a step `plan` shows (the same words in
`plan`'s output and in the `step.done` events). Before each step and after each tool run it checks that its
session still holds the lock. After the plan it re-observes; a plan that does not converge in a few rounds,
or a catalog that does not match a clean install at the target, fails the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_delay, wait_random_exponential

from migrator.core.impact import too_large
from migrator.core.planner import Action, Plan, Situation, Step, access_problem, plan
from migrator.core.settings import Settings
from migrator.core.state import State
from migrator.core.vendor import VendorSchema, VendorVersion
from migrator.core.verify import verification_problems
from migrator.core.versions import parse_version
from migrator.db.driver import Driver
from migrator.errors import (
    AccessError,
    DDLError,
    LockWaitError,
    UnsafeStateError,
)
from migrator.logs import retry_fields
from migrator.run.inspect import impact_of, observe_and_plan
from migrator.run.lock import HeldLock, advisory_lock
from migrator.run.stopper import Stopper
from migrator.run.watcher import Watcher
from migrator.tool.runner import run_tool

log = structlog.get_logger("migrator")
# Rounds of observe → plan → execute: one normally; a second only if the first plan's tool run left work
# (for example a concurrent change). More means the plan does not converge.
MAX_ROUNDS = 3
# Pauses between attempts after a lock timeout: full jitter, up to 1 s, 2 s, 4 s ... capped at 30 s, so a
# short blocker costs a few seconds and a long one is not hammered every second.
RETRY_FIRST_PAUSE = 1.0
RETRY_MAX_PAUSE = 30.0


@dataclass
class Report:
    """What a run did; logged as the last event and written to the termination-message file."""

    from_version: str | None = None
    to_version: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    repaired_statements: int = 0
    tool_seconds: float = 0.0


class RunFailed(Exception):
    """A failure with the steps that completed before it (the CLI reports both)."""

    def __init__(self, error: Exception, report: Report) -> None:
        super().__init__(str(error))
        self.error = error
        self.report = report


def _run_tool(driver: Driver, settings: Settings, tool: str, command: list[str], stopper: Stopper) -> float:
    """The tool, tagged for this run and watched by the stopper (a lost lock stops it)."""
    return run_tool(
        settings,
        tool,
        command,
        server_version=driver.server_version,
        application_name=stopper.application_name,
        watch=stopper,
    )


def _execute(
    driver: Driver, settings: Settings, *, tool: str, vendor: VendorSchema, step: Step, report: Report, stopper: Stopper
) -> None:
    """Carry out one step, exactly as `plan` describes it."""
    if step.action is Action.SETUP:
        command = ["setup-schema", "-v", step.version]
        report.tool_seconds += _run_tool(driver, settings, tool, command, stopper)
    elif step.action is Action.UPDATE:
        command = ["update-schema", "-d", str(vendor.versioned_dir), "-v", step.version]
        report.tool_seconds += _run_tool(driver, settings, tool, command, stopper)
    elif step.action is Action.DROP_INVALID_INDEX:
        driver.drop_index(step.name)
    elif step.action in (Action.SKIP_STATEMENT, Action.RUN_STATEMENT):
        outcome = "skipped" if step.action is Action.SKIP_STATEMENT else "executed"
        log.info(
            "repair.statement",
            version=step.version,
            index=step.statement,
            total=step.total,
            outcome=outcome,
            statement=" ".join(step.text.split()),
        )
        if step.action is Action.RUN_STATEMENT:
            driver.execute(step.text, f"repair of v{step.version} at statement {step.statement} of {step.total}")
            report.repaired_statements += 1
    else:
        version = vendor.find(parse_version(step.version))
        assert version is not None, "the planner only records versions of the vendor tree"
        driver.record_version(version, step.old_version)
        log.info("repair.recorded", version=version.name, old_version=step.old_version)


def _run_plan(
    driver: Driver,
    lock: HeldLock,
    *,
    settings: Settings,
    tool: str,
    vendor: VendorSchema,
    steps: tuple[Step, ...],
    report: Report,
    stopper: Stopper,
) -> None:
    for step in steps:
        lock.ensure_held(f"step {step.action.value} {step.version}")
        _execute(driver, settings, tool=tool, vendor=vendor, step=step, report=report, stopper=stopper)
        report.steps.append(step.to_dict())
        log.info("step.done", **step.to_dict())
        if step.action in (Action.SETUP, Action.UPDATE):  # a tool run is long: was the lock held throughout?
            lock.ensure_held(f"anything after {step.action.value} {step.version}")


def _verify(driver: Driver, vendor: VendorSchema, target: VendorVersion, report: Report) -> State:
    """After a run that did something, the catalog must hold what a clean install at ``target`` holds (not only
    the version row). A run that did nothing only warns: failing it could not help, as there is nothing to redo."""
    state = driver.observe(vendor, seeds_after=report.from_version)
    planned = plan(state, vendor, target)
    if planned.situation not in (Situation.CURRENT, Situation.AHEAD):
        raise DDLError(f"after the run the database is {planned.situation} at {state.version}, not at {target.name}")
    if planned.situation is Situation.CURRENT:
        problems = verification_problems(state, vendor, target)
        if problems and not report.steps:
            log.warning("verify.differs", problems=problems)
        elif problems:
            raise DDLError(
                f"the database is recorded at {target.name} but differs from a clean install: "
                f"{'; '.join(problems[:5])}{' ...' if len(problems) > 5 else ''}; rerun migrate, and if it persists "
                "compare the schema with the vendor's files"
            )
    for warning in planned.warnings:
        log.warning("plan.warning", warning=warning)
    return state


@dataclass
class Run:
    """What one `migrate` carries across its attempts (an attempt ends early when a statement gives up on its
    lock; the next one re-observes, so the repair finishes the partly applied version)."""

    driver: Driver
    lock: HeldLock
    watcher: Watcher
    report: Report
    stopper: Stopper
    observed: bool = False
    guarded: bool = False


def _attempt(run: Run, settings: Settings, tool: str, vendor: VendorSchema, target: VendorVersion) -> None:
    """Observe, plan, carry out the plan; again until nothing is left (a few rounds at most)."""
    for _ in range(MAX_ROUNDS):
        state, planned = observe_and_plan(run.driver, vendor, target)
        if not run.observed:
            run.observed = True
            run.report.from_version = state.version
            log.info("state.observed", **planned.to_dict(), invalid_indexes=list(state.catalog.invalid_indexes))
        if planned.refusal:
            raise UnsafeStateError(planned.refusal)
        if not planned.steps:
            return
        log.info("plan.made", steps=[step.to_dict() for step in planned.steps])
        problem = access_problem(state, planned)
        if problem:
            raise AccessError(problem)
        if not run.guarded:
            run.guarded = True
            _guard(run.driver, settings, planned)
        run.stopper.start()
        run.watcher.start(planned.pending)
        _run_plan(
            run.driver,
            run.lock,
            settings=settings,
            tool=tool,
            vendor=vendor,
            steps=planned.steps,
            report=run.report,
            stopper=run.stopper,
        )
    raise DDLError("the run did not converge; see the plan.made events")


def _guard(driver: Driver, settings: Settings, planned: Plan) -> None:
    """--max-rewrite-size: refuse before any DDL when a pending statement rewrites or locks a larger table."""
    if settings.max_rewrite_size is None:  # the catalog's sizes are not even read
        return
    refusal = too_large(impact_of(driver, planned), settings.max_rewrite_size)
    if refusal:
        raise UnsafeStateError(refusal)


def _log_retry(watcher: Watcher) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        log.warning(
            "ddl.retrying",
            **retry_fields(state),
            pause=round(state.upcoming_sleep, 1),
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


def migrate(settings: Settings, tool: str, vendor: VendorSchema, target: VendorVersion) -> Report:
    """Bring the store to ``target``; a second run is a no-op that does not start the tool.

    A statement that gives up on its lock (``--ddl-lock-timeout``) leaves its version partly applied: the next
    attempt re-observes and plans the repair, after a jittered exponential pause, until ``--ddl-retry-timeout``.
    Raises `RunFailed` (wrapping the MigratorError) so the caller can report the steps that completed.
    """
    report = Report()
    started = time.monotonic()
    try:
        with (
            Driver.open(settings, primary=True) as driver,
            advisory_lock(driver, settings.database, settings.lock_timeout) as lock,
            Stopper(settings, driver, lock) as stopper,
            Watcher(settings, driver.backend_pid) as watcher,
        ):
            run = Run(driver, lock, watcher, report, stopper)
            retrying = Retrying(
                retry=retry_if_exception_type(LockWaitError),
                wait=wait_random_exponential(multiplier=RETRY_FIRST_PAUSE, max=RETRY_MAX_PAUSE),
                stop=stop_after_delay(settings.ddl_retry_timeout),
                before_sleep=_log_retry(watcher),
                reraise=True,
            )
            try:
                retrying(_attempt, run, settings, tool, vendor, target)
            except LockWaitError as error:
                raise _gave_up(error, settings, watcher) from None
            state = _verify(driver, vendor, target, report)
    except Exception as error:
        raise RunFailed(error, report) from error
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
