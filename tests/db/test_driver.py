"""The database boundary without a server: how errors map to exit codes, and the libpq settings we pass.

A refused login is classified from the SQLSTATE the server sent (integration/test_connect.py shows each case
on a real PostgreSQL); here `_rejection` stands in for the server's answer and `PQping` for its liveness.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors, pq

from migrator.cli.options import build_settings
from migrator.core.settings import Settings
from migrator.db import driver
from migrator.errors import AccessError, DDLError, LockWaitError, UnreachableError, UsageError

REFUSED = psycopg.OperationalError("connection failed: FATAL:  something\nmore detail")


def settings(**overrides: str) -> Settings:
    values: dict[str, str | bool | None] = {"user": "temporal", "database": "temporal", "connect_timeout": "0"}
    values.update(overrides)
    return build_settings("status", values, {})


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (errors.IdleSessionTimeout("terminating connection due to idle-session timeout"), UnreachableError),
        (errors.AdminShutdown("terminating connection due to administrator command"), UnreachableError),
        (errors.ConnectionFailure("connection failure"), UnreachableError),
        (psycopg.OperationalError("server closed the connection unexpectedly"), UnreachableError),
        (errors.InsufficientPrivilege("must be owner of table schema_version"), AccessError),
        (errors.InvalidPassword("password authentication failed"), AccessError),
        (errors.UndefinedTable('relation "x" does not exist'), DDLError),
        (errors.LockNotAvailable("canceling statement due to lock timeout"), LockWaitError),
        (errors.QueryCanceled("canceling statement due to statement timeout"), DDLError),
    ],
)
def test_errors_after_connecting_map_by_sqlstate_class(error: psycopg.Error, expected: type[Exception]) -> None:
    assert driver.error_class(error) is expected


def test_translated_keeps_the_servers_message_and_names_what_failed() -> None:
    with pytest.raises(AccessError) as raised, driver.translated("reading the catalog"):
        raise errors.InsufficientPrivilege("permission denied for table schema_version")
    assert str(raised.value) == (
        "reading the catalog failed: permission denied for table schema_version (SQLSTATE 42501)"
    )


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the fake server answers: ``ping`` (per sslmode) and the SQLSTATE of a refused login."""
    answers: dict[str, Any] = {"ping": pq.Ping.OK, "ping_without_tls": None, "sqlstate": None}

    def ping(kwargs: dict[str, Any]) -> int:
        if kwargs["sslmode"] == "disable" and answers["ping_without_tls"] is not None:
            return int(answers["ping_without_tls"])
        return int(answers["ping"])

    monkeypatch.setattr(driver, "_ping", ping)
    monkeypatch.setattr(
        driver, "_rejection", lambda conninfo, timeout: (answers["sqlstate"], f"FATAL:  {answers['sqlstate']}: why")
    )
    return answers


def classify(**overrides: str) -> Exception:
    return driver._classify(settings(**overrides), "pw", REFUSED, 2)


@pytest.mark.parametrize("sqlstate", ["53300", "3D000", "57P03", None])
def test_what_time_can_fix_is_retried(server: dict[str, Any], sqlstate: str | None) -> None:
    server["sqlstate"] = sqlstate  # too many connections, database not created yet, starting up, no SQLSTATE
    assert isinstance(classify(), driver.TransientError)


def test_no_answer_is_retried(server: dict[str, Any]) -> None:
    server["ping"] = pq.Ping.NO_RESPONSE
    assert isinstance(classify(), driver.TransientError)


def test_a_timed_out_attempt_is_retried_without_asking_again(server: dict[str, Any]) -> None:
    server["ping"] = pq.Ping.NO_ATTEMPT  # would be a usage error, had it been asked
    timed_out = errors.ConnectionTimeout("connection timeout expired")
    assert isinstance(driver._classify(settings(), "pw", timed_out, 2), driver.TransientError)


@pytest.mark.parametrize(("sqlstate", "fix"), [("28P01", "password in the Secret"), ("42501", "GRANT CONNECT")])
def test_authentication_and_connect_privilege_fail_fast_with_the_servers_reason(
    server: dict[str, Any], sqlstate: str, fix: str
) -> None:
    server["sqlstate"] = sqlstate
    outcome = classify()
    assert isinstance(outcome, AccessError)
    assert f"{sqlstate}: why" in str(outcome)
    assert fix in str(outcome)


def test_tls_against_a_plain_server_is_a_usage_error(server: dict[str, Any]) -> None:
    server.update(ping=pq.Ping.NO_RESPONSE, ping_without_tls=pq.Ping.OK)
    outcome = classify(tls="true")
    assert isinstance(outcome, UsageError)
    assert "drop --tls" in str(outcome)


def test_bad_conninfo_is_a_usage_error(server: dict[str, Any]) -> None:
    server["ping"] = pq.Ping.NO_ATTEMPT
    assert isinstance(classify(), UsageError)


def test_retries_end_in_unreachable_after_the_connect_timeout(server: dict[str, Any]) -> None:
    server["ping"] = pq.Ping.NO_RESPONSE
    with pytest.raises(UnreachableError, match="within 0s"):
        driver.Driver.open(settings(port="1"))


def test_sslmode_follows_the_tool_and_tls_without_a_ca_file_uses_the_system_store() -> None:
    assert driver.connection_kwargs(settings())["sslmode"] == "disable"
    assert "sslrootcert" not in driver.connection_kwargs(settings())
    verified = driver.connection_kwargs(settings(tls="true"))
    assert (verified["sslmode"], verified["sslrootcert"]) == ("verify-full", "system")
    assert driver.connection_kwargs(settings(tls="true", tls_ca_file="/ca.pem"))["sslrootcert"] == "/ca.pem"
    unverified = driver.connection_kwargs(settings(tls="true", tls_disable_host_verification="true"))
    assert unverified["sslmode"] == "require"
    assert "sslrootcert" not in unverified
    assert "password" not in verified


def test_connect_attributes_become_libpq_keywords_or_server_settings() -> None:
    kwargs = driver.connection_kwargs(settings(connect_attributes="search_path=my schema&target_session_attrs=any"))
    assert kwargs["target_session_attrs"] == "any"
    assert kwargs["options"].startswith("-c search_path=my\\ schema ")


@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_ipv6_hosts_reach_libpq_without_brackets(host: str) -> None:
    assert driver.connection_kwargs(settings(host=host))["host"] == "::1"


@pytest.mark.parametrize(
    ("message", "sqlstate"),
    [
        ('connection to server at "h", port 5432 failed: FATAL:  53300: too many connections for role "t"', "53300"),
        ('connection to server at "h", port 5432 failed: FATAL:  28P01: password authentication failed', "28P01"),
        ('connection to server at "h", port 5432 failed: FATAL:  password authentication failed', None),
        ('connection to server at "h", port 5432 failed: Connection refused', None),
    ],
)
def test_the_sqlstate_is_read_from_a_verbose_message_only(message: str, sqlstate: str | None) -> None:
    assert driver.sqlstate_of(message) == sqlstate
