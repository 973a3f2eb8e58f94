"""Every session's settings are known to every supported major, and each kind keeps its guarantees there.

The oracle is PostgreSQL's documentation: the release notes and "Server Configuration" chapter of the first
major that lists each parameter, written here as literals (lock_timeout: 9.3; idle_in_transaction_session_timeout:
9.6; idle_session_timeout and client_connection_check_interval: 14; statement_timeout: 7.3).
"""

from __future__ import annotations

from typing import Any

import pytest
from psycopg import sql

from migrator.cli.options import build_settings
from migrator.core.settings import Settings
from migrator.db import driver
from migrator.db.session import Session, session_settings, settings_for, startup_options

FIRST_MAJOR_WITH = {
    "statement_timeout": 7.3,
    "lock_timeout": 9.3,
    "idle_in_transaction_session_timeout": 9.6,
    "idle_session_timeout": 14,
    "client_connection_check_interval": 14,
}
MAJORS = (12, 13, 14, 15, 16, 17, 18)


def server_version_num(major: int, minor: int = 7) -> int:
    return major * 10000 + minor


def known_on(major: int) -> set[str]:
    return {name for name, first in FIRST_MAJOR_WITH.items() if first <= major}


@pytest.mark.parametrize("major", MAJORS)
@pytest.mark.parametrize("session", list(Session))
def test_every_setting_is_one_the_server_knows(major: int, session: Session) -> None:
    assert set(settings_for(session, server_version_num(major), 5)) <= known_on(major)


@pytest.mark.parametrize("major", MAJORS)
def test_the_lock_session_turns_off_every_timeout_the_server_has(major: int) -> None:
    chosen = settings_for(Session.LOCK, server_version_num(major), 5)
    timeouts = {"statement_timeout", "idle_in_transaction_session_timeout", "idle_session_timeout"}
    assert {name: chosen[name] for name in timeouts & known_on(major)} == dict.fromkeys(timeouts & known_on(major), 0)
    assert chosen["lock_timeout"] == 5000
    assert ("client_connection_check_interval" in chosen) == ("client_connection_check_interval" in known_on(major))


@pytest.mark.parametrize("major", MAJORS)
def test_the_tools_sessions_wait_a_bounded_time_and_are_never_cut(major: int) -> None:
    chosen = session_settings(2.5, server_version_num(major))
    assert chosen["lock_timeout"] == 2500
    assert chosen["statement_timeout"] == 0
    assert ("client_connection_check_interval" in chosen) == ("client_connection_check_interval" in known_on(major))


@pytest.mark.parametrize("major", MAJORS)
def test_reading_sessions_give_up_on_a_table_lock_within_seconds(major: int) -> None:
    chosen = settings_for(Session.READ, server_version_num(major), 600)
    assert 0 < chosen["lock_timeout"] <= 5000


def test_startup_options_hold_only_what_the_oldest_supported_server_knows() -> None:
    options = startup_options(Session.READ, server_version_num(12))
    names = {item.split("=")[0] for item in options.split("-c ") if item.strip()}
    assert names <= known_on(12)
    assert "lock_timeout" in names


def settings(**overrides: str) -> Settings:
    values: dict[str, str | bool | None] = {"user": "temporal", "database": "temporal"}
    values.update(overrides)
    return build_settings("status", values, {})


def test_a_reading_session_gets_its_lock_timeout_after_the_users_server_settings() -> None:
    kwargs = driver.connection_kwargs(settings(connect_attributes="search_path=temporal&lock_timeout=60s"))
    assert kwargs["options"].startswith("-c search_path=temporal -c lock_timeout=60s -c lock_timeout=")


def test_the_lock_session_gets_nothing_at_startup_it_sets_after_connecting_and_keeps_alive() -> None:
    kwargs = driver.connection_kwargs(settings(), session=Session.LOCK)
    assert "options" not in kwargs
    assert kwargs["keepalives"] == 1


class RecordingConn:
    """Stands in for a psycopg connection: records each statement, answers 'not in recovery'."""

    def __init__(self, version: int) -> None:
        self.statements: list[bytes] = []
        self.info = type("Info", (), {"server_version": version})()

    def execute(self, statement: object, params: object = None) -> RecordingConn:
        assert isinstance(statement, sql.Composable)
        self.statements.append(statement.as_string(None).encode())
        return self

    def fetchone(self) -> tuple[bool, ...]:
        return (False,)


@pytest.mark.parametrize("major", MAJORS)
def test_the_lock_session_is_prepared_in_one_statement_the_server_accepts(major: int) -> None:
    conn = RecordingConn(server_version_num(major))
    connection: Any = conn
    driver.Driver(connection, settings(ddl_lock_timeout="3"))._prepare_primary_session()
    assert len(conn.statements) == 1
    statement = conn.statements[0].decode()
    assert "pg_is_in_recovery()" in statement
    assert ("idle_session_timeout" in statement) == ("idle_session_timeout" in known_on(major))
    assert "'lock_timeout', '3000'" in statement
