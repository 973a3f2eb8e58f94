"""Exit statuses and the exceptions that carry them.

Only `migrator.cli.main` turns these into process exit codes; everything else raises.
"""

from __future__ import annotations

from enum import IntEnum, unique


@unique
class ExitStatus(IntEnum):
    """The documented exit codes (README, "Exit codes")."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    UNREACHABLE = 3
    ACCESS = 4
    LOCK_TIMEOUT = 5
    UNSAFE_STATE = 6
    DDL_FAILED = 7
    WAIT_TIMEOUT = 8
    INTERRUPTED = 130
    TERMINATED = 143


class MigratorError(Exception):
    """Base of every expected failure: a one-line message that names the fix, and an exit status."""

    status: ExitStatus = ExitStatus.INTERNAL


class UsageError(MigratorError):
    """Bad flag, environment value, vendor tree or target version."""

    status = ExitStatus.USAGE


class UnreachableError(MigratorError):
    """The database did not accept connections within --connect-timeout."""

    status = ExitStatus.UNREACHABLE


class LockLostError(UnreachableError):
    """Our session no longer holds the advisory lock (the server ended it): no further DDL may run."""


class AccessError(MigratorError):
    """Authentication failed or a privilege is missing."""

    status = ExitStatus.ACCESS


class LockTimeoutError(MigratorError):
    """Another migrator held the advisory lock for longer than --lock-timeout."""

    status = ExitStatus.LOCK_TIMEOUT


class UnsafeStateError(MigratorError):
    """The database is in a state we refuse to touch; nothing was changed."""

    status = ExitStatus.UNSAFE_STATE


class DDLError(MigratorError):
    """temporal-sql-tool or a repair statement failed, or the result did not verify."""

    status = ExitStatus.DDL_FAILED


class WaitTimeoutError(MigratorError):
    """`wait` gave up before the store reached the target version."""

    status = ExitStatus.WAIT_TIMEOUT


class Terminated(MigratorError):
    """SIGTERM or SIGINT arrived; raised from the signal handler so cleanup runs on the way out."""

    status = ExitStatus.TERMINATED

    def __init__(self, message: str, signum: int = 15) -> None:
        super().__init__(message)
        if signum == 2:  # SIGINT: 128 + 2, the shell's convention for Ctrl-C
            self.status = ExitStatus.INTERRUPTED


class LockWaitError(DDLError):
    """A DDL statement gave up waiting for its table lock (SQLSTATE 55P03): retried until --ddl-retry-timeout."""
