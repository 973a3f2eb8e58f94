"""The tool runner against stub tools: process-level failures only (the real tool runs in integration/)."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from migrator import tool as tool_module
from migrator.errors import DDLError, Terminated
from migrator.settings import Settings, build_settings
from migrator.tool import parse_line, run_tool, tool_argv

PASSWORD = "stub-Secret-42"
STUB = f"""#!{sys.executable}
import json, os, signal, sys, time
mode = os.environ["STUB_MODE"]
with open(os.environ["STUB_RECORD"], "w") as record:
    json.dump({{"argv": sys.argv, "password": os.environ.get("SQL_PASSWORD")}}, record)
line = "2026-01-01T00:00:00.000Z\\t\\x1b[31mERROR\\x1b[0m\\t{{}}\\t{{}}\\n"
if mode == "crash":
    sys.stderr.write(line.format("sql handle: unable to refresh database connection pool",
                                 json.dumps({{"error": "dial tcp: connection refused"}})))
    sys.stderr.write(line.format("Unable to update SQL schema.",
                                 json.dumps({{"error": "no usable database connection found"}})))
    sys.exit(1)
if mode == "garbage":
    sys.stdout.buffer.write(b"\\x00\\xff not zap at all\\n\\tonly\\ttabs\\n{{json\\n")
    sys.exit(0)
if mode == "panic":
    sys.stderr.write("panic: runtime error: index out of range\\n")
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


def test_password_reaches_the_tool_only_through_its_environment(
    stub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_MODE", "ok")
    monkeypatch.setenv("SQL_HOST", "elsewhere")  # the tool's own env defaults must not leak in
    run_tool(settings(), str(stub), ["setup-schema", "-v", "0.0"])
    seen = record(tmp_path)
    assert seen["password"] == PASSWORD
    assert PASSWORD not in json.dumps(seen["argv"])


def test_failure_is_exit_7_with_the_real_cause(stub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_MODE", "crash")
    with capture_logs() as events, pytest.raises(DDLError) as raised:
        run_tool(settings(), str(stub), ["update-schema"])
    message = str(raised.value)
    assert "exit code 1" in message
    assert "connection refused" in message
    assert [e["message"] for e in events if e["event"] == "tool.output"] == [
        "sql handle: unable to refresh database connection pool",
        "Unable to update SQL schema.",
    ]
    assert raised.value.status == 7


def test_panic_is_reported(stub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_MODE", "panic")
    with pytest.raises(DDLError, match="exit code 2: panic: runtime error"):
        run_tool(settings(), str(stub), ["update-schema"])


def test_garbage_output_does_not_break_the_runner(stub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_MODE", "garbage")
    with capture_logs() as events:
        run_tool(settings(), str(stub), ["update-schema"])
    assert any(e["event"] == "tool.exited" and e["exit_code"] == 0 for e in events)


def test_hanging_tool_is_stopped_at_the_timeout(stub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_MODE", "ignore-term")
    started = time.monotonic()
    with pytest.raises(DDLError, match="did not finish within 1s"):
        run_tool(settings(tool_timeout="1"), str(stub), ["update-schema"])
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
                run_tool(settings(), str(stub), ["update-schema"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert started_marker.exists()
    assert not any(e["event"] == "tool.exited" for e in events)
