"""The imperative shell: under the lock, observe, plan, and carry out the plan's steps — nothing else.

The executor decides nothing of its own: every action it takes is a step `plan` shows (the same words in
`plan`'s output and in the `step.done` events), and it stops before any DDL where the plan's verdict says so.
Before each step and after each tool run it checks that its session still holds the lock. After the plan it
re-observes; a plan that does not converge in a few rounds, or a catalog that does not match a clean install
at the target, fails the run. A database still to be created (``--create-database``) is created first, as the
first step of its plan, on the maintenance database (no lock can be held in a database that does not exist);
the rest of that plan is then observed and planned again under the lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, assert_never

import structlog

from migrator.core.planner import (
    AbortOnline,
    BuildIndexConcurrently,
    CreateDatabase,
    DropInvalidIndex,
    OnlineRewrite,
    Plan,
    Policy,
    RecordVersion,
    RunStatement,
    Setup,
    Situation,
    SkipStatement,
    Step,
    Update,
    plan,
)
from migrator.core.settings import Settings
from migrator.core.state import State
from migrator.core.vendor import VendorSchema, VendorVersion
from migrator.core.versions import parse_version
from migrator.db.driver import DatabaseMissingError, Driver
from migrator.db.interface import Connect, Database
from migrator.errors import DDLError, LockWaitError
from migrator.logs import retry_fields
from migrator.retry import retried
from migrator.run.createdb import create_database, maintenance, observe_absent
from migrator.run.inspect import observe_and_plan, plan_absent
from migrator.run.lock import HeldLock, advisory_lock
from migrator.run.stopper import Stopper
from migrator.run.watcher import Watcher
from migrator.source.tree import read_statements

if TYPE_CHECKING:
    from tenacity import RetryCallState

    from migrator.tool.runner import ToolWatch

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


class RunTool(Protocol):
    """`migrator.tool.runner.run_tool`'s signature: run the tool to the end, return its seconds."""

    def __call__(
        self,
        settings: Settings,
        tool: str,
        command: Sequence[str],
        *,
        server_version: int,
        application_name: str,
        watch: ToolWatch | None = None,
    ) -> float: ...


class RunFailed(Exception):
    """A failure with the steps that completed before it (the CLI reports both)."""

    def __init__(self, error: Exception, report: Report) -> None:
        super().__init__(str(error))
        self.error = error
        self.report = report


@dataclass(frozen=True)
class Shell:
    """What one run executes with: the settings, the tool's path, the vendor tree, and how to start the tool."""

    settings: Settings
    tool: str
    vendor: VendorSchema
    run_tool: RunTool | None = None  # None: `migrator.tool.runner.run_tool`, imported when a plan first runs it
    connect: Connect = Driver.open  # the online rewrite's own sessions


def _runner(shell: Shell) -> RunTool:
    if shell.run_tool is not None:
        return shell.run_tool
    from migrator.tool.runner import run_tool  # noqa: PLC0415 - a run that finds nothing to do starts no tool

    return run_tool


def _run_tool(session: Database, shell: Shell, command: list[str], stopper: Stopper | None) -> float:
    """The tool, tagged for this run and watched by the stopper (a lost lock stops it)."""
    assert stopper is not None, "the tool runs only under the lock, where the stopper is"
    return _runner(shell)(
        shell.settings,
        shell.tool,
        command,
        server_version=session.server_version,
        application_name=stopper.application_name,
        watch=stopper,
    )


def _execute(session: Database, shell: Shell, step: Step, report: Report, stopper: Stopper | None) -> None:
    """Carry out one step, exactly as `plan` describes it."""
    match step:
        case CreateDatabase(database=database):
            create_database(session, database, shell.settings.user)
        case Setup(version=version):
            command = ["setup-schema", "-v", version]
            report.tool_seconds += _run_tool(session, shell, command, stopper)
        case Update(version=version):
            command = ["update-schema", "-d", str(shell.vendor.versioned_dir), "-v", version]
            report.tool_seconds += _run_tool(session, shell, command, stopper)
        case DropInvalidIndex(name=name):
            session.drop_index(name)
        case SkipStatement() | RunStatement():
            skipped = isinstance(step, SkipStatement)
            log.info(
                "repair.statement",
                version=step.version,
                index=step.statement,
                total=step.total,
                outcome="skipped" if skipped else "executed",
                statement=" ".join(step.text.split()),
            )
            if not skipped:
                session.execute(step.text, f"repair of v{step.version} at statement {step.statement} of {step.total}")
                report.repaired_statements += 1
        case RecordVersion(version=name, old_version=old_version):
            recorded = shell.vendor.find(parse_version(name))
            assert recorded is not None, "the planner only records versions of the vendor tree"
            session.record_version(recorded, old_version)
            log.info("repair.recorded", version=recorded.name, old_version=old_version)
        case BuildIndexConcurrently(version=version, index=index, text=text):
            # waits at most --ddl-lock-timeout (for its lock and for older snapshots); an interrupted build
            # leaves an INVALID index, which the next plan drops first
            session.run(text, (), f"building index {index} of v{version} concurrently")
        case OnlineRewrite():
            assert stopper is not None, "an online rewrite runs only under the lock, where the stopper is"
            from migrator.run import online  # noqa: PLC0415 - the engine loads only for a plan that rewrites online

            online.rewrite(shell.settings, shell.connect, stopper.application_name, step, stopper.poll)
        case AbortOnline():
            assert stopper is not None, "an online rewrite is aborted only under the lock, where the stopper is"
            from migrator.run import online  # noqa: PLC0415 - see OnlineRewrite

            online.abort(shell.settings, shell.connect, stopper.application_name, step)
        case _:
            assert_never(step)


def _run_plan(
    session: Database,
    lock: HeldLock | None,
    shell: Shell,
    steps: Sequence[Step],
    report: Report,
    *,
    stopper: Stopper | None,
) -> None:
    """The steps in order, each followed by its ``step.done``; ``lock`` None only for the creation of the
    database, which runs before there is a database to hold a lock in."""
    for step in steps:
        fields = step.to_dict()
        described = f"{step.action.value} {fields.get('version') or fields.get('database')}"
        if lock is not None:
            lock.ensure_held(f"step {described}")
        _execute(session, shell, step, report, stopper)
        report.steps.append(step.to_dict())
        log.info("step.done", **step.to_dict())
        if lock is not None and isinstance(step, Setup | Update):  # a tool run is long: was the lock held throughout?
            lock.ensure_held(f"anything after {described}")


def _verify(driver: Database, vendor: VendorSchema, target: VendorVersion, report: Report) -> State:
    """After a run that did something, the catalog must hold what a clean install at ``target`` holds (not only
    the version row). A run that did nothing only warns: failing it could not help, as there is nothing to redo."""
    vendor = read_statements(vendor, [item for item in vendor.versions if item.version <= target.version])
    state = driver.observe(vendor, seeds_after=report.from_version)
    planned = plan(state, vendor, target)
    if planned.situation not in (Situation.CURRENT, Situation.AHEAD):
        raise DDLError(f"after the run the database is {planned.situation} at {state.version}, not at {target.name}")
    if planned.situation is Situation.CURRENT:
        from migrator.core.verify import verification_problems  # noqa: PLC0415 - only after a run that did something

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

    driver: Database
    lock: HeldLock
    watcher: Watcher
    report: Report
    stopper: Stopper
    observed: bool = False
    last: tuple[State, Plan] | None = None  # as last observed and planned


def _aborted(report: Report) -> bool:
    return any(step["action"] == AbortOnline.action for step in report.steps)


def _judged(state: State, planned: Plan, report: Report, *, first: bool) -> bool:
    """Log the state (when ``first`` seen in this database) and the plan; stop where the verdict says (before any
    DDL). False: nothing to do."""
    if first:
        report.from_version = state.version
        log.info("state.observed", **planned.to_dict(), invalid_indexes=list(state.catalog.invalid_indexes))
    if planned.refusal is None and planned.steps:
        log.info("plan.made", steps=[step.to_dict() for step in planned.steps])
    if planned.steps and state.catalog.locked:  # a plan made without their definitions is not acted on
        held = "; ".join(f"{table} by {holder}" for table, holder in sorted(state.catalog.locked.items()))
        raise LockWaitError(f"tables are locked by another session, their definitions unread: {held}")
    error = planned.verdict.error()
    if error is not None:
        raise error
    return bool(planned.steps)


def _attempt(run: Run, shell: Shell, target: VendorVersion) -> None:
    """Observe, plan, carry out the plan; again until nothing is left (a few rounds at most)."""
    policy = Policy.of(shell.settings)
    for _ in range(MAX_ROUNDS):
        state, planned = observe_and_plan(run.driver, shell.vendor, target, policy)
        run.last = state, planned
        first, run.observed = not run.observed, True
        if not _judged(state, planned, run.report, first=first):
            return
        run.stopper.start()
        run.watcher.start(planned.pending)
        _run_plan(run.driver, run.lock, shell, planned.steps, run.report, stopper=run.stopper)
        if _aborted(run.report):  # an abort is the whole run: the store stays at the version it was
            return
    raise DDLError("the run did not converge; see the plan.made events")


def _open(shell: Shell, target: VendorVersion, connect: Connect, report: Report) -> Database:
    """The lock session on the store's database; with ``--create-database`` a missing one is created first
    (the create-database step of the absent state's plan, on the maintenance database)."""
    settings = shell.settings
    while settings.create_database:
        try:
            return connect(settings, primary=True, missing_database=True)
        except DatabaseMissingError:
            state = observe_absent(settings, connect)
        if state is None:  # created since we tried: connect again
            continue
        planned = plan_absent(state, shell.vendor, target, Policy.of(settings))
        _judged(state, planned, report, first=True)
        with connect(maintenance(settings)) as session:
            creation = [step for step in planned.steps if isinstance(step, CreateDatabase)]
            _run_plan(session, None, shell, creation, report, stopper=None)
        break  # the rest of the plan runs under the lock, planned again from the new database
    return connect(settings, primary=True)


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


def migrate(
    settings: Settings,
    tool: str,
    vendor: VendorSchema,
    target: VendorVersion,
    *,
    connect: Connect = Driver.open,
    tool_runner: RunTool | None = None,
) -> Report:
    """Bring the store to ``target``; a second run is a no-op that does not start the tool.

    A statement that gives up on its lock (``--ddl-lock-timeout``) leaves its version partly applied: the next
    attempt re-observes and plans the repair, after a jittered exponential pause, until ``--ddl-retry-timeout``.
    Raises `RunFailed` (wrapping the MigratorError) so the caller can report the steps that completed.
    ``connect`` opens every session of the run and ``tool_runner`` runs the tool (the real ones by default).
    """
    report = Report()
    shell = Shell(settings, tool, vendor, tool_runner, connect)
    started = time.monotonic()
    try:
        with (
            _open(shell, target, connect, report) as driver,
            advisory_lock(driver, settings.database, settings.lock_timeout) as lock,
            Stopper(settings, driver, lock, connect=connect) as stopper,
            Watcher(settings, driver.backend_pid, connect=connect) as watcher,
        ):
            run = Run(driver, lock, watcher, report, stopper)
            try:
                retried(
                    lambda: _attempt(run, shell, target),
                    on=LockWaitError,
                    first_pause=RETRY_FIRST_PAUSE,
                    max_pause=RETRY_MAX_PAUSE,
                    budget=settings.ddl_retry_timeout,
                    before_sleep=_log_retry(watcher),
                )
            except LockWaitError as error:
                raise _gave_up(error, settings, watcher) from None
            if report.steps and not _aborted(report):
                state = _verify(driver, vendor, target, report)
            else:  # nothing done, nothing to verify: the plan found the store at its target
                assert run.last is not None, "an attempt that returns has observed"
                state = run.last[0]
                for warning in run.last[1].warnings:
                    log.warning("plan.warning", warning=warning)
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
