"""Command line: ``temporal-migrator status|plan|migrate|wait [options]``.

`main` is the only place where exceptions become exit codes (see `migrator.errors.ExitStatus`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import structlog

from migrator import __version__, logs
from migrator.errors import ExitStatus, MigratorError, Terminated, UnsafeStateError, UsageError
from migrator.executor import inspect, migrate, wait
from migrator.impact import too_large
from migrator.planner import access_problem, resolve_target
from migrator.settings import COMMANDS, OPTIONS, Settings, build_settings, resolve_tool
from migrator.vendor import load_vendor_schema

log = structlog.get_logger("migrator")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see temporal-migrator --help")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="temporal-migrator",
        description="Bring a Temporal PostgreSQL store to its target schema version, safely and repeatably.",
        epilog="Exit codes: " + ", ".join(f"{status.value} {status.name.lower()}" for status in ExitStatus),
    )
    parser.add_argument("command", choices=COMMANDS, help="what to do")
    parser.add_argument("--version", action="version", version=f"temporal-migrator {__version__}")
    parser.add_argument("--traceback", action="store_true", help="re-raise errors with a traceback (debugging)")
    for option in OPTIONS:
        help_text = f"{option.help} (env {option.env}; default {option.default})"
        if option.is_flag:
            parser.add_argument(*option.flags, dest=option.dest, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(*option.flags, dest=option.dest, metavar=option.env, help=help_text)
    return parser


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated("terminated by SIGTERM; the tool (if running) was stopped first")


def _one_line(message: str) -> str:
    """libpq and the tool write multi-line messages; a failure is reported on one line."""
    return " ".join(message.split())


def _write_termination_log(path: Path, summary: dict[str, Any]) -> None:
    """Kubernetes shows this file as the container's termination message; best effort."""
    try:
        with path.open("w") as handle:
            handle.write(json.dumps(summary)[:4000])
    except OSError:
        pass


def _run(settings: Settings) -> dict[str, Any]:
    vendor = load_vendor_schema(settings.schema_dir, settings.store)
    target = resolve_target(vendor, settings.target)
    if settings.command == "migrate":
        tool = resolve_tool(settings.tool)
        report = migrate(settings, tool, vendor, target)
        return {
            "from_version": report.from_version,
            "to_version": report.to_version,
            "steps": report.steps,
            "repaired_statements": report.repaired_statements,
        }
    if settings.command == "wait":
        return {"current_version": wait(settings, vendor, target)}
    state, planned, impact = inspect(settings, vendor, target)
    document = planned.to_dict()
    document["invalid_indexes"] = list(state.catalog.invalid_indexes)
    document["impact"] = [version.to_dict() for version in impact]
    if settings.command == "plan":
        document["steps"] = [step.to_dict() for step in planned.steps]
        document["blocked"] = access_problem(state, planned) or too_large(impact, settings.max_rewrite_size)
    print(json.dumps(document, indent=2))
    if settings.command == "plan" and planned.refusal:
        raise UnsafeStateError(planned.refusal)
    return {"state": document["state"], "current_version": document["current_version"]}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run, and map the outcome to an exit status (the only place that does)."""
    logs.configure(secrets=[os.environ.get("SQL_PASSWORD")])
    settings: Settings | None = None
    traceback = False
    try:
        namespace = build_parser().parse_args(argv)
        traceback = namespace.traceback
        logs.add_secret(namespace.password)
        settings = build_settings(namespace.command, vars(namespace), os.environ)
        logs.configure(settings.log_format, settings.log_level, [settings.password])
        structlog.contextvars.bind_contextvars(database=settings.database, schema=settings.store)
        signal.signal(signal.SIGTERM, _on_sigterm)
        summary = {"result": "ok", "command": settings.command, **_run(settings)}
        status = ExitStatus.OK
    except MigratorError as error:
        if traceback:
            raise
        status = error.status
        message = _one_line(str(error))
        summary = {"result": "failed", "exit_code": int(status), "error": logs.redact(message)}
        log.error("run.failed", exit_code=int(status), error=message)
    except Exception as error:
        if traceback:
            raise
        status = ExitStatus.INTERNAL
        summary = {"result": "failed", "exit_code": int(status), "error": logs.redact(f"internal error: {error!r}")}
        log.exception("run.crashed", exit_code=int(status))
    finally:
        structlog.contextvars.clear_contextvars()
    if settings is not None:
        _write_termination_log(settings.termination_log, summary)
    return int(status)


def main_exit() -> NoReturn:
    sys.exit(main())
