"""Table sizes as values, and sizes written the way PostgreSQL writes them (``500MB``, ``2GB``).

Rows are ``pg_class.reltuples``: the planner's estimate, kept by VACUUM/ANALYZE, free to read on a table of any
size (``count(*)`` would scan it). Bytes are ``pg_total_relation_size``: heap, TOAST and every index, because
a rewrite rebuilds all of them and needs that much free disk while the old and new copies coexist (issue 10's
100k-row visibility table: 21 MB of heap, 1.3 GB in all, and the rewrite's time follows the total). An index
build reads less (the heap), so for a scan the figure is an upper bound; one measure keeps statements comparable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# pg_size_bytes' units (src/backend/utils/adt/dbsize.c): powers of 1024, unit names case-insensitive.
_UNITS = {"bytes": 0, "b": 0, "kb": 1, "mb": 2, "gb": 3, "tb": 4, "pb": 5}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_PRETTY_UNITS = ("bytes", "kB", "MB", "GB", "TB", "PB")


def parse_size(text: str) -> int:
    """Bytes of a size as ``pg_size_bytes`` reads it (``1kB`` = 1024); ValueError when it is not one."""
    match = _SIZE.match(text)
    if not match or match.group(2).lower() not in (*_UNITS, ""):
        raise ValueError(text)
    return int(float(match.group(1)) * 1024 ** _UNITS.get(match.group(2).lower(), 0))


def pretty_size(size: int) -> str:
    """Like ``pg_size_pretty`` but with one decimal below 10 (``1.3 GB``, ``48 GB``, ``21 MB``)."""
    value = float(size)
    unit = 0
    while value >= 1024 and unit < len(_PRETTY_UNITS) - 1:
        value /= 1024
        unit += 1
    number = f"{value:.1f}".removesuffix(".0") if value < 10 and unit else f"{value:.0f}"
    return f"{number} {_PRETTY_UNITS[unit]}"


def pretty_rows(rows: int) -> str:
    """``35.1M``, ``100k``, ``950``: the order of magnitude a person needs."""
    for factor, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if rows >= factor:
            return f"{rows / factor:.1f}".removesuffix(".0") + suffix
    return str(rows)


@dataclass(frozen=True)
class TableSize:
    """``rows`` is None when the table was never vacuumed or analysed (reltuples = -1: unknown). ``bytes`` is None
    when another session holds (or waits for) an ACCESS EXCLUSIVE lock on the table: measuring it would wait for
    that session; ``locked_by`` then names it (``pid 4711 (psql)``)."""

    rows: int | None
    bytes: int | None
    locked_by: str | None = None


@dataclass(frozen=True)
class Sizes:
    """What the impact report needs from the catalog: table sizes, which table each index belongs to, and the
    column types (``table.column`` -> ``character varying(255)``) that tell a type change from a rewrite."""

    tables: dict[str, TableSize]
    index_tables: dict[str, str]
    column_types: dict[str, str]
