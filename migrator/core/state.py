"""What `observe` saw in one database: plain data, so that planning is a pure function of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from migrator.core.online import OnlineProgress
from migrator.core.statements import Kind, ObjectRef, Shape, column_shape, normal_index, shape


@dataclass(frozen=True)
class ColumnInfo:
    """A column as the catalog prints it: ``format_type``, ``attnotnull``, ``pg_get_expr`` of its default (or of
    its generation expression, ``generated``)."""

    type: str
    not_null: bool = False
    default: str | None = None
    generated: bool = False


@dataclass(frozen=True)
class IndexInfo:
    """``indisvalid`` and ``pg_get_indexdef`` (not ``known`` while another session holds its table locked)."""

    valid: bool
    definition: str
    known: bool = True


@dataclass(frozen=True)
class Seen:
    """One object as found: present or not, and its definition(s) (a function may have overloads)."""

    present: bool
    shapes: tuple[Shape, ...] = ()
    known: bool = True  # False: present, its definition not read (its table locked by another session)

    def fits(self, present: bool, attributes: Mapping[str, str]) -> bool:
        """Present as expected and, if present, with every attribute the expectation names (an unknown
        definition fits any)."""
        if present != self.present:
            return False
        if not present or not attributes or not self.known:
            return True
        return any(all(dict(found).get(key) == value for key, value in attributes.items()) for found in self.shapes)

    def __str__(self) -> str:
        if not self.present:
            return "absent"
        return "present" + (f" ({describe_shape(self.shapes[0])})" if self.shapes and self.shapes[0] else "")


def describe_shape(attributes: Shape | Mapping[str, str]) -> str:
    """``default '', not_null true, type varchar(16)`` for a message (the table of an index is in its definition)."""
    items = attributes.items() if isinstance(attributes, Mapping) else attributes
    return ", ".join(f"{key} {value or 'none'}" for key, value in sorted(items) if key != "table")


@dataclass(frozen=True)
class Catalog:
    """The objects of the schema Temporal's tables live in (``current_schema()``), as the catalog prints them.

    Definitions are normalised only when compared (`Catalog.seen`), so that a run with nothing to do never
    loads the parser. A catalog read without ``definitions`` (a store at its target) knows which tables and indexes
    exist and which indexes are invalid, but no column and no function: comparing one of those is a shell's bug.
    """

    tables: frozenset[str] = frozenset()
    columns: Mapping[str, ColumnInfo] = field(default_factory=dict)
    indexes: Mapping[str, IndexInfo] = field(default_factory=dict)
    extensions: frozenset[str] = frozenset()
    functions: Mapping[str, frozenset[str]] = field(default_factory=dict)  # name -> md5 of each overload's body
    rows: Mapping[str, bool] = field(default_factory=dict)
    locked: Mapping[str, str] = field(default_factory=dict)  # table -> who holds ACCESS EXCLUSIVE on it
    definitions: bool = True

    def seen(self, ref: ObjectRef) -> Seen:
        if not self.definitions and ref.kind in (Kind.COLUMN, Kind.INDEX, Kind.FUNCTION):
            raise ValueError(f"the catalog was read without definitions: {ref} cannot be compared")
        if ref.kind is Kind.COLUMN:
            column = self.columns.get(ref.name)
            if column is None:
                return Seen(False)
            if ref.name.split(".", 1)[0] in self.locked:
                return Seen(True, known=False)
            return Seen(True, (column_shape(column.type, column.not_null, column.default, column.generated),))
        if ref.kind is Kind.INDEX:  # an INVALID index is a build that crashed: it counts as not there
            index = self.indexes.get(ref.name)
            if index is None or not index.valid:
                return Seen(False)
            if not index.known:
                return Seen(True, known=False)
            return Seen(True, (normal_index(index.definition),))
        if ref.kind is Kind.FUNCTION:
            bodies = self.functions.get(ref.name)
            return Seen(bool(bodies), tuple(shape(body=body) for body in sorted(bodies or ())))
        present = {
            Kind.TABLE: lambda: ref.name in self.tables,
            Kind.EXTENSION: lambda: ref.name in self.extensions,
            Kind.ROW: lambda: self.rows.get(ref.name, False),
        }[ref.kind]()
        return Seen(present)

    @property
    def invalid_indexes(self) -> tuple[str, ...]:
        return tuple(sorted(name for name, index in self.indexes.items() if not index.valid))


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
    version: str | None = None
    other_databases: tuple[str, ...] = ()
    catalog: Catalog = field(default_factory=Catalog)
    access: Access = field(default_factory=Access)
    exists: bool = True
    online: OnlineProgress | None = None  # an online rewrite a run left in progress
