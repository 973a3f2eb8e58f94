"""The one place logging is configured: structlog, JSON lines (or console) on stderr, secrets redacted.

Standard-library records (tenacity, psycopg) go through the same processors, so every line has one shape.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from tenacity import RetryCallState

REDACTED = "***"
_secrets: set[str] = set()


def add_secret(secret: str | None) -> None:
    """Register a value that must never be printed (a password); short values are ignored as too common."""
    if secret and len(secret) >= 3:
        _secrets.add(secret)


def forget_secrets() -> None:
    """Start a run with no secrets of an earlier one (main() may be called more than once in a process)."""
    _secrets.clear()


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):  # "abcdef" before "abc", or "***def" would remain
        text = text.replace(secret, REDACTED)
    return text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


def _redact_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return {key: _scrub(value) for key, value in event.items()}


def _stderr_logger(*_: Any) -> structlog.PrintLogger:
    # Resolved at each use, so a replaced sys.stderr (tests, embedding) is honoured.
    return structlog.PrintLogger(sys.stderr)


def configure(log_format: str = "json", level: str = "info", secrets: Iterable[str | None] = ()) -> None:
    """Configure structlog and the standard library once per run (the CLI calls it again after parsing)."""
    for secret in secrets:
        add_secret(secret)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact_processor,
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if log_format == "console"
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO))


def retry_fields(state: RetryCallState) -> dict[str, Any]:
    """The fields of a tenacity retry event (``db.retrying``, ``ddl.retrying``): attempt, time so far, cause."""
    outcome = state.outcome
    return {
        "attempt": state.attempt_number,
        "elapsed": round(state.seconds_since_start or 0.0, 1),
        "cause": str(outcome.exception()) if outcome else None,
    }
