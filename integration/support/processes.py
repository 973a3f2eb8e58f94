"""The child processes of a test — the migrator and the real tool — and the log events they write."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from devtools.databases import AppDb
from devtools.pins import Store, versioned_dir
from migrator.cli.options import build_settings
from migrator.tool.runner import password_file, tool_argv, tool_env

# -- children ------------------------------------------------------------------------------------------


def migrator_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "migrator", *args]


def run_tool_binary(tool: Path, db: AppDb, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a real temporal-sql-tool binary against ``db`` exactly as the migrator runs it (`migrator.tool.runner`'s
    argv and environment: global flags first, the password in a private password file)."""
    settings = build_settings("migrate", {}, db.env())
    with password_file(settings) as passfile:
        return subprocess.run(
            tool_argv(settings, str(tool), args),
            env=tool_env(settings, passfile),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )


def bring_to(tool: Path, db: AppDb, schema_dir: Path, store: Store, version: str | None) -> None:
    """The bare tool, as a hook would: ``setup-schema -v 0.0``, then ``update-schema`` to ``version``
    ("0.0": setup only; None: the tree's newest)."""
    setup = run_tool_binary(tool, db, "setup-schema", "-v", "0.0")
    if setup.returncode != 0:
        raise RuntimeError(f"setup-schema failed on {db.name}: {setup.stderr[-2000:]}")
    if version == "0.0":
        return
    target = () if version is None else ("-v", version)
    update = run_tool_binary(tool, db, "update-schema", "-d", str(versioned_dir(schema_dir, store)), *target)
    if update.returncode != 0:
        raise RuntimeError(f"update-schema {' '.join(target)} failed on {db.name}: {update.stderr[-2000:]}")


def log_events(stderr: str) -> list[dict[str, Any]]:
    """The JSON objects of a migrator's JSON-lines stderr, in order; other lines are ignored."""
    events: list[dict[str, Any]] = []
    for line in stderr.splitlines():
        text = line.strip()
        if not text.startswith("{"):
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            events.append(value)
    return events


def events_named(stderr: str, name: str) -> list[dict[str, Any]]:
    """Log events of the migrator whose ``event`` is ``name``."""
    return [e for e in log_events(stderr) if e.get("event") == name]


_LOG_KEYS = frozenset({"event", "database", "schema", "level", "timestamp"})


def steps_done(stderr: str) -> list[dict[str, Any]]:
    """The steps a migrate carried out (its ``step.done`` events), in the words of ``plan``'s ``steps``."""
    return [{k: v for k, v in e.items() if k not in _LOG_KEYS} for e in events_named(stderr, "step.done")]


class EventStream:
    """Reads a running migrator's JSON log lines on a thread so a test can wait for one event."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert process.stderr is not None
        self._reader = threading.Thread(target=self._pump, args=(process.stderr,), daemon=True)
        self._reader.start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(
        self, name: str, timeout: float = 60, where: Callable[[dict[str, Any]], bool] | None = None
    ) -> dict[str, Any]:
        """The next event ``name`` (for which ``where`` holds, when given); fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if not self._reader.is_alive() and self.lines.empty():
                    break  # the process closed its stderr: the event can no longer come
                continue
            self.seen.append(line)
            try:
                event: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == name and (where is None or where(event)):
                return event
        raise AssertionError(f"no {name} event within {timeout}s: {''.join(self.seen)[-2000:]}")

    def rest(self, timeout: float = 30) -> str:
        """Everything the process wrote, once it closed its stderr (call it after the process ended)."""
        self._reader.join(timeout)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "".join(self.seen)


class RunMigrator(Protocol):
    def __call__(
        self, db: AppDb, *args: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]: ...


class StartMigrator(Protocol):
    def __call__(self, db: AppDb, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]: ...


class RunTool(Protocol):
    def __call__(self, db: AppDb, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]: ...
