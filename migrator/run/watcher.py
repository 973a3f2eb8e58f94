"""The watcher: while `migrate` runs, say what the DDL is doing and who blocks it (a courtesy: stopping the run's
statements is `migrator.run.stopper`'s, which works without it).

A daemon thread on its own connection (never the lock session's) polls `migrator.db.activity` twice a second,
because a blocked statement gives up after ``--ddl-lock-timeout`` (5 s by default) and its blockers must be seen
before that. It logs ``ddl.blocked`` when a statement starts waiting for another session (and
again every ``--progress-interval`` while it does), and ``ddl.progress`` every ``--progress-interval`` for
each statement that has run that long. In ``--log-format console`` on a terminal the progress is one line
redrawn in place.
"""

from __future__ import annotations

import contextvars
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import structlog
from psycopg import sql

from migrator.core.settings import Settings
from migrator.core.vendor import VendorVersion
from migrator.db.catalog import Rows
from migrator.db.driver import Driver
from migrator.db.interface import Connect, Database
from migrator.errors import MigratorError, Terminated

if TYPE_CHECKING:
    from migrator.db.activity import Blocker, Running

log = structlog.get_logger("migrator.run.watcher")
POLL_SECONDS = 0.5  # at most; a shorter --progress-interval, or half a shorter --ddl-lock-timeout, polls faster
MIN_POLL_SECONDS = 0.05


WATCHER_APPLICATION_NAME = "temporal-migrator-watch"


def _flat(text: str) -> str:
    return " ".join(text.split())


def drawn_in_place(settings: Settings) -> bool:
    """Progress as one line redrawn in place: on a terminal, with console logs."""
    return settings.log_format == "console" and sys.stderr.isatty()


def draw(line: str) -> None:
    """Redraw the progress line (carriage return, clear to end of line), cut to the terminal's width."""
    sys.stderr.write("\r\x1b[2K" + line[: shutil.get_terminal_size().columns - 1])
    sys.stderr.flush()


class Watcher:
    """Use as a context manager around the DDL of one run; ``own_pid`` is the lock session's backend pid."""

    def __init__(self, settings: Settings, own_pid: int, *, connect: Connect = Driver.open) -> None:
        self.settings = settings
        self._connect = connect
        self.own_pid = own_pid
        self.interval = settings.progress_interval
        waits = settings.ddl_lock_timeout / 2 if settings.ddl_lock_timeout else POLL_SECONDS  # a wait is seen
        self.poll_seconds = max(MIN_POLL_SECONDS, min(POLL_SECONDS, self.interval, waits))
        self.in_place = drawn_in_place(settings)
        self.last_blockers: tuple[Blocker, ...] = ()
        self._statements: list[tuple[str, str, int]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._driver: Database | None = None
        self._thread: threading.Thread | None = None
        self._reported: dict[int, float] = {}
        self._blocked_reported: dict[tuple[int, tuple[int, ...]], float] = {}
        self._drawn = False

    def __enter__(self) -> Watcher:
        return self

    def start(self, versions: Sequence[VendorVersion]) -> None:
        """Connect and start watching (before the first DDL step only, so a no-op run opens no connection)."""
        if self._driver is not None:
            return
        self.track(versions)
        try:
            self._driver = self._connect(self.settings, timeout=min(10.0, self.settings.connect_timeout))
            # Its own name, so neither a person nor a script takes it for the lock session.
            name = (WATCHER_APPLICATION_NAME,)
            self._driver.query("SELECT set_config('application_name', %s, false)", name, "naming the watcher")
        except Terminated:
            raise
        except MigratorError as error:  # progress is a courtesy; never fail the run for it
            log.warning("ddl.watch_unavailable", error=str(error))
            return
        # What the thread needs is imported here, not at the top: a run that finds nothing to do never watches.
        from migrator.tool.runner import start_shielded  # noqa: PLC0415

        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._loop,), name="ddl-watcher", daemon=True)
        start_shielded(self._thread)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(POLL_SECONDS * 5)
        if self._drawn:
            sys.stderr.write("\n")
        if self._driver is None:
            return
        with self._lock:
            self._driver.close()

    def track(self, versions: Sequence[VendorVersion]) -> None:
        """The pending versions, whose statements name what a session runs (`locate`)."""
        self._statements = [
            (_flat(statement.text), version.name, number)
            for version in versions
            for number, statement in enumerate(version.statements, start=1)
        ]

    def locate(self, query: str) -> tuple[str | None, int | None]:
        """Which pending version and statement a running query is (its text may be cut at 1 kB)."""
        flat = _flat(query)
        for text, version, number in self._statements:
            if flat and text.startswith(flat):
                return version, number
        return None, None

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                with self._lock:
                    if self._driver is None or self._stop.is_set():
                        return
                    self._observe(self._rows)
            except MigratorError as error:
                log.warning("ddl.watch_failed", error=str(error))
                return

    def _rows(self, query: sql.Composable | str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        assert self._driver is not None, "only called while watching"
        return self._driver.query(query, params, "watching the DDL sessions")

    def _observe(self, rows: Rows) -> None:
        from migrator.db.activity import blockers, running  # noqa: PLC0415 - see start

        now = time.monotonic()
        for item in running(rows, self.own_pid):
            found = blockers(rows, item.blocked_by) if item.blocked_by else []
            if found:
                self.last_blockers = tuple(found)
                key = (item.pid, item.blocked_by)
                if now - self._blocked_reported.get(key, -self.interval) >= self.interval:
                    self._blocked_reported[key] = now
                    log.warning("ddl.blocked", **self._fields(item), blockers=[b.to_dict() for b in found])
            if item.seconds >= self.interval and now - self._reported.get(item.pid, -self.interval) >= self.interval:
                self._reported[item.pid] = now
                self._progress(item, found)

    def _fields(self, item: Running) -> dict[str, Any]:
        from migrator.core.impact import shorten  # noqa: PLC0415 - see start

        version, number = self.locate(item.query)
        return {
            "version": version,
            "statement_index": number,
            "statement": shorten(item.query, 80),
            "pid": item.pid,
            "seconds": round(item.seconds, 1),
        }

    def _progress(self, item: Running, found: list[Blocker]) -> None:
        fields = self._fields(item)
        if item.phase is not None:
            fields.update(
                phase=item.phase,
                blocks_done=item.blocks_done,
                blocks_total=item.blocks_total,
                tuples_done=item.tuples_done,
                tuples_total=item.tuples_total,
            )
        else:
            fields.update(
                wait_event=f"{item.wait_event_type}:{item.wait_event}" if item.wait_event_type else None,
                blocked_by=[blocker.pid for blocker in found],
            )
        if self.in_place:
            self._draw(fields)
        else:
            log.info("ddl.progress", **fields)

    def _draw(self, fields: dict[str, Any]) -> None:
        """One console line, redrawn in place (carriage return, clear to end of line), compact, with the
        statement last, where a narrow terminal cuts it, so the figures stay visible."""
        parts = [time.strftime("%H:%M:%S"), "ddl.progress"]
        if fields["version"]:
            parts.append(f"v{fields['version']} statement {fields['statement_index']}")
        parts.append(f"{fields['seconds']:.0f}s")
        if "phase" in fields:
            parts.append(f"{fields['phase']} blocks {fields['blocks_done']}/{fields['blocks_total']}")
            if fields["tuples_total"]:
                parts.append(f"tuples {fields['tuples_done']}/{fields['tuples_total']}")
        else:
            parts.append(f"wait {fields['wait_event'] or 'none'}")
            if fields["blocked_by"]:
                parts.append(f"blocked by {fields['blocked_by']}")
        draw(" ".join(parts) + " | " + fields["statement"])
        self._drawn = True
