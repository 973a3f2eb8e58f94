"""What the run needs of a database session: the shape `migrator.db.driver.Driver` has, as a Protocol.

The migrate loop and the lock take any `Database` and are given a `Connect`, so a fake session (an in-memory
catalog with scripted errors, tests/run/) drives them exactly as the real driver does.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, Self

from psycopg import sql

from migrator.core.settings import Settings
from migrator.core.state import State
from migrator.core.vendor import VendorSchema, VendorVersion
from migrator.db.catalog import STORED


class Database(Protocol):
    """One session of ours (see `Driver` for what each call does and which errors it raises)."""

    @property
    def server_version(self) -> int: ...

    @property
    def backend_pid(self) -> int: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *_: object) -> None: ...

    def close(self) -> None: ...

    def try_lock(self, key: int) -> bool: ...

    def unlock(self, key: int) -> None: ...

    def holds_lock(self, key: int) -> bool: ...

    def lock_holder(self, key: int) -> dict[str, Any]: ...

    def observe(self, vendor: VendorSchema, *, seeds_after: str | None = STORED, definitions: bool = True) -> State: ...

    def query(self, query: sql.Composable | str, params: Sequence[Any], doing: str) -> list[tuple[Any, ...]]: ...

    def execute(self, text: str, doing: str) -> None: ...

    def run(self, query: sql.Composable | str, params: Sequence[Any], doing: str) -> list[tuple[Any, ...]]: ...

    def transaction(self, doing: str, *, repeatable: bool = False) -> AbstractContextManager[None]: ...

    def drop_index(self, name: str) -> None: ...

    def record_version(self, version: VendorVersion, old_version: str | None) -> None: ...

    def database_presence(self, database: str) -> tuple[bool, str, bool]: ...

    def create_database(self, database: str) -> bool: ...


class Connect(Protocol):
    """`Driver.open`'s signature: open a session, waiting up to ``timeout`` for the server."""

    def __call__(
        self, settings: Settings, *, timeout: float | None = None, primary: bool = False, missing_database: bool = False
    ) -> Database: ...
