"""Exit statuses and the exceptions that carry them.

Only `migrator.cli.main` turns these into process exit codes; everything else raises.
"""

from __future__ import annotations

from enum import IntEnum, unique


@unique
class ExitStatus(IntEnum):
    """The exit codes; `EXIT_MEANINGS` says what each means (docs/reference.md and the README are made from it)."""

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


# What each code means to the person who reads it: a summary, then the cases. devtools/reference.py writes the
# exit-code tables of README.md, chart/README.md and docs/reference.md from this one table.
EXIT_MEANINGS: dict[ExitStatus, tuple[str, str]] = {
    ExitStatus.OK: ("done", "migrated, repaired, or nothing to do"),
    ExitStatus.INTERNAL: ("internal error", "a bug; rerun with `--traceback`"),
    ExitStatus.USAGE: (
        "usage or configuration error",
        "bad flag or variable, unknown plugin, malformed or unknown target version, no vendor tree at "
        "`--schema-dir`, damaged manifest, tool not found or not executable, empty database name, a "
        "`--connect-attributes` key another flag owns, `--tls` against a server that answers only without TLS",
    ),
    ExitStatus.UNREACHABLE: (
        "database unreachable",
        "no connection within `--connect-timeout` (refused, no such host, starting up, too many connections, "
        "database not created, a standby during a switchover; libpq's reason is in the message), the connection "
        "was lost during the run, or our session lost the lock (a tool run in flight is stopped and its statements "
        "cancelled before the exit)",
    ),
    ExitStatus.ACCESS: (
        "authentication or privilege problem",
        "wrong password or missing role (SQLSTATE class 28), no CONNECT, `--create-database` for a missing "
        "database without CREATEDB, no CREATE on schema `public` (PostgreSQL 15+), no CREATE on the database for "
        "the visibility store's `btree_gin`, a read-only database, a table we may not read or write (42501), a "
        "server older than 13; `plan` exits 4 where `migrate` would for the preflight",
    ),
    ExitStatus.LOCK_TIMEOUT: (
        "lock not acquired",
        "another migrator held the lock for longer than `--lock-timeout` (its pid and application are logged)",
    ),
    ExitStatus.UNSAFE_STATE: (
        "unsafe state refused, nothing changed",
        "vendor tables without a `schema_version` row for this database name, a stored version that does not "
        "parse or is not in the vendor tree, a catalog that matches no crash point of the first pending version, "
        "a partly applied version holding a statement the migrator cannot check (named), both stores pointed at "
        "one database, a pending rewrite (or write-blocking scan) of a table larger than `--max-rewrite-size`, an "
        "online rewrite refused by its preflight (no primary key, dependents, a `FOR ALL TABLES` publication, no "
        "CREATE on the database) under `--rewrite-mode online`, `--rewrite-mode plain` or a changed target while an "
        "online rewrite is in progress, `--abort-online` after its swap; `plan` exits 6 for the same states",
    ),
    ExitStatus.DDL_FAILED: (
        "the DDL failed",
        "`temporal-sql-tool` exited non-zero (its last error, the real cause of a connection failure, or a Go "
        "panic's `panic:` line are in the message) or timed out, a repair statement failed, another database "
        "error (with its SQLSTATE), the result did not verify, or a statement was still blocked by another "
        "session after `--ddl-retry-timeout` (the message names the blocker and how to end it)",
    ),
    ExitStatus.WAIT_TIMEOUT: ("`wait` timed out", "the store was not at its target within `--wait-timeout`"),
    ExitStatus.INTERRUPTED: ("interrupted", "SIGINT (Ctrl-C), handled like SIGTERM"),
    ExitStatus.TERMINATED: (
        "terminated by SIGTERM",
        "the tool gets SIGTERM, then SIGKILL after 10 s, and our statements are cancelled before the "
        "lock is released; if the migrator itself is killed (`kill -9`), the tool gets SIGTERM from Linux "
        "(`setpriv --pdeathsig`), and the next run repairs what it left",
    ),
}


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
