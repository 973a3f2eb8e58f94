"""Connections: libpq settings mirroring the tool's, and retries only for what time can fix.

libpq reports no SQLSTATE for a failed connection attempt, so failures are classified by asking the server
structured questions instead of reading its (localised) messages: ``PQping`` tells "no answer" or "not
accepting connections yet" (retry) from "up"; when it is up, a connection with the same credentials to the
maintenance database tells a wrong password or missing role (fail fast) from a database that does not exist
yet (retry) or a missing CONNECT privilege (fail fast).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
import structlog
from psycopg import pq
from psycopg.conninfo import make_conninfo
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_delay, wait_random_exponential

from migrator.errors import AccessError, UnreachableError, UsageError
from migrator.settings import Settings

APPLICATION_NAME = "temporal-migrator"
MAINTENANCE_DATABASES = ("postgres", "template1")
log = structlog.get_logger("migrator.db")

Connection = psycopg.Connection[tuple[Any, ...]]


class TransientError(Exception):
    """A connection failure that may go away: retried until --connect-timeout."""


def sslmode(settings: Settings) -> str:
    """temporal-sql-tool's mapping: no TLS → disable, TLS → verify-full, no host verification → require."""
    if not settings.tls:
        return "disable"
    return "require" if settings.tls_disable_host_verification else "verify-full"


def connection_kwargs(settings: Settings, dbname: str | None = None, timeout: float = 10) -> dict[str, Any]:
    """libpq keywords without the password (it is passed separately, never in a string we might log)."""
    kwargs: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "user": settings.user,
        "dbname": dbname or settings.database,
        "sslmode": sslmode(settings),
        "application_name": APPLICATION_NAME,
        "connect_timeout": max(2, int(timeout)),
    }
    if settings.tls_ca_file and settings.tls:
        kwargs["sslrootcert"] = settings.tls_ca_file
    if settings.tls_cert_file and settings.tls:
        kwargs["sslcert"] = settings.tls_cert_file
    if settings.tls_key_file and settings.tls:
        kwargs["sslkey"] = settings.tls_key_file
    return kwargs


def _open(settings: Settings, dbname: str | None = None, timeout: float = 10) -> Connection:
    return psycopg.connect(
        **connection_kwargs(settings, dbname, timeout), password=settings.password or None, autocommit=True
    )


def _ping(kwargs: dict[str, Any]) -> int:
    return pq.PGconn.ping(make_conninfo(**kwargs).encode())


def _classify(settings: Settings, error: psycopg.OperationalError) -> Exception:
    """Turn a failed attempt into TransientError, AccessError or UsageError (see the module docstring)."""
    ping = _ping(connection_kwargs(settings))
    if ping == pq.Ping.NO_ATTEMPT:
        return UsageError(f"the connection settings are invalid: {error}")
    if (
        ping != pq.Ping.OK
        and settings.tls
        and _ping({**connection_kwargs(settings), "sslmode": "disable"}) == pq.Ping.OK
    ):
        return UsageError(
            f"the server at {settings.host}:{settings.port} answers without TLS but not with it ({error}); "
            "drop --tls/SQL_TLS, or fix the server's TLS setup or the --tls-ca-file it is verified against"
        )
    if ping != pq.Ping.OK:
        return TransientError(str(error))
    for maintenance in MAINTENANCE_DATABASES:
        try:
            with _open(settings, maintenance) as probe:
                row = probe.execute(
                    "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = %(db)s),"
                    " EXISTS (SELECT 1 FROM pg_database WHERE datname = %(db)s"
                    "  AND has_database_privilege(datname, 'CONNECT'))",
                    {"db": settings.database},
                ).fetchone()
        except psycopg.OperationalError:
            continue
        exists, may_connect = row if row else (False, False)
        if not exists:
            return TransientError(f"database {settings.database!r} does not exist yet")
        if not may_connect:
            return AccessError(
                f"role {settings.user!r} lacks CONNECT on database {settings.database!r}: "
                f"GRANT CONNECT ON DATABASE {settings.database} TO {settings.user}"
            )
        return TransientError(str(error))
    return AccessError(
        f"authentication failed for user {settings.user!r} at {settings.host}:{settings.port}: the password in "
        "the Secret and the role's password disagree, or the role does not exist or may not log in"
    )


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    log.warning(
        "db.retrying",
        attempt=state.attempt_number,
        elapsed=round(state.seconds_since_start or 0.0, 1),
        cause=str(outcome.exception()) if outcome else None,
    )


def connect(settings: Settings, timeout: float | None = None) -> Connection:
    """An autocommit connection, retried with jittered exponential backoff for at most ``timeout`` seconds."""
    budget = settings.connect_timeout if timeout is None else timeout
    deadline = time.monotonic() + budget

    def attempt() -> Connection:
        try:
            return _open(settings, timeout=min(10.0, max(2.0, deadline - time.monotonic())))
        except psycopg.OperationalError as error:
            raise _classify(settings, error) from None

    retrying = Retrying(
        retry=retry_if_exception_type(TransientError),
        wait=wait_random_exponential(multiplier=0.5, max=5),
        stop=stop_after_delay(budget),
        before_sleep=_log_retry,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except TransientError as error:
        raise UnreachableError(
            f"database {settings.database!r} at {settings.host}:{settings.port} did not accept connections "
            f"within {budget:g}s ({error}); check the host, port and that the database exists"
        ) from None
