"""A fake PostgreSQL and a fake temporal-sql-tool for the migrate loop: the mini store (tests/conftest.py) kept as
a position in its statements, scripted failures, and a log of what the run asked for.

The catalog at each position is replayed by hand (tests/core/test_repair.py's REPLAY, written independently of
the effect model), so the planner under test reads what a real server would show, not what it predicted.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Self

from psycopg import sql

from migrator.core.online import OnlineProgress, TableFacts
from migrator.core.settings import Settings
from migrator.core.sizes import TableSize
from migrator.core.state import Access, Catalog, ColumnInfo, IndexInfo, State
from migrator.core.vendor import VendorSchema, VendorVersion
from migrator.db import activity, catalog
from migrator.db.catalog import STORED
from migrator.db.driver import DatabaseMissingError
from migrator.errors import AccessError, DDLError, LockWaitError, UnreachableError
from migrator.tool.runner import ToolWatch
from tests.core.test_repair import REPLAY, Work

MAINTENANCE = "postgres"
# The mini store's last version creates one table; the others come from test_repair's REPLAY.
MUTATIONS: list[tuple[str, Callable[[Work], object]]] = [
    *((version, mutation) for version, replay in REPLAY.items() for mutation in replay),
    ("1.10", lambda work: work.create("later", id=ColumnInfo("integer", False))),
]
VERSION_TABLES = frozenset({"schema_version", "schema_update_history"})


def statements_through(version: str) -> int:
    """How many statements of the mini store there are up to and including ``version``."""
    return max(index for index, (name, _) in enumerate(MUTATIONS, start=1) if name == version)


@dataclass
class FakeServer:
    """One store's database (or none yet), the advisory lock, and what happened, in order (``calls``)."""

    vendor: VendorSchema
    database: str = "temporal"
    exists: bool = True
    set_up: bool = False
    applied: int = 0  # statements of the mini store in place, in order
    recorded: str | None = None  # schema_version's row
    invalid: set[str] = field(default_factory=set)  # indexes left INVALID by an interrupted build
    missing: set[str] = field(default_factory=set)  # tables dropped by hand behind the tool's back
    sizes: dict[str, TableSize] = field(default_factory=dict)
    # What the online path's preflight reads; a table not named here has a primary key and nothing else.
    facts: dict[str, TableFacts] = field(default_factory=dict)
    online: OnlineProgress | None = None  # the state row an interrupted online rewrite left
    access: Access = field(default_factory=Access)
    may_create_databases: bool = True
    postgres_refused: bool = False  # no CONNECT on the maintenance database
    lock_holder: int | None = None
    lock_lost: bool = False
    running: list[int] = field(default_factory=list)  # pids of our statements still on the server
    calls: list[tuple[str, Any]] = field(default_factory=list)
    # Scripted failures: event name -> what happens the next times it occurs (an exception to raise, or a
    # callable run then, e.g. to lose the lock in the middle of a tool run).
    script: dict[str, list[Exception | Callable[[], None]]] = field(default_factory=dict)
    _pids: itertools.count[int] = field(default_factory=lambda: itertools.count(101))

    def on(self, event: str, *outcomes: Exception | Callable[[], None]) -> None:
        self.script.setdefault(event, []).extend(outcomes)

    def happen(self, event: str, detail: Any = None) -> None:
        self.calls.append((event, detail))
        queue = self.script.get(event)
        if queue:
            outcome = queue.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            outcome()

    def named(self, event: str) -> list[Any]:
        return [detail for name, detail in self.calls if name == event]

    # -- what observe reads -----------------------------------------------------------------------------

    def catalog(self, definitions: bool = True) -> Catalog:
        """What the catalog shows; without ``definitions``, as a presence-only read: tables, index names and
        validity, no column and no function."""
        work = Work()
        for _, mutation in MUTATIONS[: self.applied]:
            mutation(work)
        tables = (work.tables | (VERSION_TABLES if self.set_up else set())) - self.missing
        broken = {
            name: IndexInfo(False, work.indexes[name].definition if name in work.indexes else "")
            for name in self.invalid
        }
        indexes = {**work.indexes, **broken}
        if not definitions:
            unknown = {name: IndexInfo(index.valid, "", known=False) for name, index in indexes.items()}
            return Catalog(tables=frozenset(tables), indexes=unknown, rows=work.rows, definitions=False)
        return Catalog(tables=frozenset(tables), columns=work.columns, indexes=indexes, rows=work.rows)

    def state(self, definitions: bool = True) -> State:
        return State(
            self.database,
            version=self.recorded,
            catalog=self.catalog(definitions),
            access=self.access,
            online=self.online,
        )

    # -- Connect ----------------------------------------------------------------------------------------

    def connect(
        self, settings: Settings, *, timeout: float | None = None, primary: bool = False, missing_database: bool = False
    ) -> FakeSession:
        self.happen("connect", settings.database)
        if settings.database == MAINTENANCE:
            if self.postgres_refused:
                raise AccessError(f"role {settings.user!r} may not connect to database 'postgres'")
        elif not self.exists:
            if missing_database:
                raise DatabaseMissingError(f"database {settings.database!r} does not exist")
            raise UnreachableError(f"database {settings.database!r} did not accept connections")
        return FakeSession(self, settings.database, next(self._pids), settings.user)


@dataclass
class FakeSession:
    """One session on the fake server; the shape of `migrator.db.interface.Database`."""

    server: FakeServer
    database: str
    pid: int
    user: str
    closed: bool = False

    @property
    def server_version(self) -> int:
        return self.server.access.server_version_num

    @property
    def backend_pid(self) -> int:
        return self.pid

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.closed = True

    # -- the lock ---------------------------------------------------------------------------------------

    def try_lock(self, key: int) -> bool:
        self.server.happen("try_lock", self.pid)
        if self.server.lock_holder is None:
            self.server.lock_holder = self.pid
        return self.server.lock_holder == self.pid

    def unlock(self, key: int) -> None:
        self.server.happen("unlock", self.pid)
        if self.server.lock_holder == self.pid:
            self.server.lock_holder = None

    def holds_lock(self, key: int) -> bool:
        self.server.happen("holds_lock", self.pid)
        return self.server.lock_holder == self.pid and not self.server.lock_lost

    def lock_holder(self, key: int) -> dict[str, Any]:
        return {"holder_pid": self.server.lock_holder}

    # -- reading ----------------------------------------------------------------------------------------

    def observe(self, vendor: VendorSchema, *, seeds_after: str | None = STORED, definitions: bool = True) -> State:
        self.server.happen("observe", self.pid)
        self.server.happen("definitions" if definitions else "presence", self.pid)
        return self.server.state(definitions)

    def query(self, query: sql.Composable | str, params: Sequence[Any], doing: str) -> list[tuple[Any, ...]]:
        """The catalog's sizes, the watcher's questions about sessions, and the cancel of our statements."""
        self.server.happen("query", doing)
        if query == catalog._SIZE_TABLES:
            return [(name, size.rows, size.bytes, None, None) for name, size in self.server.sizes.items()]
        if query == catalog._TABLE_FACTS:
            keyed = TableFacts("", 0, ("id",), (), ())
            found = [self.server.facts.get(name, replace(keyed, table=name)) for name in params[0]]
            return [(f.table, list(f.primary_key), list(f.dependents), list(f.all_tables_publications)) for f in found]
        if query in (catalog._INDEX_TABLES, catalog._COLUMN_TYPES, activity._BLOCKERS):
            return []
        if query == activity._RUNNING:
            return [(pid, "UPDATE something", 1.0, None, None, [], None, None, None, None, None)
                    for pid in self.server.running]  # fmt: skip
        if query == activity._CANCEL:
            cancelled, self.server.running[:] = list(self.server.running), []
            self.server.happen("cancel", cancelled)
            return [(pid, True) for pid in cancelled]
        if isinstance(query, str) and query.startswith("SELECT set_config('application_name'"):
            return [(params[0],)]
        raise AssertionError(f"the fake server does not know {query!r}")

    # -- changing the schema ----------------------------------------------------------------------------

    def execute(self, text: str, doing: str) -> None:
        """A repair statement: it must be the next one of the store, as the planner promised."""
        self.server.happen("execute", " ".join(text.split()))
        expected = self.server.vendor.versions
        flat = [statement.text for version in expected for statement in version.statements]
        assert text == flat[self.server.applied], f"ran {text!r}, the next statement is {flat[self.server.applied]!r}"
        self.server.applied += 1

    def run(self, query: sql.Composable | str, params: Sequence[Any], doing: str) -> list[tuple[Any, ...]]:
        """A statement of ours (the online engine's, a concurrent index build): recorded, no rows."""
        self.server.happen("run", " ".join(query.split()) if isinstance(query, str) else query)
        return []

    @contextlib.contextmanager
    def transaction(self, doing: str, *, repeatable: bool = False) -> Iterator[None]:
        self.server.happen("transaction", doing)
        yield

    def drop_index(self, name: str) -> None:
        self.server.happen("drop_index", name)
        self.server.invalid.discard(name)

    def record_version(self, version: VendorVersion, old_version: str | None) -> None:
        self.server.happen("record_version", (version.name, old_version))
        assert self.server.recorded == old_version, "recording over a version that is not the stored one"
        self.server.recorded = version.name

    # -- the maintenance database -----------------------------------------------------------------------

    def database_presence(self, database: str) -> tuple[bool, str, bool]:
        assert self.database == MAINTENANCE
        return self.server.exists, self.user, self.server.may_create_databases

    def create_database(self, database: str) -> bool:
        assert self.database == MAINTENANCE
        self.server.happen("create_database", database)
        if self.server.exists:
            return False
        self.server.exists = True
        return True


@dataclass
class FakeTool:
    """temporal-sql-tool on the fake server: setup-schema, and update-schema applying every statement of each
    version after the recorded one (a version whose statements are partly in place makes it fail, as the
    real tool fails on a statement that is not replay-safe). ``gives_up`` scripts a lock timeout: after that
    many statements of the run, the statement gives up on its lock (55P03)."""

    server: FakeServer
    gives_up: list[int] = field(default_factory=list)
    does_nothing: bool = False
    application_names: list[str] = field(default_factory=list)  # the tag of each tool run

    def __call__(
        self,
        settings: Settings,
        tool: str,
        command: Sequence[str],
        *,
        server_version: int,
        application_name: str,
        watch: ToolWatch | None = None,
    ) -> float:
        self.server.happen("tool", " ".join([command[0], *command[-2:]]))
        self.application_names.append(application_name)
        if self.does_nothing:
            return 0.1
        if command[0] == "setup-schema":
            self.server.set_up = True
            self.server.recorded = self.server.recorded or "0.0"
            return 0.1
        target = command[-1]
        boundary = 0 if self.server.recorded in (None, "0.0") else statements_through(str(self.server.recorded))
        replayed = FakeServer(self.server.vendor, set_up=self.server.set_up, applied=boundary)
        if self.server.catalog() != replayed.catalog():  # statements after the record left a trace
            raise DDLError("temporal-sql-tool update-schema failed: relation already exists")
        self.server.applied = boundary  # what left no trace runs again
        limit = self.gives_up.pop(0) if self.gives_up else None
        for version in self._after(self.server.recorded, target):
            for _ in version.statements:
                if limit == 0:
                    raise LockWaitError("canceling statement due to lock timeout (SQLSTATE 55P03)")
                limit = None if limit is None else limit - 1
                self.server.applied += 1
            self.server.recorded = version.name
        return 0.1

    def _after(self, recorded: str | None, target: str) -> Sequence[VendorVersion]:
        names = [version.name for version in self.server.vendor.versions]
        start = 0 if recorded in (None, "0.0") else names.index(str(recorded)) + 1
        return self.server.vendor.versions[start : names.index(target) + 1]
