"""The tool runner against stub tools: process-level failures only (the real tool runs in integration/)."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import structlog
from structlog.testing import capture_logs

from migrator.cli.options import build_settings
from migrator.core.settings import Settings
from migrator.errors import DDLError, LockLostError, LockWaitError, Terminated
from migrator.tool import runner as tool_module
from migrator.tool.runner import parse_line, run_tool, tool_argv, tool_session

PASSWORD = "stub-Secret-42"
SERVER_VERSION = 150000  # what the lock session reports (PostgreSQL 15)
TAG = "temporal-migrator-tool/4242"  # the run's tag: tool_application_name of the lock session's pid
STUB = f"""#!{sys.executable}
import json, os, signal, sys, time
mode = os.environ["STUB_MODE"]
with open(os.environ["STUB_RECORD"], "w") as record:
    passfile = os.environ.get("PGPASSFILE")
    json.dump({{"argv": sys.argv, "sql_password": os.environ.get("SQL_PASSWORD"), "passfile_path": passfile,
               "passfile": open(passfile).read() if passfile else None,
               "passfile_mode": oct(os.stat(passfile).st_mode & 0o777) if passfile else None}}, record)
line = "2026-01-01T00:00:00.000Z\\t\\x1b[31mERROR\\x1b[0m\\t{{}}\\t{{}}\\n"
if mode == "crash":
    sys.stderr.write(line.format("sql handle: unable to refresh database connection pool",
                                 json.dumps({{"error": "dial tcp: connection refused"}})))
    sys.stderr.write(line.format("Unable to update SQL schema.",
                                 json.dumps({{"error": "no usable database connection found"}})))
    sys.exit(1)
if mode == "garbage":
    sys.stdout.buffer.write(b"\\x00\\xff not zap at all\\n\\tonly\\ttabs\\n{{json\\n")
    sys.stderr.write(line.format("clash", json.dumps({{"event": "x", "level": "y", "timestamp": 1}})))
    sys.stderr.write(("y" * 100 + "\\n") * 3000)  # more than a pipe holds: the reader must keep draining
    sys.exit(0)
if mode in ("lock-timeout", "other-failure"):  # lib/pq 1.10 (Temporal v1.29) prints no SQLSTATE
    open(os.environ["STUB_RECORD"] + ".started", "w").close()
    time.sleep(float(os.environ.get("STUB_SECONDS", "0")))
    sys.stderr.write(line.format("Unable to update SQL schema.", json.dumps(
        {{"error": "error executing statement: pq: canceling statement due to lock timeout"
                   if mode == "lock-timeout" else 'pq: relation "x" does not exist (42P01)'}})))
    sys.exit(1)
if mode == "panic":
    sys.stderr.write("panic: runtime error: index out of range [3] with length 3\\n\\n"
                     "goroutine 1 [running]:\\nmain.main()\\n\\t/src/cmd/tools/sql/main.go:12 +0x1d\\n")
    sys.exit(2)
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode in ("hang", "ignore-term"):
    open(os.environ["STUB_RECORD"] + ".started", "w").close()
    time.sleep(60)
"""


@pytest.fixture
def stub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "temporal-sql-tool"
    path.write_text(STUB)
    path.chmod(0o755)
    monkeypatch.setenv("STUB_RECORD", str(tmp_path / "record.json"))
    monkeypatch.setattr(tool_module, "GRACE_SECONDS", 0.5)
    return path


def settings(**overrides: str) -> Settings:
    values: dict[str, str | bool | None] = {"user": "temporal", "password": PASSWORD, "tool_timeout": "30"}
    values.update(overrides)
    return build_settings("migrate", values, {})


def record(tmp_path: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((tmp_path / "record.json").read_text())
    return loaded


def test_zap_console_lines_are_parsed_with_colour_codes() -> None:
    raw = (
        "2026-11-27T03:43:35.641Z\t\x1b[34mINFO\x1b[0m\tStarting schema setup\t"
        '{"config": {"a": 1}, "logging-call-at": "x.go:40"}\n'
    )
    line = parse_line(raw)
    assert (line.level, line.message, line.fields) == ("info", "Starting schema setup", {"config": {"a": 1}})
    assert parse_line("2026\t\x1b[33mWARN\x1b[0m\tslow\n").level == "warning"
    assert parse_line("panic: boom").message == "panic: boom"


def test_argv_has_explicit_endpoint_port_plugin_and_no_password() -> None:
    argv = tool_argv(settings(), "sql", ["update-schema", "-d", "/x", "-v", "1.18"])
    assert argv[:11] == [
        "sql",
        "--ep",
        "127.0.0.1",
        "-p",
        "5432",
        "-u",
        "temporal",
        "--db",
        "temporal",
        "--pl",
        "postgres12",
    ]
    assert PASSWORD not in " ".join(argv)
    assert "--quiet" not in argv


def test_tls_flags_are_passed_through() -> None:
    argv = tool_argv(settings(tls="true", tls_ca_file="/ca.pem", tls_disable_host_verification="true"), "sql", [])
    assert argv[-4:] == ["--tls", "--tls-ca-file", "/ca.pem", "--tls-disable-host-verification"]


def test_password_reaches_the_tool_only_through_a_private_password_file(
    stub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_MODE", "ok")
    monkeypatch.setenv("SQL_HOST", "elsewhere")  # the tool's own env defaults must not leak in
    monkeypatch.setenv("SQL_PASSWORD", PASSWORD)  # not handed on: the tool would URL-escape it wrongly
    password = "a b+c%d:e\\f@g"
    run_tool(
        settings(password=password),
        str(stub),
        ["setup-schema", "-v", "0.0"],
        server_version=SERVER_VERSION,
        application_name=TAG,
    )
    seen = record(tmp_path)
    assert seen["sql_password"] is None
    assert seen["passfile"] == "*:*:*:*:a b+c%d\\:e\\\\f@g\n"
    assert seen["passfile_mode"] == "0o600"
    assert password not in json.dumps(seen["argv"])
    assert not Path(str(seen["passfile_path"])).exists()  # removed after the run


def test_ipv6_host_and_connect_attributes_are_given_as_the_tool_takes_them() -> None:
    argv = tool_argv(settings(host="[::1]", connect_attributes="search_path=t&work_mem=6 MB"), "sql", [])
    assert argv[argv.index("--ep") + 1] == "[::1]"
    assert argv[argv.index("--connect-attributes") + 1] == "search_path=t&work_mem=6+MB"
    assert tool_argv(settings(host="::1"), "sql", [])[2] == "[::1]"


def test_failure_is_exit_7_with_the_real_cause(stub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_MODE", "crash")
    with capture_logs() as events, pytest.raises(DDLError) as raised:
        run_tool(settings(), str(stub), ["update-schema"], server_version=SERVER_VERSION, application_name=TAG)
    message = str(raised.value)
    assert "exit code 1" in message
    assert "connection refused" in message
    assert [e["message"] for e in events if e["event"] == "tool.output"] == [
        "sql handle: unable to refresh database connection pool",
        "Unable to update SQL schema.",
    ]
    assert raised.value.status == 7


def test_a_multi_line_go_panic_is_reported_by_its_panic_line(stub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_MODE", "panic")
    with capture_logs() as events, pytest.raises(DDLError) as raised:
        run_tool(settings(), str(stub), ["update-schema"], server_version=SERVER_VERSION, application_name=TAG)
    assert str(raised.value).endswith("exit code 2: panic: runtime error: index out of range [3] with length 3")
    stack = [e for e in events if e["event"] == "tool.output" and "main.go" in e["message"]]
    assert [e["log_level"] for e in stack] == ["error"]


def test_garbage_and_clashing_field_names_do_not_stop_the_reader(stub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_MODE", "garbage")
    structlog.contextvars.bind_contextvars(database="db1", schema="visibility")
    started = time.monotonic()
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as events:
        run_tool(settings(), str(stub), ["update-schema"], server_version=SERVER_VERSION, application_name=TAG)
    assert time.monotonic() - started < 10  # the pipe kept draining: no wait for the tool timeout
    clash = next(e for e in events if e.get("message") == "clash")
    assert clash["fields"] == {"event": "x", "level": "y", "timestamp": 1}
    outputs = [e for e in events if e["event"] == "tool.output"]
    assert outputs
    assert all((e["database"], e["schema"]) == ("db1", "visibility") for e in outputs)
    assert any(e["event"] == "tool.exited" and e["exit_code"] == 0 for e in events)


def test_hanging_tool_is_stopped_at_the_timeout(stub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_MODE", "ignore-term")
    started = time.monotonic()
    with pytest.raises(DDLError, match="did not finish within 1s"):
        run_tool(
            settings(tool_timeout="1"),
            str(stub),
            ["update-schema"],
            server_version=SERVER_VERSION,
            application_name=TAG,
        )
    assert time.monotonic() - started < 10


def test_sigterm_stops_the_tool_before_leaving(stub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_MODE", "hang")

    def on_term(signum: int, frame: object) -> None:
        raise Terminated("terminated")

    previous = signal.signal(signal.SIGTERM, on_term)
    started_marker = tmp_path / "record.json.started"

    def send_term() -> None:
        deadline = time.monotonic() + 10
        while not started_marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        signal.raise_signal(signal.SIGTERM)

    try:
        with capture_logs() as events:
            threading.Thread(target=send_term).start()
            with pytest.raises(Terminated):
                run_tool(settings(), str(stub), ["update-schema"], server_version=SERVER_VERSION, application_name=TAG)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert started_marker.exists()
    assert not any(e["event"] == "tool.exited" for e in events)


def attributes(argv: list[str]) -> list[tuple[str, str]]:
    return parse_qsl(argv[argv.index("--connect-attributes") + 1])


def test_the_run_tag_and_bounded_lock_waits_are_startup_parameters_that_win_over_the_users() -> None:
    """In --connect-attributes every driver of the tool sends them to the server (pgx 5.7 ignores PGOPTIONS),
    and a user's lock_timeout there cannot unbound its waits (an application_name there is refused as bad
    input: the run's tag is ours)."""
    chosen = settings(connect_attributes="search_path=t&lock_timeout=0")
    argv = tool_argv(chosen, "sql", ["update-schema"], tool_session(2.5, SERVER_VERSION, TAG))
    assert attributes(argv) == [
        ("search_path", "t"),
        ("application_name", TAG),
        ("lock_timeout", "2500"),
        ("statement_timeout", "0"),
        ("client_connection_check_interval", "2000"),
    ]
    assert dict(attributes(tool_argv(chosen, "sql", [], tool_session(1, 130012, TAG)))) == {
        "search_path": "t",
        "application_name": TAG,
        "lock_timeout": "1000",
        "statement_timeout": "0",
    }


def test_the_tool_runs_under_setpriv_with_a_parent_death_signal(
    stub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Python runs between fork and exec (no preexec_fn), and the tool itself is what runs under the pid."""
    assert tool_module.with_parent_death_signal(["sql", "x"])[1:] == ["--pdeathsig", "TERM", "--", "sql", "x"]
    monkeypatch.setenv("STUB_MODE", "ok")
    with capture_logs() as events:
        run_tool(
            settings(), str(stub), ["setup-schema", "-v", "0.0"], server_version=SERVER_VERSION, application_name=TAG
        )
    assert record(tmp_path)["argv"][1:5] == ["--ep", "127.0.0.1", "-p", "5432"]  # type: ignore[index]
    assert not [e for e in events if e["event"] == "tool.no_parent_death_signal"]


def test_without_setpriv_the_tool_still_runs_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tool_module, "SETPRIV", "no-such-setpriv")
    with capture_logs() as events:
        assert tool_module.with_parent_death_signal(["sql"]) == ["sql"]
    assert [e["event"] for e in events] == ["tool.no_parent_death_signal"]


class FakeWatch:
    """A run's watch: ``lost_after`` polls, the lock is gone; ``waiting`` is what it last saw of the statements."""

    def __init__(self, lost_after: int | None = None, waiting: bool = False) -> None:
        self.polls = 0
        self.begun = 0
        self.lost_after = lost_after
        self.waiting = waiting

    def begin(self) -> None:
        assert self.polls == 0, "begin comes before the first poll"
        self.begun += 1

    def poll(self) -> None:
        self.polls += 1
        if self.lost_after is not None and self.polls > self.lost_after:
            raise LockLostError("the advisory lock was lost while the tool ran")

    def saw_lock_wait(self) -> bool:
        return self.waiting


def test_a_lost_lock_stops_the_running_tool_within_two_seconds(
    stub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_MODE", "hang")
    watch = FakeWatch(lost_after=2)  # the first look is at the start
    started = time.monotonic()
    with capture_logs() as events, pytest.raises(LockLostError):
        run_tool(
            settings(), str(stub), ["update-schema"], server_version=SERVER_VERSION, application_name=TAG, watch=watch
        )
    assert (tmp_path / "record.json.started").exists()
    assert time.monotonic() - started < 2 + 3 * tool_module.WATCH_SECONDS  # the stub sleeps 60 s otherwise
    assert watch.polls == 3
    assert not any(e["event"] == "tool.exited" for e in events)


@pytest.mark.parametrize(
    ("mode", "waiting", "expected"),
    [
        ("lock-timeout", True, LockWaitError),  # no SQLSTATE printed; the server saw the wait: retried
        ("lock-timeout", False, DDLError),  # no evidence of a lock wait: never decided from the message
        ("other-failure", True, DDLError),  # the driver printed another SQLSTATE: that decides
    ],
)
def test_a_lock_timeout_is_recognised_from_the_servers_evidence_not_the_message(
    stub: Path, monkeypatch: pytest.MonkeyPatch, mode: str, waiting: bool, expected: type[DDLError]
) -> None:
    monkeypatch.setenv("STUB_MODE", mode)
    monkeypatch.setenv("STUB_SECONDS", str(2 * tool_module.WATCH_SECONDS))  # the watch is asked while it runs
    watch = FakeWatch(waiting=waiting)
    with pytest.raises(DDLError) as raised:
        run_tool(
            settings(), str(stub), ["update-schema"], server_version=SERVER_VERSION, application_name=TAG, watch=watch
        )
    assert type(raised.value) is expected
    assert (watch.begun, watch.polls >= 1) == (1, True)


def test_a_signal_during_a_thread_start_is_delivered_after_it_not_inside_it() -> None:
    """A handler raising inside Thread.start left the thread's bookkeeping half done (KeyError traceback)."""
    ran = threading.Event()
    hooked: list[object] = []

    class Signalled(threading.Thread):
        def start(self) -> None:
            signal.raise_signal(signal.SIGTERM)  # arrives while the thread starts
            super().start()

    def on_term(signum: int, frame: object) -> None:
        raise Terminated("terminated")

    previous_hook = threading.excepthook
    threading.excepthook = hooked.append
    previous = signal.signal(signal.SIGTERM, on_term)
    thread = Signalled(target=ran.set)
    try:
        with pytest.raises(Terminated):
            tool_module.start_shielded(thread)
        thread.join(5)
    finally:
        signal.signal(signal.SIGTERM, previous)
        threading.excepthook = previous_hook
    assert ran.is_set()
    assert hooked == []
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == set()
