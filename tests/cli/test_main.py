"""CLI parsing, the exit-code mapping and secret handling, through `main([...])` as a user would call it."""

from __future__ import annotations

import json
import signal
import stat
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import structlog

from migrator import errors, logs
from migrator.cli import main as cli
from migrator.cli.options import build_settings
from migrator.core.planner import Policy
from migrator.core.rewrite import RewriteMode
from migrator.core.settings import Settings
from migrator.errors import ExitStatus
from migrator.run.migrate import Report, RunFailed
from migrator.tool.runner import tool_argv

SECRET = "s3cret-Pa55word"


@pytest.fixture(autouse=True)
def clean_env(cli_env: pytest.MonkeyPatch) -> None:
    cli_env.setenv("SQL_PASSWORD", SECRET)
    cli_env.setenv("MIGRATOR_CONNECT_TIMEOUT", "0")


def failure(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """The run's stderr must be exactly one JSON line: the failure event."""
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert SECRET not in captured.err + captured.out
    event: dict[str, Any] = json.loads(lines[0])
    assert event["event"] == "run.failed"
    return event


@pytest.mark.parametrize(
    ("argv", "env", "fragment"),
    [
        (["status", "--pl", "mysql8"], {}, "postgres12, postgres12_pgx"),
        (["status"], {"SQL_PLUGIN": "postgres"}, "SQL_PLUGIN"),
        (["status"], {"SQL_PORT": "abc"}, "--port/SQL_PORT 'abc' is not a TCP port"),
        (["status", "-p", "70000"], {}, "not a TCP port"),
        (["status", "--db", " "], {}, "is empty"),
        (["status", "--target-version", "latest"], {}, "not a schema version"),
        (["status", "--target-version", "1.3"], {}, "not in the vendor tree"),
        (["status", "--schema", "archival"], {}, "temporal, visibility"),
        (["status", "--schema-dir", "/nonexistent"], {}, "no vendor schema"),
        (["status", "--lock-timeout", "soon"], {}, "not a number of seconds"),
        (["status"], {"SQL_TLS": "maybe"}, "not a boolean"),
        (["status"], {"SQL_USER": ""}, "no user"),
        (["describe"], {}, "invalid choice"),
        (["status", "--no-such-flag"], {}, "unrecognized arguments"),
        (["migrate", "--tool", "/nonexistent/temporal-sql-tool"], {}, "was not found"),
        (["migrate", "--ddl-lock-timeout", "inf"], {}, "not a number of seconds"),
        (["migrate", "--ddl-lock-timeout", "nan"], {}, "not a number of seconds"),
        (["migrate", "--ddl-lock-timeout", "-1"], {}, "not a number of seconds"),
        # PostgreSQL's lock_timeout is at most INT_MAX (2147483647) milliseconds: 2147483.647 seconds
        (["migrate", "--ddl-lock-timeout", "1e7"], {}, "the most it can be"),
        (["migrate", "--ddl-lock-timeout", "2147484"], {}, "the most it can be"),
        (["status", "--lock-timeout", "inf"], {}, "not a number of seconds"),
        (["status"], {"MIGRATOR_WAIT_TIMEOUT": "Infinity"}, "not a number of seconds"),
        (["status", "--tool-timeout", "1e300"], {}, "the most it can be"),
        (["status", "--progress-interval", "inf"], {}, "not a number of seconds"),
        (["status", "--ca", "host=elsewhere"], {}, "--endpoint/SQL_HOST"),
        (["status", "--ca", "port=6432"], {}, "--port/SQL_PORT"),
        (["status", "--ca", "user=postgres"], {}, "--user/SQL_USER"),
        (["status", "--ca", "dbname=other"], {}, "--database/SQL_DATABASE"),
        (["status", "--ca", "sslmode=disable"], {}, "--tls"),
        (["status", "--ca", "search_path=t&application_name=x"], {}, "names its own"),
        (["status", "--ca", "Application_Name=x"], {}, "names its own"),
        (["status", "--ca", f"password={SECRET}"], {}, "SQL_PASSWORD"),
        (["plan", "--rewrite-mode", "fast"], {}, "use one of: auto, online, plain"),
        (["plan"], {"MIGRATOR_REWRITE_MODE": "sometimes"}, "--rewrite-mode/MIGRATOR_REWRITE_MODE"),
        (["plan", "--max-stall", "-1"], {}, "--max-stall/MIGRATOR_MAX_STALL '-1' is not a number of seconds"),
        (["plan", "--max-stall", "inf"], {}, "not a number of seconds"),
        (["plan"], {"MIGRATOR_ONLINE_ALLOW_ALL_TABLES_PUBLICATION": "maybe"}, "not a boolean"),
        (["migrate"], {"MIGRATOR_ABORT_ONLINE": "perhaps"}, "not a boolean"),
        (["status", "--abort-online"], {}, "is for migrate (and plan, to show it)"),
        (["wait"], {"MIGRATOR_ABORT_ONLINE": "true"}, "leave it out of wait"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str],
    env: dict[str, str],
    fragment: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(argv) == ExitStatus.USAGE
    assert fragment in failure(capsys)["error"]


def test_tool_that_is_not_executable_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tool = tmp_path / "temporal-sql-tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(stat.S_IRUSR)
    assert cli.main(["migrate", "--tool", str(tool)]) == ExitStatus.USAGE
    assert "not executable" in failure(capsys)["error"]


def test_options_are_accepted_before_and_after_the_command() -> None:
    parser = cli.build_parser()
    before = parser.parse_args(["--ep", "db", "-p", "6432", "migrate", "--schema", "visibility"])
    after = parser.parse_args(["migrate", "--ep", "db", "-p", "6432", "--schema", "visibility"])
    assert vars(before) == vars(after)
    assert (before.command, before.host, before.port, before.store) == ("migrate", "db", "6432", "visibility")


@pytest.mark.parametrize(
    "error",
    [
        errors.UsageError,
        errors.UnreachableError,
        errors.AccessError,
        errors.LockTimeoutError,
        errors.UnsafeStateError,
        errors.DDLError,
        errors.WaitTimeoutError,
        errors.Terminated,
    ],
)
def test_each_error_maps_to_its_documented_code(
    error: type[errors.MigratorError],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    def boom(settings: object) -> dict[str, Any]:
        raise error(f"it failed while using {SECRET}")

    monkeypatch.setattr(cli, "run_command", boom)
    assert cli.main(["status"]) == error.status
    event = failure(capsys)
    assert event["exit_code"] == int(error.status)
    summary = json.loads((tmp_path / "termination-log").read_text())
    assert summary["exit_code"] == int(error.status)
    assert SECRET not in json.dumps(summary)


def test_unexpected_exception_is_exit_1_and_redacted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(settings: object) -> dict[str, Any]:
        raise RuntimeError(f"bug near {SECRET}")

    monkeypatch.setattr(cli, "run_command", boom)
    assert cli.main(["status"]) == ExitStatus.INTERNAL
    captured = capsys.readouterr()
    assert "run.crashed" in captured.err
    assert SECRET not in captured.err


def test_password_given_as_a_flag_is_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "--pw", "flag-Secret-99", "--pl", "flag-Secret-99"]) == ExitStatus.USAGE
    captured = capsys.readouterr()
    assert "flag-Secret-99" not in captured.err
    assert "***" in captured.err


def test_abbreviated_flags_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "--lock", "5"]) == ExitStatus.USAGE
    assert "unrecognized arguments: --lock" in failure(capsys)["error"]


def test_termination_message_is_valid_json_however_long_the_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def boom(settings: object) -> dict[str, Any]:
        raise errors.DDLError('repair failed at "statement" ' + "\\x" * 5000)

    monkeypatch.setattr(cli, "run_command", boom)
    assert cli.main(["status"]) == ExitStatus.DDL_FAILED
    capsys.readouterr()
    text = (tmp_path / "termination-log").read_text()
    assert len(text.encode()) <= cli.TERMINATION_LIMIT
    summary = json.loads(text)
    assert summary["exit_code"] == int(ExitStatus.DDL_FAILED)
    assert summary["error"].startswith('repair failed at "statement"')


def test_a_failed_run_lists_the_steps_that_completed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    done = [{"action": "setup-schema", "version": "0.0"}]

    def boom(settings: object) -> dict[str, Any]:
        raise RunFailed(errors.DDLError("update-schema failed"), Report(steps=done))

    monkeypatch.setattr(cli, "run_command", boom)
    assert cli.main(["migrate"]) == ExitStatus.DDL_FAILED
    assert failure(capsys)["completed_steps"] == done
    assert json.loads((tmp_path / "termination-log").read_text())["steps"] == done


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_end_the_run_with_one_line(
    signum: int, status: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(settings: object) -> dict[str, Any]:
        signal.raise_signal(signum)
        raise AssertionError("the signal handler raises")

    before = signal.getsignal(signum)
    monkeypatch.setattr(cli, "run_command", interrupted)
    assert cli.main(["status"]) == status
    assert signal.Signals(signum).name in failure(capsys)["error"]
    assert signal.getsignal(signum) == before  # main() leaves the process's handlers as it found them


def test_overlapping_secrets_are_redacted_whole() -> None:
    logs.forget_secrets()
    logs.add_secret("abc")
    logs.add_secret("abcdef")
    assert logs.redact("x abcdef y abc") == "x *** y ***"
    logs.forget_secrets()
    assert logs.redact("abcdef") == "abcdef"


@pytest.mark.parametrize("attributes", ["password=Attr-Secret-77", "search_path=t&&password=Attr-Secret-77&&"])
def test_a_password_in_connect_attributes_is_refused_and_never_printed(
    attributes: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli.main(["migrate", "--ca", attributes]) == ExitStatus.USAGE
    captured = capsys.readouterr()
    assert "Attr-Secret-77" not in captured.err + captured.out
    assert "Attr-Secret-77" not in (tmp_path / "termination-log").read_text()
    assert json.loads(captured.err)["exit_code"] == int(ExitStatus.USAGE)


def test_a_key_passphrase_in_connect_attributes_is_redacted_from_the_tools_argv(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def started(settings: Settings) -> dict[str, Any]:
        structlog.get_logger("test").info("tool.started", argv=tool_argv(settings, "sql", ["update-schema"]))
        return {}

    monkeypatch.setattr(cli, "run_command", started)
    assert cli.main(["status", "--ca", "sslpassword=Key+Pass%26phrase-42&search_path=t"]) == ExitStatus.OK
    captured = capsys.readouterr()
    assert "tool.started" in captured.err
    assert "Pass&phrase" not in captured.err
    assert "Pass%26phrase" not in captured.err


def test_the_termination_message_is_never_written_to_a_file_that_does_not_exist(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "dev" / "termination-log"
    missing.parent.mkdir()
    monkeypatch.setenv("MIGRATOR_TERMINATION_LOG", str(missing))
    assert cli.main(["status", "--pl", "mysql8"]) == ExitStatus.USAGE
    capsys.readouterr()
    assert list(missing.parent.iterdir()) == []


def test_version_is_printed_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"temporal-migrator {version('temporal-migrator')}\n"


def test_the_rewrite_options_reach_the_policy_from_flags_or_environment() -> None:
    parser = cli.build_parser()
    defaults = build_settings("migrate", vars(parser.parse_args(["migrate", "-u", "app"])), {})
    assert Policy.of(defaults) == Policy(None, RewriteMode.AUTO, 1.0, False, False)
    flags = ["migrate", "-u", "app", "--rewrite-mode", "ONLINE", "--max-stall", "2.5"]
    flags += ["--online-allow-all-tables-publication", "--abort-online"]
    given = build_settings("migrate", vars(parser.parse_args(flags)), {})
    assert Policy.of(given) == Policy(None, RewriteMode.ONLINE, 2.5, True, True)
    environment = {"MIGRATOR_REWRITE_MODE": "plain", "MIGRATOR_MAX_STALL": "0", "MIGRATOR_ABORT_ONLINE": "true"}
    from_env = build_settings("plan", vars(parser.parse_args(["plan", "-u", "app"])), environment)
    assert Policy.of(from_env) == Policy(None, RewriteMode.PLAIN, 0.0, False, True)
