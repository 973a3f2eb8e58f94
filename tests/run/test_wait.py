"""`wait` on the fake server: unreachable and behind count as "not yet", at or above the target ends it."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from migrator.cli.options import build_settings
from migrator.core.settings import Settings
from migrator.core.vendor import VendorSchema
from migrator.errors import ExitStatus, UnreachableError, WaitTimeoutError
from migrator.run.wait import wait
from tests.run.fakes import FakeServer, statements_through


def settings(timeout: str = "30") -> Settings:
    return build_settings("wait", {"user": "temporal", "database": "temporal", "wait_timeout": timeout}, {})


def test_unreachable_then_behind_then_at_the_target(mini_vendor: VendorSchema) -> None:
    server = FakeServer(mini_vendor, set_up=True, recorded="1.1", applied=statements_through("1.1"))

    def migrated() -> None:
        server.recorded = mini_vendor.newest.name

    server.on("connect", UnreachableError("database 'temporal' is starting up"), lambda: None, migrated)
    with capture_logs() as logs:
        reached = wait(settings(), mini_vendor, mini_vendor.newest, poll=0.0, connect=server.connect)
    assert reached == mini_vendor.newest.name
    assert [event["current_version"] for event in logs if event["event"] == "wait.pending"] == [None, "1.1"]
    assert len(server.named("connect")) == 3


@pytest.mark.parametrize("stored", ["1.1", "not a version"])
def test_a_store_that_never_gets_there_times_out_with_exit_8(mini_vendor: VendorSchema, stored: str) -> None:
    server = FakeServer(mini_vendor, set_up=True, recorded=stored, applied=statements_through("1.1"))
    with pytest.raises(WaitTimeoutError) as failed:
        wait(settings("0.05"), mini_vendor, mini_vendor.newest, poll=0.01, connect=server.connect)
    assert failed.value.status is ExitStatus.WAIT_TIMEOUT
    assert f"current: {stored}" in str(failed.value)


def test_a_store_ahead_of_the_target_is_there(mini_vendor: VendorSchema) -> None:
    server = FakeServer(mini_vendor, set_up=True, recorded="1.10", applied=statements_through("1.10"))
    assert wait(settings(), mini_vendor, mini_vendor.versions[1], poll=0.0, connect=server.connect) == "1.10"
