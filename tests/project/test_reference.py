"""docs/reference.md and the generated tables of README.md, chart/README.md and docs/benchmarks.md say what the
code says: regenerated here, any difference fails (run `python -m devtools.reference`)."""

from __future__ import annotations

import ast
import dataclasses
import textwrap
from pathlib import Path

import pytest

from devtools import reference
from migrator.cli import options
from migrator.errors import EXIT_MEANINGS, ExitStatus


def test_generated_files_are_up_to_date() -> None:
    stale = [str(path) for path, text in reference.generated().items() if path.read_text() != text]
    assert stale == [], "run python -m devtools.reference"


def test_a_changed_default_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above fails when a flag's default changes and nobody regenerates."""
    changed = tuple(
        dataclasses.replace(option, default="7") if option.dest == "ddl_lock_timeout" else option
        for option in options.OPTIONS
    )
    monkeypatch.setattr(reference, "OPTIONS", changed)
    stale = [path for path, text in reference.generated().items() if path.read_text() != text]
    assert set(stale) == {reference.REFERENCE, reference.README}
    assert "| `--ddl-lock-timeout` | `MIGRATOR_DDL_LOCK_TIMEOUT` | `7` |" in reference.reference()


def test_every_exit_status_has_a_meaning() -> None:
    assert list(EXIT_MEANINGS) == list(ExitStatus)


def test_the_events_are_read_from_the_calls(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text(
        textwrap.dedent(
            """
            def holder():
                return {"holder_pid": 1, "holder_application": "x"}

            def run(log, step):
                log.info("lock.waiting", key=1, **holder())
                fields = {"version": "1.2"}
                fields.update(seconds=3)
                log.warning("ddl.progress", **fields)
                getattr(log, "info")("tool.output", message="m")
                log.info("step.done", **step.to_dict())
            """
        )
    )
    events = reference.log_events(package)
    assert sorted(events) == ["ddl.progress", "lock.waiting", "step.done", "tool.output"]
    assert events["lock.waiting"].fields == {"key", "holder_pid", "holder_application"}
    assert events["ddl.progress"].fields == {"version", "seconds"}
    assert events["ddl.progress"].levels == {"warning"}
    assert events["step.done"].opaque == {"step.to_dict()"}


def test_an_event_that_is_not_a_literal_fails_the_scan(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text("def run(log, name):\n    log.info(name, x=1)\n")
    with pytest.raises(ValueError, match="not a string literal"):
        reference.log_events(package)


def test_every_log_call_of_the_package_is_in_the_reference() -> None:
    """Counted independently of the scan: every `log.<level>("...")` in migrator/ names an event listed."""
    listed = set(reference.log_events())
    for path in reference.PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and getattr(node.func.value, "id", None) == "log"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                assert node.args[0].value in listed, f"{path}: {node.args[0].value!r}"
    assert {"run.failed", "migrate.done", "ddl.blocked", "lock.waiting", "tool.output"} <= listed


def test_every_chart_value_is_described() -> None:
    paths = [value.path for value in reference.chart_values()]
    assert "stores.default.existingSecret" in paths
    assert "tolerations" in paths
    assert all(value.description for value in reference.chart_values())
