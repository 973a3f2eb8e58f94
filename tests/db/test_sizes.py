"""Table sizes read without waiting on a table lock: a locked table's size is unknown, with its holder."""

from __future__ import annotations

from typing import Any

import pytest

from migrator.core.sizes import TableSize
from migrator.db.catalog import read_sizes
from migrator.errors import LockWaitError


class Catalog:
    """Stands in for the catalog queries: the size query fails ``failures`` times with a lock timeout."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, query: Any, params: Any) -> list[tuple[Any, ...]]:
        if "pg_total_relation_size" in str(query):
            self.calls += 1
            if self.calls <= self.failures:
                raise LockWaitError("canceling statement due to lock timeout")
            return [("visits", 10, None, 4711, "psql"), ("notes", -1, 8192, None, None)]
        return []


def test_sizes_of_locked_tables_are_unknown_and_a_lock_taken_meanwhile_is_asked_again() -> None:
    catalog = Catalog(failures=2)
    sizes = read_sizes(catalog)
    assert catalog.calls == 3
    assert sizes.tables == {"visits": TableSize(10, None, "pid 4711 (psql)"), "notes": TableSize(None, 8192)}


def test_a_size_query_that_keeps_timing_out_is_a_lock_wait_error() -> None:
    with pytest.raises(LockWaitError):
        read_sizes(Catalog(failures=10))
