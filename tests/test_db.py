"""How a failed connection attempt is classified: retry, fail fast on access, or a usage error.

libpq gives no SQLSTATE for these, so `migrator.db` asks PQping and probes the maintenance database; the
server is replaced here by fakes of those two questions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import pq

from migrator import db
from migrator.errors import AccessError, UnreachableError, UsageError
from migrator.settings import Settings, build_settings

FAILED = psycopg.OperationalError("connection failed: FATAL:  something\nmore detail")


def settings(**overrides: str) -> Settings:
    values: dict[str, str | bool | None] = {"user": "temporal", "database": "temporal", "connect_timeout": "0"}
    values.update(overrides)
    return build_settings("status", values, {})


class FakeServer:
    """Answers PQping per sslmode, and the maintenance-database probe (or refuses it: bad credentials)."""

    def __init__(self, ping: int, ping_without_tls: int | None = None, probe: tuple[bool, bool] | None = None) -> None:
        self.ping = ping
        self.ping_without_tls = ping if ping_without_tls is None else ping_without_tls
        self.probe = probe

    def answer_ping(self, kwargs: dict[str, Any]) -> int:
        return self.ping_without_tls if kwargs.get("sslmode") == "disable" else self.ping

    def open(self, _settings: Settings, dbname: str | None = None, timeout: float = 10) -> Any:
        if dbname is None:
            raise FAILED  # the store's own database: the attempt being classified
        if self.probe is None:
            raise psycopg.OperationalError("password authentication failed")
        return self._probe_connection(self.probe)

    @staticmethod
    @contextmanager
    def _probe_connection(answer: tuple[bool, bool]) -> Iterator[Any]:

        class Cursor:
            def fetchone(self) -> tuple[bool, bool]:
                return answer

        class Conn:
            def execute(self, query: str, params: dict[str, str]) -> Cursor:
                assert params == {"db": "temporal"}
                return Cursor()

        yield Conn()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> list[FakeServer]:
    holder: list[FakeServer] = []

    def ping(kwargs: dict[str, Any]) -> int:
        return holder[0].answer_ping(kwargs)

    def open_connection(*args: Any, **kwargs: Any) -> Any:
        return holder[0].open(*args, **kwargs)

    monkeypatch.setattr(db, "_ping", ping)
    monkeypatch.setattr(db, "_open", open_connection)
    return holder


def classify(holder: list[FakeServer], fake: FakeServer, **overrides: str) -> Exception:
    holder[:] = [fake]
    return db._classify(settings(**overrides), FAILED)


def test_no_answer_and_starting_up_are_retried(server: list[FakeServer]) -> None:
    assert isinstance(classify(server, FakeServer(pq.Ping.NO_RESPONSE)), db.TransientError)
    assert isinstance(classify(server, FakeServer(pq.Ping.REJECT)), db.TransientError)  # "starting up"


def test_database_not_created_yet_is_retried(server: list[FakeServer]) -> None:
    outcome = classify(server, FakeServer(pq.Ping.OK, probe=(False, False)))
    assert isinstance(outcome, db.TransientError)
    assert "does not exist yet" in str(outcome)


def test_wrong_password_or_missing_role_fails_fast(server: list[FakeServer]) -> None:
    outcome = classify(server, FakeServer(pq.Ping.OK, probe=None))
    assert isinstance(outcome, AccessError)
    assert "'temporal'" in str(outcome)
    assert "Secret" in str(outcome)


def test_missing_connect_privilege_fails_fast(server: list[FakeServer]) -> None:
    outcome = classify(server, FakeServer(pq.Ping.OK, probe=(True, False)))
    assert isinstance(outcome, AccessError)
    assert "GRANT CONNECT ON DATABASE temporal TO temporal" in str(outcome)


def test_tls_against_a_plain_server_is_a_usage_error(server: list[FakeServer]) -> None:
    fake = FakeServer(pq.Ping.NO_RESPONSE, ping_without_tls=pq.Ping.OK)
    outcome = classify(server, fake, tls="true")
    assert isinstance(outcome, UsageError)
    assert "drop --tls" in str(outcome)


def test_bad_conninfo_is_a_usage_error(server: list[FakeServer]) -> None:
    assert isinstance(classify(server, FakeServer(pq.Ping.NO_ATTEMPT)), UsageError)


def test_retries_end_in_unreachable_after_the_connect_timeout(server: list[FakeServer]) -> None:
    server[:] = [FakeServer(pq.Ping.NO_RESPONSE)]
    with pytest.raises(UnreachableError, match="within 0s"):
        db.connect(settings())


def test_sslmode_follows_the_tool() -> None:
    assert db.sslmode(settings()) == "disable"
    assert db.sslmode(settings(tls="true")) == "verify-full"
    assert db.sslmode(settings(tls="true", tls_disable_host_verification="true")) == "require"
    kwargs = db.connection_kwargs(settings(tls="true", tls_ca_file="/ca.pem"))
    assert kwargs["sslrootcert"] == "/ca.pem"
    assert "password" not in kwargs
