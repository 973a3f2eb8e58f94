"""What each vendor statement leaves behind in the catalog, read from its text.

The repair decides how far a crashed attempt got by checking these postconditions against the catalog, so
every statement is described by its *effects*: objects it makes present or absent. Statements that re-run
harmlessly and leave nothing observable (``ALTER COLUMN ... TYPE``, ``SET DEFAULT``) have no effects. Effects of
``IF [NOT] EXISTS`` forms and of ``CREATE EXTENSION`` inside a ``DO`` block are *conditional*: they say what is
there afterwards, never what was there before, so they cannot tell how far a crashed attempt got. A statement
of a form not modelled here is marked unrecognised, and the planner refuses to repair its version. Nothing here
knows a Temporal table or version: it is generic over the DDL forms the vendor uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    TABLE = "table"
    INDEX = "index"
    COLUMN = "column"
    EXTENSION = "extension"
    FUNCTION = "function"
    ROW = "row"


@dataclass(frozen=True)
class ObjectRef:
    """A catalog object; columns are named ``table.column``, rows by their probe text."""

    kind: Kind
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class RowProbe:
    """Enough of an INSERT to ask whether its row is there: ``(columns) IN (VALUES values)``."""

    table: str
    columns: tuple[str, ...]
    values_sql: str


@dataclass(frozen=True)
class Effect:
    """After the statement, ``ref`` is present (with this shape, for added columns) or absent.

    ``conditional``: the statement would have done nothing had ``ref`` already been so (``IF [NOT] EXISTS``).
    """

    ref: ObjectRef
    present: bool
    not_null: bool | None = None
    has_default: bool | None = None
    conditional: bool = False


@dataclass(frozen=True)
class Statement:
    """One vendor statement, verbatim, with its effects."""

    text: str
    effects: tuple[Effect, ...] = ()
    probe: RowProbe | None = None
    recognised: bool = True

    @property
    def decisive(self) -> bool:
        """Whether its effects can tell "ran" from "not yet run" (some effect is unconditional)."""
        return any(not effect.conditional for effect in self.effects)


_FLAGS = re.IGNORECASE | re.DOTALL
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_NAME = rf"(?:{_IDENT}\.)?{_IDENT}"
_NAME_LIST = rf"{_NAME}(?:\s*,\s*{_NAME})*"
NAME_PATTERN = _NAME  # a possibly qualified, possibly quoted name (also read by migrator.core.impact)
_IF_NOT_EXISTS = r"(IF\s+NOT\s+EXISTS\s+)?"
_IF_EXISTS = r"(IF\s+EXISTS\s+)?"
_NOT_COLUMNS = {"constraint", "primary", "unique", "check", "foreign", "exclude"}

_CREATE_TABLE = re.compile(
    rf"CREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?(?:(?:TEMP|TEMPORARY|UNLOGGED)\s+)?TABLE\s+{_IF_NOT_EXISTS}({_NAME})", _FLAGS
)
_CREATE_INDEX = re.compile(
    rf"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?{_IF_NOT_EXISTS}({_NAME})\s+ON\s", _FLAGS
)
_CREATE_EXTENSION = re.compile(rf"CREATE\s+EXTENSION\s+{_IF_NOT_EXISTS}({_NAME})", _FLAGS)
_CREATE_FUNCTION = re.compile(rf"CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+()({_NAME})\s*\(", _FLAGS)
_DROP = re.compile(rf"DROP\s+(TABLE|INDEX|EXTENSION|FUNCTION)\s+(?:CONCURRENTLY\s+)?{_IF_EXISTS}({_NAME_LIST})", _FLAGS)
_ALTER_TABLE = re.compile(rf"ALTER\s+TABLE\s+{_IF_EXISTS}(?:ONLY\s+)?({_NAME})\s+(.*?)\s*;?\s*$", _FLAGS)
_ADD_COLUMN = re.compile(rf"ADD\s+(?:COLUMN\s+)?{_IF_NOT_EXISTS}({_IDENT})\s+(.*)$", _FLAGS)
_DROP_COLUMN = re.compile(rf"DROP\s+(?:COLUMN\s+)?{_IF_EXISTS}({_IDENT})(?:\s+(?:CASCADE|RESTRICT))?\s*$", _FLAGS)
_ALTER_COLUMN = re.compile(r"ALTER\s", _FLAGS)
_INSERT = re.compile(rf"INSERT\s+INTO\s+({_NAME})\s*\(([^)]*)\)\s*VALUES\s*(\(.*\))\s*;?\s*$", _FLAGS)
_DO = re.compile(r"DO\s", _FLAGS)
# CREATE EXTENSION anywhere in a DO block's body (v1.31+ visibility v1.2 creates btree_gin that way).
_EXTENSION_IN_BODY = re.compile(rf"\bCREATE\s+EXTENSION\s+{_IF_NOT_EXISTS}({_NAME})", _FLAGS)
_NOT_NULL = re.compile(r"\bNOT\s+NULL\b|\bPRIMARY\s+KEY\b", _FLAGS)
_HAS_DEFAULT = re.compile(r"\bDEFAULT\b|\bGENERATED\b", _FLAGS)


def identifier(text: str) -> str:
    """The catalog name of a possibly qualified, possibly quoted identifier (unquoted names fold to lower)."""
    last: str = re.findall(_IDENT, text.strip())[-1]
    if last.startswith('"'):
        return last[1:-1].replace('""', '"')
    return last.lower()


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split on ``separator`` outside parentheses and quotes (for ALTER TABLE actions and column lists)."""
    parts: list[str] = []
    depth = 0
    quote = ""
    start = 0
    for pos, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:pos].strip())
            start = pos + 1
    parts.append(text[start:].strip())
    return [part for part in parts if part]


def _alter_table_effects(table: str, actions: str) -> tuple[tuple[Effect, ...], bool]:
    effects: list[Effect] = []
    recognised = True
    for action in split_top_level(actions):
        if (added := _ADD_COLUMN.match(action)) and added.group(2).lower() not in _NOT_COLUMNS:
            definition = added.group(3)
            effects.append(
                Effect(
                    ObjectRef(Kind.COLUMN, f"{table}.{identifier(added.group(2))}"),
                    present=True,
                    not_null=bool(_NOT_NULL.search(definition)),
                    has_default=bool(_HAS_DEFAULT.search(definition)),
                    conditional=bool(added.group(1)),
                )
            )
        elif (dropped := _DROP_COLUMN.match(action)) and dropped.group(2).lower() not in _NOT_COLUMNS:
            ref = ObjectRef(Kind.COLUMN, f"{table}.{identifier(dropped.group(2))}")
            effects.append(Effect(ref, present=False, conditional=bool(dropped.group(1))))
        elif not _ALTER_COLUMN.match(action):
            recognised = False
    return tuple(effects), recognised


_CREATES = ((_CREATE_TABLE, Kind.TABLE), (_CREATE_INDEX, Kind.INDEX), (_CREATE_EXTENSION, Kind.EXTENSION))


def describe(text: str) -> Statement:
    """Classify one statement (as split by `migrator.core.sqlsplit`) into its effects."""
    for pattern, kind in (*_CREATES, (_CREATE_FUNCTION, Kind.FUNCTION)):
        if match := pattern.match(text):
            ref = ObjectRef(kind, identifier(match.group(2)))
            return Statement(text, (Effect(ref, True, conditional=bool(match.group(1))),))
    if match := _DROP.match(text):
        kind = Kind(match.group(1).lower())
        names = split_top_level(match.group(3))
        conditional = bool(match.group(2))
        return Statement(
            text, tuple(Effect(ObjectRef(kind, identifier(name)), False, conditional=conditional) for name in names)
        )
    if match := _ALTER_TABLE.match(text):
        effects, recognised = _alter_table_effects(identifier(match.group(2)), match.group(3))
        return Statement(text, effects, recognised=recognised)
    if match := _INSERT.match(text):
        probe = RowProbe(
            table=identifier(match.group(1)),
            columns=tuple(identifier(column) for column in split_top_level(match.group(2))),
            values_sql=match.group(3),
        )
        ref = ObjectRef(Kind.ROW, f"{probe.table}({', '.join(probe.columns)}) {probe.values_sql}")
        return Statement(text, (Effect(ref, True),), probe=probe)
    if _DO.match(text):  # re-runs harmlessly; what it may create is there afterwards, whatever was before
        extensions = (identifier(match.group(2)) for match in _EXTENSION_IN_BODY.finditer(text))
        return Statement(
            text, tuple(Effect(ObjectRef(Kind.EXTENSION, name), True, conditional=True) for name in extensions)
        )
    return Statement(text, recognised=False)
