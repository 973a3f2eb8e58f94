"""What `observe` saw in one database: plain data, so that planning is a pure function of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from migrator.core.statements import Kind, ObjectRef

VERSION_TABLES = frozenset({"schema_version", "schema_update_history"})


@dataclass(frozen=True)
class ColumnInfo:
    not_null: bool
    has_default: bool


@dataclass(frozen=True)
class Seen:
    """One object as found: present or not, and for columns the shape the repair compares."""

    present: bool
    not_null: bool | None = None
    has_default: bool | None = None


@dataclass(frozen=True)
class Catalog:
    """The objects of the schema Temporal's tables live in (``current_schema()``)."""

    tables: frozenset[str] = frozenset()
    columns: Mapping[str, ColumnInfo] = field(default_factory=dict)
    indexes: Mapping[str, bool] = field(default_factory=dict)
    extensions: frozenset[str] = frozenset()
    functions: frozenset[str] = frozenset()
    rows: Mapping[str, bool] = field(default_factory=dict)

    def seen(self, ref: ObjectRef) -> Seen:
        if ref.kind is Kind.COLUMN:
            column = self.columns.get(ref.name)
            if column is None:
                return Seen(False)
            return Seen(True, not_null=column.not_null, has_default=column.has_default)
        if ref.kind is Kind.INDEX:  # an INVALID index is a build that crashed: it counts as not there
            return Seen(self.indexes.get(ref.name) is True)
        present = {
            Kind.TABLE: lambda: ref.name in self.tables,
            Kind.EXTENSION: lambda: ref.name in self.extensions,
            Kind.FUNCTION: lambda: ref.name in self.functions,
            Kind.ROW: lambda: self.rows.get(ref.name, False),
        }[ref.kind]()
        return Seen(present)

    @property
    def invalid_indexes(self) -> tuple[str, ...]:
        return tuple(sorted(name for name, valid in self.indexes.items() if not valid))


@dataclass(frozen=True)
class Access:
    """Who we are and what we may do, for the preflight checks."""

    user: str = "app"
    database_owner: str = "app"
    schema: str = "public"
    server_version_num: int = 150000
    can_create_in_schema: bool = True
    can_create_in_database: bool = True
    read_only: bool = False
    can_create_database: bool = False  # CREATEDB or superuser: asked only when the database is missing


@dataclass(frozen=True)
class State:
    """The observed state of one store's database (``exists`` False: not created yet, seen from ``postgres``)."""

    database: str
    version_table: bool = False
    version: str | None = None
    other_databases: tuple[str, ...] = ()
    catalog: Catalog = field(default_factory=Catalog)
    access: Access = field(default_factory=Access)
    exists: bool = True
