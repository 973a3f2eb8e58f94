"""The watcher looks often enough to see a statement that waits for its lock before the wait gives up."""

from __future__ import annotations

import pytest

from migrator.cli.options import build_settings
from migrator.run.watcher import MIN_POLL_SECONDS, POLL_SECONDS, Watcher


@pytest.mark.parametrize("lock_timeout", ["0", "0.01", "0.3", "1", "5", "600"])
def test_the_watcher_looks_at_least_twice_within_a_lock_wait(lock_timeout: str) -> None:
    settings = build_settings("migrate", {"user": "temporal", "ddl_lock_timeout": lock_timeout}, {})
    poll = Watcher(settings, own_pid=1).poll_seconds
    assert MIN_POLL_SECONDS <= poll <= POLL_SECONDS
    if settings.ddl_lock_timeout:
        assert poll <= max(MIN_POLL_SECONDS, settings.ddl_lock_timeout / 2)
