"""A second SIGTERM or SIGINT during cleanup does not cut the cleanup short."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from migrator.cli import main as cli

pytestmark = pytest.mark.usefixtures("cli_env")


@pytest.mark.parametrize(
    ("first", "second", "status"),
    [(signal.SIGTERM, signal.SIGTERM, 143), (signal.SIGTERM, signal.SIGINT, 143), (signal.SIGINT, signal.SIGTERM, 130)],
)
def test_a_second_signal_during_cleanup_is_ignored_and_the_cleanup_finishes(
    first: signal.Signals,
    second: signal.Signals,
    status: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cleanup: list[str] = []

    def run(settings: object) -> dict[str, Any]:
        try:
            signal.raise_signal(first)  # the handler raises here
            cleanup.append("not reached")
        finally:
            cleanup.append("tool stopped")
            signal.raise_signal(second)  # Kubernetes repeats SIGTERM; an impatient user presses Ctrl-C again
            cleanup.append("statements cancelled")
        return {}

    before = {sig: signal.getsignal(sig) for sig in cli.STOP_SIGNALS}
    monkeypatch.setattr(cli, "run_command", run)
    assert cli.main(["status"]) == status
    assert cleanup == ["tool stopped", "statements cancelled"]
    lines = capsys.readouterr().err.strip().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["run.failed"]
    assert signal.Signals(first).name in json.loads(lines[0])["error"]
    assert {sig: signal.getsignal(sig) for sig in cli.STOP_SIGNALS} == before
