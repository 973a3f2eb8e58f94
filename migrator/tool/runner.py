"""Run the real temporal-sql-tool as a child process and turn its output into log events.

Argument list, no shell; ``--ep``, ``-p`` and ``--pl`` always given (the tool defaults to MySQL's); never
``--quiet`` (it turns errors into exit 0). The password never goes into argv, nor into SQL_PASSWORD: the tool
URL-escapes it with the query-string rules (a space becomes ``+``, which the server then compares), so any
password with such characters fails. It goes into a password file (mode 0600, deleted after the run) named
by ``PGPASSFILE``, which both plugins' drivers (lib/pq and pgx) read when the URL carries no password.
On timeout, SIGTERM or SIGINT the child gets SIGTERM, then SIGKILL after a grace period; so does a child whose
run's `ToolWatch` says to stop (the lock session lost) — checked a few times a second while the tool runs.
"""

from __future__ import annotations

import contextvars
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

import structlog

from migrator.core.settings import Settings
from migrator.db.session import session_settings
from migrator.errors import DDLError, LockWaitError

log = structlog.get_logger("migrator.tool.runner")
GRACE_SECONDS = 10.0
WATCH_SECONDS = 0.25  # how often a running tool's watch is asked: a lost lock stops the tool well within 2 s
MIN_WATCH_SECONDS = 0.02
# util-linux's setpriv sets the parent-death signal and execs the tool: no Python runs between fork and exec.
SETPRIV = "setpriv"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARN": "warning", "WARNING": "warning"}
# The tool (v1.25+) hides a failed connection's cause behind this message; the cause came on an earlier line.
_GENERIC_ERRORS = ("no usable database connection found",)
# A Go runtime failure: this first line says what happened; the lines after it are the goroutine stacks.
_PANIC = re.compile(r"^(panic|fatal error): ")
LOCK_NOT_AVAILABLE = "55P03"
# How the tool's drivers end an error's text: lib/pq "... (55P03)", pgx "... (SQLSTATE 55P03)".
_DRIVER_SQLSTATE = re.compile(r"\((?:SQLSTATE )?([0-9A-Z]{5})\)\s*$")


@dataclass(frozen=True)
class ToolLine:
    level: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


def parse_line(line: str) -> ToolLine:
    """Parse one zap console line (``ts<TAB>LEVEL<TAB>msg<TAB>{json}``, ANSI colours and all)."""
    parts = _ANSI.sub("", line.rstrip("\n")).split("\t")
    if len(parts) < 3:
        return ToolLine("info", parts[-1].strip())
    fields: dict[str, Any] = {}
    if len(parts) >= 4:
        try:
            loaded = json.loads("\t".join(parts[3:]))
            fields = loaded if isinstance(loaded, dict) else {"data": loaded}
        except ValueError:
            fields = {"data": "\t".join(parts[3:])}
    fields.pop("logging-call-at", None)
    return ToolLine(_LEVELS.get(parts[1].strip().upper(), "error"), parts[2].strip(), fields)


def tool_host(host: str) -> str:
    """The host as the tool takes it (``host:port`` joined by Sprintf): an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


class ToolWatch(Protocol):
    """What the run watches while the tool runs (see `migrator.run.stopper`)."""

    def begin(self) -> None:
        """The tool has started (asked once, before the first `poll`)."""

    def poll(self) -> None:
        """Raise (a MigratorError) to stop the tool: SIGTERM, then SIGKILL after the grace period."""

    def saw_lock_wait(self) -> bool:
        """Whether one of the tool's statements was waiting for a lock when it was last seen running."""


def tool_argv(
    settings: Settings, tool: str, command: Sequence[str], session: Mapping[str, str] | None = None
) -> list[str]:
    """The tool's argv; ``session`` (`tool_session`) goes into ``--connect-attributes``, over the user's same keys."""
    ours = dict(session or {})
    attributes = [(key, value) for key, value in settings.connect_attributes if key not in ours]
    attributes += ours.items()
    argv = [
        tool,
        "--ep",
        tool_host(settings.host),
        "-p",
        str(settings.port),
        "-u",
        settings.user,
        "--db",
        settings.database,
        "--pl",
        settings.plugin,
    ]
    if attributes:
        argv += ["--connect-attributes", urlencode(attributes)]
    if settings.tls:
        argv.append("--tls")
        for flag, value in (
            ("--tls-cert-file", settings.tls_cert_file),
            ("--tls-key-file", settings.tls_key_file),
            ("--tls-ca-file", settings.tls_ca_file),
        ):
            if value:
                argv += [flag, value]
        if settings.tls_disable_host_verification:
            argv.append("--tls-disable-host-verification")
    return [*argv, *command]


def _passfile_field(value: str) -> str:
    r"""A field of a libpq password file: ``\`` and ``:`` escaped (lib/pq and pgx unescape both)."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


@contextmanager
def password_file(settings: Settings) -> Iterator[Path | None]:
    """A private password file for the tool's run (None without a password), removed afterwards."""
    if not settings.password:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="temporal-migrator-") as directory:
        path = Path(directory) / "pgpass"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(f"*:*:*:*:{_passfile_field(settings.password)}\n")
        yield path


def tool_env(settings: Settings, passfile: Path | None) -> dict[str, str]:
    """The tool's whole environment: ours without SQL_* (flags say everything) and PG* password variables."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SQL_") and key not in ("PGPASSWORD", "PGPASSFILE")
    }
    if passfile is not None:
        env["PGPASSFILE"] = str(passfile)
    return env


def tool_session_env(lock_timeout: float, server_version: int, environ: Mapping[str, str]) -> dict[str, str]:
    """``PGOPTIONS`` for the tool's child environment, the user's kept first (`tool_session` is what wins)."""
    ours = " ".join(f"-c {name}={value}" for name, value in session_settings(lock_timeout, server_version).items())
    merged = f"{environ.get('PGOPTIONS', '').strip()} {ours}".strip()
    return {"PGOPTIONS": merged}


def tool_session(lock_timeout: float, server_version: int, application_name: str) -> dict[str, str]:
    """The startup parameters of the tool's sessions: the run's tag and the bounded lock waits. Every driver of
    the tool (lib/pq 1.10 and 1.12, pgx 5.7 and 5.10) sends DSN keys it does not know to the server, and they win
    over ``PGOPTIONS`` and ``PGAPPNAME``."""
    settings = session_settings(lock_timeout, server_version)
    return {"application_name": application_name, **{name: str(value) for name, value in settings.items()}}


def driver_sqlstate(error_text: str) -> str | None:
    """The SQLSTATE the tool's driver printed at the end of an error (a code field, not message text)."""
    match = _DRIVER_SQLSTATE.search(error_text)
    return match.group(1) if match else None


def run_env(settings: Settings, passfile: Path | None, server_version: int) -> dict[str, str]:
    """`tool_env` plus what bounds the tool's sessions: lock waits, no statement timeout, a tag to find them by."""
    env = tool_env(settings, passfile)
    env.update(tool_session_env(settings.ddl_lock_timeout, server_version, env))
    return env


class _Reader(threading.Thread):
    """Logs each output line (with the run's context) and remembers the most telling error.

    Nothing a line holds may stop it: the pipe must keep draining, or the tool blocks on a full pipe.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.context = contextvars.copy_context()  # the thread would otherwise lose database/schema
        self.last_error = ""
        self.last_line = ""
        self.cause = ""
        self.panic = ""

    def run(self) -> None:
        self.context.run(self._drain)

    def _drain(self) -> None:
        for raw in self.stream:
            try:
                self._take(parse_line(raw))
            except Exception as error:
                log.warning("tool.output_unreadable", error=repr(error), line=raw[:500])

    def _take(self, line: ToolLine) -> None:
        if not line.message:
            return
        if _PANIC.match(line.message) and not self.panic:
            self.panic = line.message
        level = "error" if self.panic else line.level
        getattr(log, level)("tool.output", tool_level=level, message=line.message, fields=line.fields)
        self.last_line = line.message
        error = str(line.fields.get("error", ""))
        if line.level == "error" or error:
            self.last_error = f"{line.message} {error}".strip()
            if error and not any(generic in error for generic in _GENERIC_ERRORS):
                self.cause = error


def start_shielded(thread: threading.Thread) -> None:
    """Start ``thread`` with SIGTERM and SIGINT held back: a signal handler raising inside `Thread.start` leaves
    the new thread's bookkeeping half done (a KeyError traceback in ``_bootstrap_inner``). A signal that came
    meanwhile is delivered, in the main thread, as soon as the start is done; the new thread keeps them blocked."""
    held = {signal.SIGTERM, signal.SIGINT}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def with_parent_death_signal(argv: list[str]) -> list[str]:
    """``argv`` run so that Linux SIGTERMs the tool if the migrator dies (kill -9): no tool runs unlocked."""
    setpriv = shutil.which(SETPRIV) if sys.platform == "linux" else None
    if setpriv is None:
        log.warning("tool.no_parent_death_signal", reason="setpriv (util-linux) not found")
        return argv
    return [setpriv, "--pdeathsig", "TERM", "--", *argv]


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_tool(
    settings: Settings,
    tool: str,
    command: Sequence[str],
    *,
    server_version: int,
    application_name: str,
    watch: ToolWatch | None = None,
) -> float:
    """Run one tool command to completion; returns its duration, raises DDLError on failure (LockWaitError when
    a statement gave up on its lock: the version is partly applied, and the executor retries).

    A statement gave up on its lock when the tool's driver printed SQLSTATE 55P03 (pgx, lib/pq from 1.12) or, when
    it printed no SQLSTATE (lib/pq 1.10, Temporal v1.29's), ``watch`` last saw the statement of one of the tool's
    sessions waiting for a lock: the server's word, not the message's."""
    session = tool_session(settings.ddl_lock_timeout, server_version, application_name)
    with password_file(settings) as passfile:
        argv = tool_argv(settings, tool, command, session)
        return _run(settings, command, argv, run_env(settings, passfile, server_version), watch)


def _wait(settings: Settings, process: subprocess.Popen[str], watch: ToolWatch | None) -> int:
    """The tool's exit code; ``watch`` is asked at once and then every WATCH_SECONDS (or half of a shorter
    --ddl-lock-timeout); raises TimeoutExpired after --tool-timeout."""
    deadline = time.monotonic() + settings.tool_timeout if settings.tool_timeout else None
    every = WATCH_SECONDS
    if settings.ddl_lock_timeout:
        every = max(MIN_WATCH_SECONDS, min(WATCH_SECONDS, settings.ddl_lock_timeout / 2))
    while True:
        if watch is not None:
            watch.poll()
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        step = left if watch is None else every if left is None else min(every, left)
        try:
            return process.wait(step)
        except subprocess.TimeoutExpired:
            if deadline is not None and time.monotonic() >= deadline:
                raise


def _run(
    settings: Settings, command: Sequence[str], argv: list[str], env: dict[str, str], watch: ToolWatch | None
) -> float:
    started = time.monotonic()
    process = subprocess.Popen(
        with_parent_death_signal(argv),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    reader = _Reader(process.stdout)
    try:  # from here on, whatever is raised (a signal too) stops the tool first
        log.info("tool.started", command=list(command), argv=argv, pid=process.pid)
        if watch is not None:
            watch.begin()
        start_shielded(reader)
        code = _wait(settings, process, watch)
    except subprocess.TimeoutExpired:
        _stop(process)
        raise DDLError(
            f"temporal-sql-tool {command[0]} did not finish within {settings.tool_timeout:g}s and was stopped; "
            "raise --tool-timeout if the database is just slow"
        ) from None
    finally:
        _stop(process)
        if reader.ident is not None:
            reader.join(5)
    seconds = round(time.monotonic() - started, 2)
    log.info("tool.exited", command=command[0], exit_code=code, seconds=seconds)
    if code != 0:
        detail = reader.panic or reader.last_error or reader.last_line or "it printed nothing"
        if reader.cause and reader.cause not in detail:
            detail = f"{detail} (cause: {reader.cause})"
        printed = driver_sqlstate(reader.cause or reader.last_error)
        gave_up = printed == LOCK_NOT_AVAILABLE or (printed is None and watch is not None and watch.saw_lock_wait())
        failure = LockWaitError if gave_up else DDLError
        raise failure(f"temporal-sql-tool {command[0]} failed with exit code {code}: {detail}")
    return seconds
