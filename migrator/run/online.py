"""The online rewrite engine: carries out `OnlineRewrite` and `AbortOnline` on a session of its own.

Phases (`migrator.core.online.Phase`, recorded in the state row, so a run killed anywhere resumes where it was):
capture (schemas, state, log and functions in one transaction; then the triggers, under a bounded lock wait; then
the empty shadow with the vendor's ALTERs and the primary key, committed with the move to copy), copy (keyset
batches, each committing its resume key), index (each build committed with its count), catchup (replay of the
logged keys in REPEATABLE READ rounds, until the backlog is small; given up, every trace removed, when it does not
shrink), swap (one transaction under a short lock_timeout: lock, last replay, triggers dropped, the tables
exchanged by schema, publications re-listed, phase cleanup), cleanup (the old table, the log, the functions, the
state and both schemas dropped).

The session is tagged with the run's tool tag (the stopper cancels its statements when the run stops or loses its
lock) and has the lock session's settings (lock_timeout = --ddl-lock-timeout, client_connection_check_interval).
A lock wait given up raises LockWaitError: the migrate loop pauses, re-observes and resumes here. The engine never
records a version: the plan's steps after it do, without the tool's no-op ALTER.
"""

from __future__ import annotations

import contextlib
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from psycopg import sql

from migrator.core.online import WORK_SCHEMA, OnlineProgress, Phase
from migrator.core.planner import AbortOnline, OnlineRewrite, quote_identifier
from migrator.core.settings import Settings
from migrator.core.shadow import (
    STATE,
    Backlog,
    TableShape,
    backlog_count,
    copy_batch,
    digest,
    finish_statements,
    index_statements,
    judge_backlog,
    key_statements,
    lock_statements,
    remove_statements,
    replay_bound,
    replay_statements,
    set_phase,
    setup_statements,
    shadow_statements,
    swap_backlog,
    swap_lock_timeout,
    swap_statements,
    trigger_statements,
)
from migrator.core.statements import ShadowUse, for_shadow, retarget_index
from migrator.db.catalog import Rows
from migrator.db.interface import Connect, Database
from migrator.db.table import read_shape, read_state, terminate_orphans
from migrator.errors import LockWaitError, UnsafeStateError
from migrator.run.watcher import draw, drawn_in_place

log = structlog.get_logger("migrator.run.online")

COPY_BATCH_ROWS = 2000
REPLAY_ROUND_KEYS = 2000
BACKLOG_PATIENCE = 20  # catch-up rounds without a new low before giving up
SWAP_ATTEMPTS = 10  # per engine run; then LockWaitError hands the wait to the migrate loop's backoff
SWAP_PAUSE = 0.5  # at most, between attempts (jittered)
POSTPONE_SECONDS = 60.0  # waiting for long holders to go; then LockWaitError (the migrate loop backs off)
OLD_HOLDER_SECONDS = 1.0  # a session holding a lock on the table this long would make an attempt time out
# The locks that conflict with the capture triggers' SHARE ROW EXCLUSIVE (a reader's ACCESS SHARE does not), and
# those that conflict with the swap's ACCESS EXCLUSIVE: every mode.
WRITE_BLOCKERS = (
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)
EVERY_LOCK = ("AccessShareLock", "RowShareLock", *WRITE_BLOCKERS)


@dataclass
class Progress:
    """``ddl.progress`` events of one phase, at most every --progress-interval (and always the last); on a
    terminal with console logs, one line redrawn in place until the phase's last event."""

    interval: float
    table: str
    in_place: bool = False
    check: Callable[[], None] = lambda: None  # raises when the run has lost its lock
    started: float = field(default_factory=time.monotonic)
    last: float = 0.0
    drawn: bool = False

    def report(self, phase: Phase, *, final: bool = False, **fields: Any) -> None:
        now = time.monotonic()
        if not final and now - self.last < self.interval:
            return
        self.last = now
        self.check()
        seconds = round(now - self.started, 1)
        if self.in_place and not final:
            figures = " ".join(f"{name} {value}" for name, value in fields.items())
            draw(f"{time.strftime('%H:%M:%S')} ddl.progress online {phase.value} {self.table} {seconds:.0f}s {figures}")
            self.drawn = True
            return
        if self.drawn:
            sys.stderr.write("\n")
            self.drawn = False
        log.info("ddl.progress", online=phase.value, table=self.table, seconds=seconds, **fields)


@dataclass
class Engine:
    """One online rewrite, carried out on ``session`` (ours, tagged); ``shape`` is the live table's."""

    session: Database
    settings: Settings
    schema: str
    shape: TableShape
    step: OnlineRewrite
    check: Callable[[], None]  # raises when the run has lost its lock (the stopper's poll)
    work: ShadowWork
    replayed: int = 0  # keys replayed by catch-up rounds, and their seconds: the replay's rate
    replay_seconds: float = 0.0

    def progress(self, interval: float | None = None) -> Progress:
        every = self.settings.progress_interval if interval is None else interval
        return Progress(every, self.shape.name, drawn_in_place(self.settings), self.check)

    def run_all(self, statements: Sequence[str], doing: str) -> None:
        for statement in statements:
            self.session.run(statement, (), doing)

    def search_path(self) -> None:
        """Inside a transaction: the vendor's unqualified names reach the shadow, its functions the store's."""
        path = f"{quote_identifier(WORK_SCHEMA)}, {quote_identifier(self.schema)}"
        self.session.run("SELECT set_config('search_path', %s, true)", (path,), "setting the search_path")

    # -- phases ----------------------------------------------------------------------------------------

    def capture(self) -> None:
        """Triggers (if a killed run did not get that far), then the empty shadow, committed with phase copy."""
        present = self.session.run(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname LIKE 'temporal_migrator_%%'",
            (self.shape.live,),
            "looking for the capture triggers",
        )
        if present[0][0] < 2:
            self.attempts(self.progress(), Phase.CAPTURE, "capture triggers", self.triggers, WRITE_BLOCKERS)
        doing = f"building the shadow of {self.shape.name}"
        with self.session.transaction(doing):
            self.run_all(shadow_statements(self.shape), doing)
            self.search_path()
            self.run_all(self.work.alters, f"applying the vendor's ALTER TABLE to the shadow of {self.shape.name}")
            self.run_all(key_statements(self.shape), doing)
            self.session.run(set_phase(Phase.COPY), (), doing)
        log.info("online.phase", table=self.shape.name, phase=Phase.COPY.value)

    def copy(self, copied: int) -> None:
        progress = self.progress()
        first = copied == 0
        total = copied
        while True:
            statement = copy_batch(self.shape, first=first, rows=COPY_BATCH_ROWS)
            ((count,),) = self.session.run(statement, (), f"copying {self.shape.name} into its shadow")
            first = False
            total += count
            elapsed = time.monotonic() - progress.started
            progress.report(Phase.COPY, rows=total, rows_per_second=round((total - copied) / max(elapsed, 1e-3)))
            if count < COPY_BATCH_ROWS:
                break
        self.session.run(set_phase(Phase.INDEX), (), "finishing the copy")
        progress.report(Phase.COPY, final=True, rows=total)

    def index(self, built: int) -> None:
        """Each existing index (with its comment) and each vendor index statement in its own transaction, with
        the count of those done: a killed build is rolled back and redone, a finished one never."""
        retargeted = tuple(retarget_index(index.definition, WORK_SCHEMA) for index in self.shape.indexes)
        units = [index_statements(index, text) for index, text in zip(self.shape.indexes, retargeted, strict=True)]
        units += [[text] for text in self.work.indexes]
        progress = self.progress(0.0)
        counter = sql.SQL("UPDATE {} SET indexes_built = %s").format(sql.Identifier(WORK_SCHEMA, STATE))
        for number in range(built, len(units)):
            doing = f"building index {number + 1} of {len(units)} on the shadow of {self.shape.name}"
            progress.report(Phase.INDEX, index=number + 1, of=len(units))
            with self.session.transaction(doing):
                self.search_path()
                self.run_all(units[number], doing)
                self.session.run(counter, (number + 1,), doing)
        doing = f"finishing the shadow of {self.shape.name}"
        with self.session.transaction(doing):
            self.run_all(finish_statements(self.shape), doing)
            self.session.run(f"ANALYZE {self.shape.shadow}", (), doing)
            self.session.run(set_phase(Phase.CATCHUP), (), doing)

    def replay(self, limit: int | None) -> tuple[int, int]:
        """One round: (keys replayed, backlog left); in one snapshot unless under the swap's lock (``None``)."""
        doing = f"replaying the changes captured on {self.shape.name}"
        ((upto, backlog),) = self.session.run(replay_bound(limit), (), doing)
        if upto is None:
            return 0, 0
        count = backlog if limit is None else min(limit, backlog)  # the first ``limit`` ids are those up to upto
        for statement in replay_statements(self.shape):
            self.session.run(statement, (upto,), doing)
        return count, backlog - count

    def round(self) -> int:
        """One catch-up round in one snapshot, measuring the replay's rate; returns the backlog after it, counted
        afresh (what came in while the round ran is not in its snapshot)."""
        started = time.monotonic()
        with self.session.transaction(f"replaying the changes captured on {self.shape.name}", repeatable=True):
            count, _ = self.replay(REPLAY_ROUND_KEYS)
        if count:
            self.replayed += count
            self.replay_seconds += time.monotonic() - started
        ((left,),) = self.session.run(backlog_count(), (), f"counting the changes captured on {self.shape.name}")
        return int(left)

    def small(self) -> int:
        """The backlog the swap may leave for its lock: what the measured rate replays in half its budget."""
        timeout = swap_lock_timeout(self.settings.ddl_lock_timeout, self.settings.max_stall)
        rate = self.replayed / self.replay_seconds if self.replay_seconds else 0.0
        return swap_backlog(rate, self.settings.max_stall - timeout)

    def converge(self, progress: Progress, phase: Phase) -> None:
        """Catch-up rounds until the backlog is small; gives up (every trace removed) when it stops shrinking."""
        history: list[int] = []
        while True:
            left = self.round()
            history.append(left)
            verdict = judge_backlog(tuple(history), small=self.small(), patience=BACKLOG_PATIENCE)
            trend = left - history[-2] if len(history) > 1 else 0
            progress.report(phase, final=verdict is not Backlog.CONTINUE and phase is Phase.CATCHUP,
                            replayed=self.replayed, backlog=left, trend=trend)  # fmt: skip
            if verdict is Backlog.SWAP:
                return
            if verdict is Backlog.DIVERGING:
                raise _Diverging(left, BACKLOG_PATIENCE)

    def catchup(self) -> None:
        self.converge(self.progress(), Phase.CATCHUP)
        self.session.run(set_phase(Phase.SWAP), (), "starting the swap")

    def old_holders(self, modes: tuple[str, ...]) -> list[int]:
        """Sessions an attempt now would only time out behind: those holding a lock (in ``modes``) on
        the live table for a while, and autovacuum on it (PostgreSQL cancels it for a lock waiter only after
        deadlock_timeout, longer than an attempt waits)."""
        found = self.session.run(
            "SELECT DISTINCT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.relation = %s::regclass AND l.pid <> pg_backend_pid() AND l.granted "
            "AND l.mode = ANY(%s::text[]) "
            "AND (a.xact_start < now() - make_interval(secs => %s) OR a.backend_type = 'autovacuum worker')",
            (self.shape.live, list(modes), OLD_HOLDER_SECONDS),
            "looking for long lock holders on the table",
        )  # fmt: skip
        return [pid for (pid,) in found]

    def attempts(
        self,
        progress: Progress,
        phase: Phase,
        what: str,
        once: Callable[[int, float], bool],
        modes: tuple[str, ...],
    ) -> None:
        """Attempts of a transaction whose lock on the live table makes the table's queries queue while it waits:
        each waits at most half of --max-stall (`once` returns False when its wait gave up), and none starts while
        autovacuum or a long holder of a lock in ``modes`` holds the table. Then LockWaitError hands
        the wait to the migrate loop's backoff."""
        timeout = swap_lock_timeout(self.settings.ddl_lock_timeout, self.settings.max_stall)
        attempt, postponed = 0, 0.0
        while attempt < SWAP_ATTEMPTS:
            self.check()
            holders = self.old_holders(modes)
            if holders:
                if postponed > POSTPONE_SECONDS:
                    raise LockWaitError(
                        f"the {what} of {self.shape.name} was postponed {POSTPONE_SECONDS:g}s for sessions holding "
                        f"the table (pids {', '.join(map(str, holders))})"
                    )
                progress.report(phase, outcome="postponed", holders=holders)
                time.sleep(SWAP_PAUSE)
                postponed += SWAP_PAUSE
                continue
            attempt += 1
            if once(attempt, timeout):
                return
            time.sleep(random.uniform(0, SWAP_PAUSE))
        raise LockWaitError(
            f"the {what} of {self.shape.name} did not get its lock in {SWAP_ATTEMPTS} attempts of {timeout:g}s "
            "(other sessions hold the table)"
        )

    def triggers(self, attempt: int, timeout: float) -> bool:
        """One attempt at the capture triggers; False: their lock wait gave up."""
        doing = f"creating the capture triggers on {self.shape.name}"
        try:
            with self.session.transaction(doing):
                self.bound_lock_wait(doing, timeout)
                self.run_all(trigger_statements(self.shape), doing)
        except LockWaitError:
            log.info("ddl.progress", online=Phase.CAPTURE.value, table=self.shape.name, attempt=attempt,
                     outcome="lock wait given up")  # fmt: skip
            return False
        return True

    def swap(self) -> None:
        progress = self.progress()

        def once(attempt: int, timeout: float) -> bool:
            self.converge(progress, Phase.SWAP)  # right before the attempt: little is left for the lock
            return self.attempt(attempt, timeout)

        self.attempts(progress, Phase.SWAP, "swap", once, EVERY_LOCK)

    def bound_lock_wait(self, doing: str, timeout: float) -> None:
        """For the rest of the transaction, a lock wait gives up after ``timeout`` seconds."""
        self.session.run("SELECT set_config('lock_timeout', %s, true)", (f"{round(timeout * 1000)}ms",), doing)

    def attempt(self, attempt: int, timeout: float) -> bool:
        """One swap transaction: the shadow locked first (waiting there for its autovacuum stalls nobody), then
        the live table under the short ``timeout``, the last replay, the exchange. False: the lock wait gave up."""
        doing = f"swapping {self.shape.name} with its shadow"
        shadow, live = lock_statements(self.shape)
        started = locked = time.monotonic()
        try:
            with self.session.transaction(doing):
                self.session.run(shadow, (), doing)
                self.bound_lock_wait(doing, timeout)
                started = time.monotonic()
                self.session.run(live, (), doing)
                locked = time.monotonic()
                replayed, _ = self.replay(None)
                self.run_all(swap_statements(self.shape), doing)
        except LockWaitError:
            log.info("ddl.progress", online=Phase.SWAP.value, table=self.shape.name, attempt=attempt,
                     outcome="lock wait given up", waited=round(time.monotonic() - started, 3))  # fmt: skip
            return False
        done = time.monotonic()
        log.info("online.swapped", table=self.shape.name, attempt=attempt, replayed=replayed,
                 stall=round(done - started, 3), held=round(done - locked, 3))  # fmt: skip
        return True


@dataclass(frozen=True)
class ShadowWork:
    """The vendor's statements as they run on the shadow: ALTERs before the copy, index statements after it."""

    alters: tuple[str, ...]
    indexes: tuple[str, ...]

    @classmethod
    def of(cls, step: OnlineRewrite) -> ShadowWork:
        """Refused before any DDL when a statement is of a form the shadow cannot take."""
        adapted: dict[ShadowUse, list[str]] = {use: [] for use in ShadowUse}
        for text in step.statements:
            try:
                use, statement = for_shadow(text, WORK_SCHEMA)
            except ValueError as error:
                raise UnsafeStateError(f"{error}; use --rewrite-mode plain; changed nothing") from None
            adapted[use].append(statement)
        return cls(tuple(adapted[ShadowUse.TABLE]), tuple(adapted[ShadowUse.INDEX]))


class _Diverging(Exception):
    """The catch-up's backlog did not shrink: carried to `rewrite`, which removes every trace."""

    def __init__(self, backlog: int, rounds: int) -> None:
        super().__init__(backlog, rounds)
        self.backlog = backlog
        self.rounds = rounds


@contextlib.contextmanager
def _session(settings: Settings, connect: Connect, application_name: str) -> Iterator[Database]:
    """A session of the engine's own, with the lock session's settings and the run's tag; a killed run's
    sessions (building an index, holding a lock) are ended first."""
    with connect(settings, primary=True) as session:
        session.run("SELECT set_config('application_name', %s, false)", (application_name,), "naming the session")
        ended = terminate_orphans(_rows(session, "ending a killed run's sessions"), session_pid(application_name))
        if ended:
            log.warning("online.orphans_ended", pids=ended)
        yield session


def session_pid(application_name: str) -> int:
    """The lock session's pid in a run's tag (``temporal-migrator-tool/<pid>``)."""
    return int(application_name.rsplit("/", 1)[1])


def _rows(session: Database, doing: str) -> Rows:
    def rows(query: sql.Composable | str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return session.run(query, params, doing)

    return rows


def _shape(session: Database, schema: str, table: str) -> TableShape:
    doing = f"reading the definition of {table}"
    with session.transaction(doing):
        session.run("SELECT set_config('search_path', 'pg_catalog', true)", (), doing)
        return read_shape(_rows(session, doing), schema, table, session.server_version)


def _remove(session: Database, schema: str, table: str, *, retired: bool) -> None:
    doing = f"removing the online rewrite's work on {table}"
    with session.transaction(doing):
        for statement in remove_statements(schema, table, retired=retired):
            session.run(statement, (), doing)


def rewrite(
    settings: Settings,
    connect: Connect,
    application_name: str,
    step: OnlineRewrite,
    check: Callable[[], None] = lambda: None,
) -> None:
    """Carry out ``step``, or resume it from the phase a killed or interrupted run recorded; ``check`` raises
    when the run has lost its lock (called between batches, rounds and attempts)."""
    work = ShadowWork.of(step)
    with _session(settings, connect, application_name) as session:
        ((schema,),) = session.run("SELECT current_schema()", (), "reading the schema")
        wanted = digest(step.statements)
        recorded = read_state(_rows(session, "reading the online rewrite's state"))
        if recorded is not None:
            progress, schema, found_digest, copied, built = recorded
            _check_resumable(progress, found_digest, step, wanted)
            phase = progress.phase
            log.info("online.resumed", table=step.table, phase=phase.value, versions=list(progress.versions))
        else:
            phase, copied, built = Phase.CAPTURE, 0, 0
        if phase is Phase.CLEANUP:
            _cleanup(session, schema, step.table)
            return
        shape = _shape(session, schema, step.table)
        if recorded is None:
            doing = f"setting up the online rewrite of {step.table}"
            with session.transaction(doing):
                for statement in setup_statements(shape, step.versions, wanted):
                    session.run(statement, (), doing)
            log.info("online.started", table=step.table, versions=list(step.versions), reason=step.reason)
        engine = Engine(session, settings, schema, shape, step, check, work)
        try:
            if phase is Phase.CAPTURE:
                engine.capture()
            if phase in (Phase.CAPTURE, Phase.COPY):
                engine.copy(copied)
            if phase in (Phase.CAPTURE, Phase.COPY, Phase.INDEX):
                engine.index(built)
            if phase in (Phase.CAPTURE, Phase.COPY, Phase.INDEX, Phase.CATCHUP):
                engine.catchup()
            engine.swap()
        except _Diverging as diverging:
            _remove(session, schema, step.table, retired=False)
            raise UnsafeStateError(
                f"the online rewrite of {step.table} could not catch up: {diverging.backlog} captured changes still "
                f"to replay after {diverging.rounds} rounds without progress (writes outpace the replay); removed "
                "its work, changed nothing; run again when the table is less busy, or with --rewrite-mode plain"
            ) from None
        _cleanup(session, schema, step.table)


def _check_resumable(progress: OnlineProgress, found: str, step: OnlineRewrite, wanted: str) -> None:
    if progress.table != step.table or found != wanted:
        raise UnsafeStateError(
            f"an online rewrite of {progress.table} (versions {', '.join(progress.versions)}) is in progress with "
            f"other statements than this run's for {step.table}; finish it with the release that started it, or "
            "remove it with migrate --abort-online; changed nothing"
        )


def _cleanup(session: Database, schema: str, table: str) -> None:
    started = time.monotonic()
    _remove(session, schema, table, retired=True)
    log.info("online.done", table=table, cleanup_seconds=round(time.monotonic() - started, 2))


def abort(settings: Settings, connect: Connect, application_name: str, step: AbortOnline) -> None:
    """Remove every trace of the rewrite in progress (triggers first); the live table is left as it was."""
    with _session(settings, connect, application_name) as session:
        recorded = read_state(_rows(session, "reading the online rewrite's state"))
        if recorded is None:  # the work schema is created with its state row: nothing of a rewrite is left
            log.info("online.aborted", table=step.table, phase=None)
            return
        progress, schema, *_ = recorded
        if progress.phase is Phase.CLEANUP:
            raise UnsafeStateError(
                f"the online rewrite of {progress.table} has already swapped the tables; it cannot be aborted, only "
                "finished: run migrate without --abort-online; changed nothing"
            )
        _remove(session, schema, progress.table, retired=False)
        log.info("online.aborted", table=progress.table, phase=progress.phase.value, schema=schema)
