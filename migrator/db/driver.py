"""The database boundary: every psycopg call of the migrator, and the one place database errors get exit codes.

Shaped like golang-migrate's driver: `Driver.open` (connect), `try_lock`/`unlock`/`holds_lock`, `observe`,
`execute` (one vendor statement), `drop_index`, `record_version`, and on the maintenance database
`database_presence`/`create_database` (``--create-database``). It owns each connection's lifetime.

Connection failures are classified from what the server said, never by elimination: libpq gives no SQLSTATE
for a refused login, so a refused attempt is repeated once with libpq's error verbosity at VERBOSE, whose
message carries the server's SQLSTATE, and psycopg's error class for that code decides (see `_rejection`).
libpq's own reason is always kept in the message. After connecting, errors map by SQLSTATE class
(`error_class`): connection lost → 3, privilege or authentication → 4, anything else from the database → 7.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime as dt
import os
import re
import select
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
import structlog
from psycopg import errors, pq, sql
from psycopg.conninfo import make_conninfo

from migrator.core.planner import MIN_SERVER_VERSION_NUM
from migrator.core.settings import Settings
from migrator.core.state import State
from migrator.core.vendor import VendorSchema, VendorVersion
from migrator.db.catalog import STORED, observe
from migrator.db.session import Session, settings_for, startup_options
from migrator.errors import AccessError, DDLError, LockWaitError, MigratorError, UnreachableError, UsageError
from migrator.logs import retry_fields
from migrator.retry import retried

if TYPE_CHECKING:
    from tenacity import RetryCallState

APPLICATION_NAME = "temporal-migrator"
log = structlog.get_logger("migrator.db")

Connection = psycopg.Connection[tuple[Any, ...]]

# The lock session lives as long as the run: an idle network path may not end it either.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}

# temporal-sql-tool's own statements for recording a version (postgresql/admin.go), so a repaired version is
# recorded exactly as the tool records one: upsert of schema_version, then a row of schema_update_history.
_WRITE_VERSION = """
INSERT INTO schema_version (version_partition, db_name, creation_time, curr_version, min_compatible_version)
VALUES (0, %s, %s, %s, %s)
ON CONFLICT (version_partition, db_name) DO UPDATE
   SET creation_time = excluded.creation_time, curr_version = excluded.curr_version,
       min_compatible_version = excluded.min_compatible_version
"""
_WRITE_HISTORY = """
INSERT INTO schema_update_history
       (version_partition, year, month, update_time, old_version, new_version, manifest_md5, description)
VALUES (0, %s, %s, %s, %s, %s, %s, %s)
"""
_PRESENCE = """
SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = %(db)s),
       current_user,
       (SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user)
"""
_HOLDS_LOCK = """
SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
   AND objsubid = 1 AND classid::bigint = (%(key)s >> 32) & 4294967295 AND objid::bigint = %(key)s & 4294967295)
"""
_HOLDER = """
SELECT a.pid, a.application_name, a.backend_start, a.state_change, host(a.client_addr)
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.classid::bigint = (%(key)s >> 32) & 4294967295 AND l.objid::bigint = %(key)s & 4294967295
"""

# -- how database errors become exit codes --------------------------------------------------------------

# By SQLSTATE (psycopg's classes are one per code, not per class): class 08 connection exception; 57P01,
# 57P02, 57P03, 57P05 the server ended the session (shutdown, crash, recovery, idle_session_timeout); class 28
# invalid authorization; 42501 insufficient privilege.
_LOST_CLASS = "08"
_LOST_CODES = frozenset({"57P01", "57P02", "57P03", "57P05"})
_AUTH_CLASS = "28"
_PRIVILEGE = errors.InsufficientPrivilege.sqlstate
_LOCK_NOT_AVAILABLE = errors.LockNotAvailable.sqlstate


def error_class(error: psycopg.Error) -> type[MigratorError]:
    """The exit status of a database error raised after connecting, by its SQLSTATE class."""
    code = error.sqlstate
    if code is None:  # no answer from the server at all: the connection is gone (psycopg's own errors)
        return UnreachableError if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError) else DDLError
    if code.startswith(_LOST_CLASS) or code in _LOST_CODES:
        return UnreachableError
    if code.startswith(_AUTH_CLASS) or code == _PRIVILEGE:
        return AccessError
    if code == _LOCK_NOT_AVAILABLE:  # --ddl-lock-timeout: the version is partly applied; the executor retries
        return LockWaitError
    return DDLError


def describe_error(error: psycopg.Error) -> str:
    """libpq's or the server's own message, on one line, with the SQLSTATE when there is one."""
    text = " ".join(str(error).split())
    return f"{text} (SQLSTATE {error.sqlstate})" if error.sqlstate else text


@contextlib.contextmanager
def translated(doing: str) -> Iterator[None]:
    """Turn any psycopg error raised in the body into the MigratorError of its class, saying what we were doing."""
    try:
        yield
    except psycopg.Error as error:
        raise error_class(error)(f"{doing} failed: {describe_error(error)}") from None


# -- connecting ---------------------------------------------------------------------------------------


def sslmode(settings: Settings) -> str:
    """temporal-sql-tool's mapping: no TLS → disable, TLS → verify-full, no host verification → require."""
    if not settings.tls:
        return "disable"
    return "require" if settings.tls_disable_host_verification else "verify-full"


def _options_value(value: str) -> str:
    """A value inside libpq's ``options`` (``-c name=value``): spaces and backslashes escaped."""
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def _libpq_keywords() -> frozenset[str]:
    return frozenset(option.keyword.decode() for option in pq.Conninfo.get_defaults())


def connection_kwargs(settings: Settings, timeout: float = 10, session: Session = Session.READ) -> dict[str, Any]:
    """libpq keywords without the password (it is passed separately, never in a string we might log).

    --connect-attributes are the tool's DSN parameters: a libpq keyword is passed as one; anything else is a
    server setting (``search_path=temporal``), passed in ``options`` so the whole run sees it as the tool does.
    A ``READ`` session's settings follow them in ``options`` (later wins): they cost no round trip.
    """
    kwargs: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "user": settings.user,
        "dbname": settings.database,
        "sslmode": sslmode(settings),
        "application_name": APPLICATION_NAME,
        "connect_timeout": max(2, int(timeout)),
        **KEEPALIVES,
    }
    if settings.tls:
        kwargs["sslrootcert"] = settings.tls_ca_file or "system"  # the tool verifies against the system CAs
        if settings.tls_cert_file:
            kwargs["sslcert"] = settings.tls_cert_file
        if settings.tls_key_file:
            kwargs["sslkey"] = settings.tls_key_file
    keywords = _libpq_keywords()
    kwargs.update((key, value) for key, value in settings.connect_attributes if key in keywords)
    options = [kwargs.pop("options", "")]
    options += [
        f"-c {key}={_options_value(value)}" for key, value in settings.connect_attributes if key not in keywords
    ]
    if session is Session.READ:
        options.append(startup_options(Session.READ, MIN_SERVER_VERSION_NUM))
    if " ".join(options).strip():
        kwargs["options"] = " ".join(option for option in options if option)
    if settings.tls and kwargs.get("sslmode") == "require":
        kwargs.pop("sslrootcert", None)  # no verification asked for: a root store would turn it on
    return kwargs


class TransientError(Exception):
    """A connection failure that time may fix: retried until --connect-timeout."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class DatabaseMissingError(UnreachableError):
    """The server says the database does not exist (3D000), and the caller asked to hear it at once."""


# What the server may say while it cannot take us *yet*: starting up, shutting down, in recovery (57P03), too
# many connections (53300), database not created yet (3D000), and class 08. Everything else it says is final.
_TRANSIENT = frozenset(
    {errors.CannotConnectNow.sqlstate, errors.TooManyConnections.sqlstate, errors.InvalidCatalogName.sqlstate}
)
_MISSING_DATABASE = errors.InvalidCatalogName.sqlstate
# "FATAL:  28P01: password authentication failed ..." (the severity word is localised, the code is not)
_VERBOSE_SQLSTATE = re.compile(r"\w+:\s+((?=[A-Z]*[0-9])[0-9A-Z]{5}):\s")  # every SQLSTATE has a digit
PQERRORS_VERBOSE = 2


def _libpq() -> Any:
    """The libpq psycopg runs on (its bundled copy in the binary package), to set the error verbosity."""
    candidates: list[str] = []
    if pq.__impl__ == "binary":
        import glob  # noqa: PLC0415 - only a refused login gets here

        import psycopg_binary  # noqa: PLC0415 - only present in the binary package

        libs = os.path.join(os.path.dirname(psycopg_binary.__file__), os.pardir, "psycopg_binary.libs")
        candidates += sorted(glob.glob(os.path.join(libs, "libpq*.so*")))
    candidates += [name for name in (ctypes.util.find_library("pq"),) if name]
    for candidate in candidates:
        with contextlib.suppress(OSError, AttributeError):
            library = ctypes.CDLL(candidate)
            library.PQsetErrorVerbosity.argtypes = [ctypes.c_void_p, ctypes.c_int]
            return library
    return None


def _ping(kwargs: dict[str, Any]) -> int:
    """libpq's PQping: no attempt (bad settings), no response, rejecting (starting up), or up."""
    return int(pq.PGconn.ping(make_conninfo(**kwargs).encode()))


def _rejection(conninfo: str, timeout: float) -> tuple[str | None, str]:
    """Repeat a refused login with VERBOSE errors: (the server's SQLSTATE if it sent one, libpq's message)."""
    library = _libpq()
    pgconn = pq.PGconn.connect_start(conninfo.encode())
    try:
        if library is not None:
            library.PQsetErrorVerbosity(getattr(pgconn, "pgconn_ptr"), PQERRORS_VERBOSE)  # noqa: B009 - untyped
        deadline = time.monotonic() + timeout
        status = int(pq.PollingStatus.WRITING)
        while status not in (pq.PollingStatus.OK, pq.PollingStatus.FAILED) and pgconn.status != pq.ConnStatus.BAD:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, "timed out"
            if status == pq.PollingStatus.READING:
                select.select([pgconn.socket], [], [], remaining)
            elif status == pq.PollingStatus.WRITING:
                select.select([], [pgconn.socket], [], remaining)
            status = pgconn.connect_poll()
        message = pgconn.get_error_message()
    finally:
        pgconn.finish()
    reason = message.split("LOCATION:")[0]  # VERBOSE adds the server's source location: noise to a reader
    return sqlstate_of(message), " ".join(reason.split())


def sqlstate_of(verbose_message: str) -> str | None:
    """The SQLSTATE in a VERBOSE libpq message (``... failed: FATAL:  53300: too many ...``), if any."""
    match = _VERBOSE_SQLSTATE.search(verbose_message)
    return match.group(1) if match else None


def _classify(settings: Settings, password: str, error: psycopg.OperationalError, timeout: float) -> Exception:
    """Turn a failed attempt into TransientError, AccessError or UsageError (see the module docstring)."""
    reason = " ".join(str(error).split())
    kwargs = connection_kwargs(settings, timeout)
    if error.pgconn is not None and error.pgconn.needs_password and not password:
        return AccessError(
            f"the server asks a password for role {settings.user!r} and none was given ({reason}); "
            "set SQL_PASSWORD from the role's Secret"
        )
    if isinstance(error, errors.ConnectionTimeout):  # no answer within the attempt: asking again costs as long
        return TransientError(reason)
    ping = _ping(kwargs)
    if ping == pq.Ping.NO_ATTEMPT:
        return UsageError(f"the connection settings are invalid: {reason}")
    if ping != pq.Ping.OK:
        plain = {key: value for key, value in kwargs.items() if not key.startswith("ssl")}
        if settings.tls and _ping({**plain, "sslmode": "disable"}) == pq.Ping.OK:
            return UsageError(
                f"the server at {settings.host}:{settings.port} answers without TLS but not with it ({reason}); "
                "drop --tls/SQL_TLS, or fix the server's TLS setup or the --tls-ca-file it is verified against"
            )
        return TransientError(reason)
    sqlstate, verbose = _rejection(make_conninfo(**kwargs, password=password), timeout)
    if sqlstate is None or sqlstate in _TRANSIENT or sqlstate.startswith(_LOST_CLASS):
        return TransientError(verbose if sqlstate else reason, sqlstate)
    if sqlstate.startswith(_AUTH_CLASS):  # 28000 (pg_hba.conf, no such role), 28P01 (password)
        return AccessError(
            f"the server refused role {settings.user!r} at {settings.host}:{settings.port}: {verbose}; check that "
            "the password in the Secret is the role's, that the role exists and may log in, and pg_hba.conf"
        )
    if sqlstate == _PRIVILEGE:  # no CONNECT on the database
        return AccessError(
            f"role {settings.user!r} may not connect to database {settings.database!r}: {verbose}; "
            f"GRANT CONNECT ON DATABASE {sql.Identifier(settings.database).as_string(None)} TO "
            f"{sql.Identifier(settings.user).as_string(None)}"
        )
    return AccessError(f"the server refused the connection: {verbose}")


def _log_retry(state: RetryCallState) -> None:
    log.warning("db.retrying", **retry_fields(state))


@dataclass
class Driver:
    """One connection of ours (autocommit: no transaction, hence no snapshot, stays open between statements)."""

    conn: Connection
    settings: Settings

    @classmethod
    def open(
        cls, settings: Settings, *, timeout: float | None = None, primary: bool = False, missing_database: bool = False
    ) -> Driver:
        """Connect, retrying what time can fix for at most ``timeout`` (default --connect-timeout) seconds.

        ``primary``: the session will change the schema, so a standby (a switchover in progress) counts as
        "not yet"; the session gets the lock session's settings (`migrator.db.session`). Any other session only
        reads, and gives up on a table lock it cannot get at once (55P03).
        ``missing_database``: a database that does not exist raises `DatabaseMissingError` at once instead of
        being waited for (``--create-database`` creates it).
        """
        budget = settings.connect_timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        password = settings.password

        def attempt() -> Driver:
            left = min(10.0, max(2.0, deadline - time.monotonic()))
            try:
                kwargs = connection_kwargs(settings, left, Session.LOCK if primary else Session.READ)
                conn = psycopg.connect(**kwargs, password=password or None, autocommit=True)
            except psycopg.OperationalError as error:
                failure = _classify(settings, password, error, left)
                if missing_database and isinstance(failure, TransientError) and failure.sqlstate == _MISSING_DATABASE:
                    raise DatabaseMissingError(f"database {settings.database!r} does not exist: {failure}") from None
                raise failure from None
            driver = cls(conn, settings)
            if primary:
                driver._prepare_primary_session()
            return driver

        try:
            return retried(
                attempt, on=TransientError, first_pause=0.5, max_pause=5, budget=budget, before_sleep=_log_retry
            )
        except TransientError as error:
            raise UnreachableError(
                f"database {settings.database!r} at {settings.host}:{settings.port} did not accept connections "
                f"within {budget:g}s ({error}); check the host, port and that the database exists"
            ) from None

    @property
    def server_version(self) -> int:
        """``server_version_num`` of the server (e.g. 150018)."""
        return self.conn.info.server_version

    @property
    def backend_pid(self) -> int:
        return self.conn.info.backend_pid

    def _prepare_primary_session(self) -> None:
        """No server timeout may end the lock session; its own DDL waits at most --ddl-lock-timeout for a lock.

        One round trip: the settings of this server's version and the recovery check in one statement."""
        chosen = settings_for(Session.LOCK, self.server_version, self.settings.ddl_lock_timeout)
        calls = [sql.SQL("set_config({}, {}, false)").format(name, str(value)) for name, value in chosen.items()]
        statement = sql.SQL("SELECT {}").format(sql.SQL(", ").join([sql.SQL("pg_is_in_recovery()"), *calls]))
        with translated("preparing the lock session"):
            row = self.conn.execute(statement).fetchone()
        if row and row[0]:
            self.close()
            raise TransientError(
                "the server is a standby (in recovery); waiting for a primary (CloudNativePG: the -rw service)"
            )

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.conn.close()

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- lock ------------------------------------------------------------------------------------------

    def try_lock(self, key: int) -> bool:
        with translated("taking the advisory lock"):
            row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        return bool(row and row[0])

    def unlock(self, key: int) -> None:
        with translated("releasing the advisory lock"):
            self.conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def holds_lock(self, key: int) -> bool:
        """Whether this session still holds the lock; a session the server ended holds nothing."""
        try:
            row = self.conn.execute(_HOLDS_LOCK, {"key": key}).fetchone()
        except psycopg.Error as error:
            if error_class(error) is UnreachableError:
                return False
            raise error_class(error)(f"checking the advisory lock failed: {describe_error(error)}") from None
        return bool(row and row[0])

    def lock_holder(self, key: int) -> dict[str, Any]:
        with translated("looking up the lock holder"):
            row = self.conn.execute(_HOLDER, {"key": key}).fetchone()
        if row is None:
            return {}
        pid, application, started, since, address = row
        return {
            "holder_pid": pid,
            "holder_application": application,
            "holder_address": address,
            "holder_connected_at": started.isoformat() if started else None,
            "holder_since": since.isoformat() if since else None,
        }

    # -- reading and changing the schema ---------------------------------------------------------------

    def observe(self, vendor: VendorSchema, *, seeds_after: str | None = STORED, definitions: bool = True) -> State:
        with translated("reading the catalog"), self._one_snapshot():
            return observe(self._rows, self.settings.database, vendor, seeds_after=seeds_after, definitions=definitions)

    @contextlib.contextmanager
    def _one_snapshot(self) -> Iterator[None]:
        """Every read of one observation (the catalog statement, the query it runs on schema_version, the seed
        rows' probe) sees one snapshot: a concurrent run's table and its index appear together or not at all.
        The transaction lasts only the observation, so no snapshot of ours outlives it (the vendor's CREATE
        INDEX CONCURRENTLY waits for every open snapshot)."""
        self.conn.execute(b"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                self.conn.execute(b"ROLLBACK")
            raise
        self.conn.execute(b"COMMIT")

    def _rows(self, query: sql.Composable | str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        statement = query.as_bytes(self.conn) if isinstance(query, sql.Composable) else query.encode()
        return self.conn.execute(statement, params).fetchall()

    @contextlib.contextmanager
    def _cancelled_if_interrupted(self) -> Iterator[None]:
        """SIGTERM/SIGINT raise out of a running statement: cancel it in the server too (psycopg does that only
        for KeyboardInterrupt), so no DDL of ours goes on after the lock is released."""
        try:
            yield
        except MigratorError:
            if self.conn.pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
                with contextlib.suppress(psycopg.Error):
                    self.conn.cancel_safe(timeout=5)
            raise

    def execute(self, text: str, doing: str) -> None:
        """Run one vendor statement verbatim (its own autocommit, as the tool runs it)."""
        with self._cancelled_if_interrupted(), translated(doing):
            self.conn.execute(text.encode())

    def run(self, query: sql.Composable | str, params: Sequence[Any], doing: str) -> list[tuple[Any, ...]]:
        """One statement of ours (DDL or DML, in the open transaction if any): its rows, if it returns some."""
        statement = query.as_bytes(self.conn) if isinstance(query, sql.Composable) else query.encode()
        with self._cancelled_if_interrupted(), translated(doing):
            cursor = self.conn.execute(statement, params or None)  # no parameters: a '%' is the statement's own
            return cursor.fetchall() if cursor.description is not None else []

    @contextlib.contextmanager
    def transaction(self, doing: str, *, repeatable: bool = False) -> Iterator[None]:
        """One transaction around the body's `run` calls (the session is otherwise autocommit); ``repeatable``:
        every statement sees the first one's snapshot. Rolled back on any exception."""
        begin = b"BEGIN ISOLATION LEVEL REPEATABLE READ" if repeatable else b"BEGIN"
        with translated(doing):
            self.conn.execute(begin)
        try:
            yield
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                self.conn.execute(b"ROLLBACK")
            raise
        with self._cancelled_if_interrupted(), translated(doing):
            self.conn.execute(b"COMMIT")

    def drop_index(self, name: str) -> None:
        """CONCURRENTLY: a live table's readers and writers are not blocked while the broken build goes."""
        with self._cancelled_if_interrupted(), translated(f"dropping INVALID index {name}"):
            self.conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name)))

    def query(self, query: sql.Composable | str, params: Sequence[Any], doing: str) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement (the DDL watcher's questions about the server's sessions)."""
        with translated(doing):
            return self._rows(query, params)

    def record_version(self, version: VendorVersion, old_version: str | None) -> None:
        """Record ``version`` with the tool's own two queries (same MD5 and description as the tool writes)."""
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        with translated(f"recording version {version.name}"):
            self.conn.execute(_WRITE_VERSION, (self.settings.database, now, version.name, version.min_compatible))
            self.conn.execute(
                _WRITE_HISTORY,
                (now.year, now.month, now, old_version, version.name, version.manifest_md5, version.description),
            )

    # -- creating the database (connected to the maintenance database) ------------------------------------

    def database_presence(self, database: str) -> tuple[bool, str, bool]:
        """(does ``database`` exist, who we are, may we create databases): asked of pg_database and pg_roles."""
        with translated("looking up the database"):
            row = self.conn.execute(_PRESENCE, {"db": database}).fetchone()
        assert row is not None, "a SELECT without FROM returns one row"
        exists, user, may_create = row
        return bool(exists), str(user), bool(may_create)

    def create_database(self, database: str) -> bool:
        """``CREATE DATABASE "<name>"`` as temporal-sql-tool runs it; False when another session made it first."""
        with translated(f"CREATE DATABASE {database!r}"):
            try:
                self.conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            except errors.DuplicateDatabase:
                return False
        return True
