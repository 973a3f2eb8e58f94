"""Command line: ``temporal-migrator status|plan|migrate|wait [options]``.

`main` is the only place where exceptions become exit codes (see `migrator.errors.ExitStatus`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn
from urllib.parse import quote_plus

import structlog

import migrator
from migrator import logs
from migrator.cli.commands import run_command
from migrator.cli.options import COMMANDS, OPTIONS, build_settings
from migrator.core.settings import Settings
from migrator.errors import ExitStatus, MigratorError, Terminated, UsageError
from migrator.run.migrate import RunFailed

log = structlog.get_logger("migrator")


class _Version(argparse.Action):
    """``--version``, read from the package's metadata only when asked for."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        sys.stdout.write(f"temporal-migrator {migrator.__version__}\n")
        parser.exit()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see temporal-migrator --help")


def build_parser() -> argparse.ArgumentParser:
    width = shutil.get_terminal_size().columns - 2  # argparse's own width, asked once rather than per argument
    parser = _Parser(
        prog="temporal-migrator",
        formatter_class=lambda prog: argparse.HelpFormatter(prog, width=width),
        allow_abbrev=False,  # "--pass x" or "--lock 5" must not quietly mean another flag
        description="Bring a Temporal PostgreSQL store to its target schema version, safely and repeatably.",
        epilog="Exit codes: " + ", ".join(f"{status.value} {status.name.lower()}" for status in ExitStatus),
    )
    parser.add_argument("command", choices=COMMANDS, help="what to do")
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    parser.add_argument("--traceback", action="store_true", help="re-raise errors with a traceback (debugging)")
    for option in OPTIONS:
        help_text = f"{option.help} (env {option.env}; default {option.default})"
        if option.is_flag:
            parser.add_argument(*option.flags, dest=option.dest, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(*option.flags, dest=option.dest, metavar=option.env, help=help_text)
    return parser


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (Kubernetes) and SIGINT (Ctrl-C) end the run the same way: cleanup runs, one run.failed line.

    Once: further signals are ignored from here on, so a second one cannot cut the cleanup short (stopping the
    tool, cancelling our statements, releasing the lock); SIGKILL remains for a cleanup that hangs."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    name = signal.Signals(signum).name
    raise Terminated(f"terminated by {name}; the tool (if running) was stopped first", signum)


def _one_line(message: str) -> str:
    """libpq and the tool write multi-line messages; a failure is reported on one line."""
    return " ".join(message.split())


TERMINATION_LIMIT = 4000  # bytes Kubernetes keeps of a termination message (4096, with some room)


def termination_message(summary: dict[str, Any], limit: int = TERMINATION_LIMIT) -> str:
    """The summary as JSON within ``limit`` bytes: long fields are shortened, never the serialised text."""
    document = dict(summary)
    text = json.dumps(document)
    if len(text.encode()) > limit and document.get("steps"):
        document["steps"] = [step.get("action") for step in document["steps"]]  # the actions, without the texts
        text = json.dumps(document)
    error = str(document.get("error", ""))
    while len(text.encode()) > limit and error:
        error = error[: len(error) * limit // len(text.encode()) - 3]  # escaping makes JSON longer than the text
        document["error"] = error + "..."
        text = json.dumps(document)
    return text


def _write_termination_log(path: Path, summary: dict[str, Any]) -> None:
    """Kubernetes shows this file as the container's termination message; best effort, and only into a file
    that exists (Kubernetes makes it): outside a pod, as root, ``/dev/termination-log`` is never created."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_TRUNC)  # no O_CREAT
    except OSError:
        return
    with contextlib.suppress(OSError), os.fdopen(descriptor, "w") as handle:
        handle.write(termination_message(summary))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run, and map the outcome to an exit status (the only place that does)."""
    logs.forget_secrets()
    logs.configure(secrets=[os.environ.get("SQL_PASSWORD")])
    settings: Settings | None = None
    traceback = False
    completed: list[dict[str, Any]] = []
    summary: dict[str, Any] | None = None
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        namespace = build_parser().parse_args(argv)
        traceback = namespace.traceback
        logs.add_secret(namespace.password)
        settings = build_settings(namespace.command, vars(namespace), os.environ)
        secret_attributes = [  # as given, and as the tool's argv carries them (URL-encoded)
            form
            for key, value in settings.connect_attributes
            if "password" in key.lower()
            for form in (value, quote_plus(value))
        ]
        logs.configure(settings.log_format, settings.log_level, [settings.password, *secret_attributes])
        structlog.contextvars.bind_contextvars(database=settings.database, schema=settings.store)
        for sig in previous:
            signal.signal(sig, _on_signal)
        try:
            summary = {"result": "ok", "command": settings.command, **run_command(settings)}
        except RunFailed as failed:
            completed = failed.report.steps
            raise failed.error from None
        status = ExitStatus.OK
    except MigratorError as error:
        if traceback:
            raise
        status = error.status
        message = _one_line(str(error))
        summary = {"result": "failed", "exit_code": int(status), "error": logs.redact(message), "steps": completed}
        log.error("run.failed", exit_code=int(status), error=message, completed_steps=completed)
    except Exception as error:
        if traceback:
            raise
        status = ExitStatus.INTERNAL
        summary = {"result": "failed", "exit_code": int(status), "error": logs.redact(f"internal error: {error!r}")}
        log.exception("run.crashed", exit_code=int(status))
    finally:
        structlog.contextvars.clear_contextvars()
        if settings is not None and summary is not None:  # before a repeated signal may end the process
            _write_termination_log(settings.termination_log, summary)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return int(status)


def main_exit() -> NoReturn:
    sys.exit(main())
