"""Run the real temporal-sql-tool as a child process and turn its output into log events.

Argument list, no shell; ``--ep``, ``-p`` and ``--pl`` always given (the tool defaults to MySQL's); never
``--quiet`` (it turns errors into exit 0); the password only in the child's environment (SQL_PASSWORD).
On timeout or SIGTERM the child gets SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from migrator.errors import DDLError, LockWaitError
from migrator.online import LOCK_NOT_AVAILABLE, driver_sqlstate, tool_session_env
from migrator.settings import Settings

log = structlog.get_logger("migrator.tool")
GRACE_SECONDS = 10.0
PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARN": "warning", "WARNING": "warning"}
# The tool (v1.25+) hides a failed connection's cause behind this message; the cause came on an earlier line.
_GENERIC_ERRORS = ("no usable database connection found",)


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


def tool_argv(settings: Settings, tool: str, command: Sequence[str]) -> list[str]:
    argv = [
        tool,
        "--ep",
        settings.host,
        "-p",
        str(settings.port),
        "-u",
        settings.user,
        "--db",
        settings.database,
        "--pl",
        settings.plugin,
    ]
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


def tool_env(settings: Settings) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SQL_")}
    env["SQL_PASSWORD"] = settings.password
    env.update(tool_session_env(settings.ddl_lock_timeout, env))
    return env


class _Reader(threading.Thread):
    """Logs each output line and remembers the most telling error."""

    def __init__(self, stream: Any) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.last_error = ""
        self.last_line = ""
        self.cause = ""

    def run(self) -> None:
        for raw in self.stream:
            line = parse_line(raw)
            if not line.message:
                continue
            getattr(log, line.level)("tool.output", tool_level=line.level, message=line.message, **line.fields)
            self.last_line = line.message
            error = str(line.fields.get("error", ""))
            if line.level == "error" or error:
                self.last_error = f"{line.message} {error}".strip()
                if error and not any(generic in error for generic in _GENERIC_ERRORS):
                    self.cause = error


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM the tool if the migrator dies (kill -9), so no tool runs unlocked.

    Only an already-loaded libc call runs between fork and exec, so it is safe beside the reader thread.
    """
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_tool(settings: Settings, tool: str, command: Sequence[str]) -> float:
    """Run one tool command to completion; returns its duration, raises DDLError on failure."""
    argv = tool_argv(settings, tool, command)
    started = time.monotonic()
    process = subprocess.Popen(
        argv,
        preexec_fn=_die_with_parent if _LIBC is not None else None,  # noqa: PLW1509 - see _die_with_parent
        env=tool_env(settings),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    log.info("tool.started", command=list(command), argv=argv, pid=process.pid)
    reader = _Reader(process.stdout)
    reader.start()
    try:
        code = process.wait(settings.tool_timeout or None)
    except subprocess.TimeoutExpired:
        _stop(process)
        raise DDLError(
            f"temporal-sql-tool {command[0]} did not finish within {settings.tool_timeout:g}s and was stopped; "
            "raise --tool-timeout if the database is just slow"
        ) from None
    finally:
        _stop(process)
        reader.join(5)
    seconds = round(time.monotonic() - started, 2)
    log.info("tool.exited", command=command[0], exit_code=code, seconds=seconds)
    if code != 0:
        detail = reader.last_error or reader.last_line or "it printed nothing"
        if reader.cause and reader.cause not in detail:
            detail = f"{detail} (cause: {reader.cause})"
        failure = LockWaitError if driver_sqlstate(reader.cause) == LOCK_NOT_AVAILABLE else DDLError
        raise failure(f"temporal-sql-tool {command[0]} failed with exit code {code}: {detail}")
    return seconds
