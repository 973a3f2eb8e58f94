"""`wait`: hold an init container or a bootstrap Job until the store is at (or above) the target version."""

from __future__ import annotations

import time

import structlog

from migrator.core.settings import Settings
from migrator.core.state import State
from migrator.core.vendor import VendorSchema, VendorVersion
from migrator.core.versions import parse_version
from migrator.db.driver import Driver
from migrator.db.interface import Connect
from migrator.errors import LockWaitError, UnreachableError, WaitTimeoutError

log = structlog.get_logger("migrator")


def wait(
    settings: Settings, vendor: VendorSchema, target: VendorVersion, poll: float = 2.0, connect: Connect = Driver.open
) -> str:
    """Block until the store is at or above ``target``; connection trouble counts as "not yet"."""
    deadline = time.monotonic() + settings.wait_timeout
    last = None
    while True:
        remaining = deadline - time.monotonic()
        try:
            with connect(settings, timeout=max(0.0, min(settings.connect_timeout, remaining))) as driver:
                state: State | None = driver.observe(vendor, definitions=False)  # the version is all it reads
        except (UnreachableError, LockWaitError) as error:  # not up yet, or a table lock held: keep waiting
            state, last = None, str(error)
        version = state.version if state else None
        try:
            reached = version is not None and parse_version(version) >= target.version
        except ValueError:
            reached = False
        if reached:
            log.info("wait.done", current_version=version, target_version=target.name)
            return version or ""
        if time.monotonic() + poll > deadline:
            raise WaitTimeoutError(
                f"store not at {target.name} within {settings.wait_timeout:g}s (current: {version}"
                f"{', last error: ' + last if last and state is None else ''}); check the schema migration Job"
            )
        log.info("wait.pending", current_version=version, target_version=target.name)
        time.sleep(poll)
