"""What each vendor statement does, read from PostgreSQL's own parse tree (``pglast``, libpg_query).

One parse gives both things the migrator needs from a statement:

- its *effects*, the postconditions the repair checks against the catalog: objects it makes present or absent,
  with the definition it leaves (a column's type, nullability and default; an index's table, keys, method,
  uniqueness and predicate; a function's body). ``IF [NOT] EXISTS`` forms and what a ``DO`` block may create are
  *conditional*: they say what is there afterwards, never what was there before, nor which definition it has.
  ``CREATE OR REPLACE`` and ``ALTER COLUMN`` forms always leave their definition but re-run harmlessly, so they
  never decide how far a crashed attempt got (*rerunnable*);
- what it *touches*, for the impact report (`migrator.core.impact`): the table, the form, what its ALTER TABLE
  actions do.

Definitions are compared as normalised text, produced the same way from the vendor's statement and from what the
catalog prints (``pg_get_indexdef``, ``format_type``, ``pg_get_expr``): names without schema, casts dropped (the
catalog adds them), literals reduced to a placeholder (the catalog reprints them through their type). So two
definitions compare equal when their structure agrees: a column's type, nullability and whether (and which
expression) it defaults to; an index's table, keys and expressions, order, method, uniqueness and predicate; a
function's body. A change of a literal alone (a default of ``'a'`` becoming ``'b'``) is not seen.

A statement PostgreSQL's parser rejects, or of a form not modelled here, is marked unrecognised, and the planner
refuses to repair its version. Nothing here knows a Temporal table or version. ``pglast`` is imported only when a
statement or a definition is actually described, never on a path that reads no SQL.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any


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


# A definition: (attribute, normalised value) pairs, sorted. Attributes: a column's "type", "not_null" and
# "default"; an index's "table" and "definition"; a function's "body" (MD5 of its source, as ``md5(prosrc)``).
Shape = tuple[tuple[str, str], ...]


def shape(**attributes: str) -> Shape:
    return tuple(sorted(attributes.items()))


@dataclass(frozen=True)
class Effect:
    """After the statement, ``ref`` is present (with the attributes in ``shape``) or absent.

    ``conditional``: the statement would have done nothing had ``ref`` already been so (``IF [NOT] EXISTS``, a
    ``DO`` block): its presence holds afterwards, its definition may be an older one.
    ``rerunnable``: it holds afterwards, but running the statement again changes nothing (``OR REPLACE``,
    ``ALTER COLUMN``), so it cannot tell "ran" from "not yet run".
    ``partial``: only the attributes in ``shape`` change (``ALTER COLUMN ... TYPE``, ``SET DEFAULT``); the others
    stay as they were.
    """

    ref: ObjectRef
    present: bool
    shape: Shape = ()
    conditional: bool = False
    rerunnable: bool = False
    partial: bool = False

    @property
    def decisive(self) -> bool:
        return not self.conditional and not self.rerunnable


class Form(StrEnum):
    """The statement forms the impact report tells apart."""

    CREATE_TABLE = "create-table"
    CREATE_INDEX = "create-index"
    DROP_TABLE = "drop-table"
    DROP_INDEX = "drop-index"
    ALTER_TABLE = "alter-table"
    WRITE = "write"
    OTHER = "other"


class Change(StrEnum):
    ADD_COLUMN = "add-column"
    DROP_COLUMN = "drop-column"
    ALTER_TYPE = "alter-type"
    SET_NOT_NULL = "set-not-null"
    ADD_CONSTRAINT = "add-constraint"
    OTHER = "other"


@dataclass(frozen=True)
class Action:
    """One action of an ALTER TABLE, as far as its cost goes."""

    change: Change
    column: str = ""
    new_type: str = ""  # ALTER TYPE: the normalised type (`normal_type`)
    rewrites: bool = False  # ADD COLUMN: stored generated, identity, serial, or a volatile default
    validated: bool = True  # ADD CONSTRAINT without NOT VALID
    foreign: bool = False  # ADD CONSTRAINT ... FOREIGN KEY


@dataclass(frozen=True)
class Touch:
    """What a statement touches: ``table`` (for a DROP INDEX, the catalog knows it: ``index``)."""

    form: Form = Form.OTHER
    table: str | None = None
    index: str | None = None
    concurrently: bool = False
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True)
class Statement:
    """One vendor statement, verbatim, with its effects and what it touches."""

    text: str
    effects: tuple[Effect, ...] = ()
    probe: RowProbe | None = None
    recognised: bool = True
    touch: Touch = Touch()

    @property
    def decisive(self) -> bool:
        """Whether its effects can tell "ran" from "not yet run" (some effect is neither conditional nor
        rerunnable)."""
        return any(effect.decisive for effect in self.effects)


# CREATE EXTENSION inside a DO block's PL/pgSQL body, which the SQL parser keeps as an opaque string.
_EXTENSION_IN_BODY = re.compile(
    r'\bCREATE\s+EXTENSION\s+(?:IF\s+NOT\s+EXISTS\s+)?("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)', re.IGNORECASE
)
_LITERAL = "<literal>"
_VOLATILE = frozenset({"random", "gen_random_uuid", "uuid_generate_v1", "uuid_generate_v4", "clock_timestamp",
                       "timeofday", "nextval"})  # fmt: skip
_SERIAL = {"smallserial": "int2", "serial2": "int2", "serial": "int4", "serial4": "int4", "bigserial": "int8",
           "serial8": "int8"}  # fmt: skip


def _pglast() -> Any:
    """pglast, imported on first use (20-50 ms): a run that reads no SQL never pays for it."""
    import pglast  # noqa: PLC0415
    import pglast.enums  # noqa: PLC0415
    import pglast.stream  # noqa: PLC0415

    return pglast


def body_hash(source: str) -> str:
    """What the catalog reads as ``md5(prosrc)``."""
    return hashlib.md5(source.encode(), usedforsecurity=False).hexdigest()


# -- normalising parse trees -------------------------------------------------------------------------


def _deparse(node: Any) -> str:
    return str(_pglast().stream.RawStream()(node))


def _plain(node: Any) -> Any:
    """``node`` without casts, every literal a placeholder: the catalog prints a literal through its type's output
    function (``''`` becomes ``'\\x'::bytea``, a timestamp loses its zone), which the statement's text cannot
    predict without the column's type."""
    ast = _pglast().ast

    if isinstance(node, tuple | list):
        return tuple(_plain(item) for item in node)
    if not isinstance(node, ast.Node):
        return node
    if isinstance(node, ast.TypeCast):
        return _plain(node.arg)
    if isinstance(node, ast.A_Const) and not node.isnull:
        return ast.A_Const(isnull=False, val=ast.String(sval=_LITERAL))
    for name in node:
        value = getattr(node, name)
        if isinstance(value, tuple | list | ast.Node):
            setattr(node, name, _plain(value))
    return node


@lru_cache(maxsize=4096)
def normal_type(text: str) -> str:
    """A type as ``format_type`` or a statement writes it, normalised (``character varying(16)`` and
    ``VARCHAR(16)`` both give ``varchar(16)``)."""
    pglast = _pglast()

    try:
        target = pglast.parse_sql(f"SELECT NULL::{text}")[0].stmt.targetList[0].val
        return _type_text(target.typeName)
    except (pglast.parser.ParseError, AttributeError, IndexError):
        # not a type the parser reads: compare the text as given
        return " ".join(text.lower().split())


def _type_text(type_name: Any) -> str:
    """``schema.name(typmods)[]`` without ``pg_catalog``: the parser already maps SQL's spellings (``character
    varying``, ``INTEGER``) to the catalog's names; serial types are the integers they stand for."""
    names = [name.sval for name in type_name.names]
    names = ["pg_catalog", _SERIAL[names[-1]]] if names[-1] in _SERIAL else names
    text = ".".join(names).removeprefix("pg_catalog.").lower()
    modifiers = [_literal(item) for item in type_name.typmods or ()]
    if modifiers:
        text += f"({','.join(modifiers)})"
    return text + "[]" * len(type_name.arrayBounds or ())


@lru_cache(maxsize=4096)
def normal_expression(text: str) -> str:
    """An expression as ``pg_get_expr`` or a statement writes it, normalised (see the module's docstring)."""
    pglast = _pglast()

    try:
        return _expression_text(pglast.parse_sql(f"SELECT {text}")[0].stmt.targetList[0].val)
    except (pglast.parser.ParseError, AttributeError, IndexError):
        # not an expression the parser reads: compare the text as given
        return " ".join(text.split())


def _expression_text(node: Any) -> str:
    return _deparse(_plain(node))


def _literal(node: Any) -> str:
    """A type modifier's value (``16`` of ``varchar(16)``)."""
    value = getattr(node, "val", None)
    for attribute in ("ival", "fval", "sval"):
        if value is not None and hasattr(value, attribute):
            return str(getattr(value, attribute))
    return _deparse(node)


def _relation_name(relation: Any) -> str:
    return str(relation.relname)


def _index_text(node: Any) -> str:
    """An IndexStmt as a definition: no name, schema, CONCURRENTLY or IF NOT EXISTS; defaults spelled out."""
    ast = _pglast().ast
    enums = _pglast().enums

    node.idxname = None
    node.concurrent = False
    node.if_not_exists = False
    node.tableSpace = None
    node.relation = ast.RangeVar(relname=node.relation.relname, inh=True, relpersistence="p")
    node.accessMethod = (node.accessMethod or "btree").lower()
    elements = []
    for element in node.indexParams or ():
        if isinstance(element.expr, ast.ColumnRef) and len(element.expr.fields) == 1:
            element.name, element.expr = element.expr.fields[0].sval, None
        descending = element.ordering == enums.SortByDir.SORTBY_DESC
        if element.ordering == enums.SortByDir.SORTBY_ASC:
            element.ordering = enums.SortByDir.SORTBY_DEFAULT
        if (descending and element.nulls_ordering == enums.SortByNulls.SORTBY_NULLS_FIRST) or (
            not descending and element.nulls_ordering == enums.SortByNulls.SORTBY_NULLS_LAST
        ):
            element.nulls_ordering = enums.SortByNulls.SORTBY_NULLS_DEFAULT
        if element.expr is not None:
            element.expr = _plain(element.expr)
        elements.append(element)
    node.indexParams = tuple(elements)
    if node.whereClause is not None:
        node.whereClause = _plain(node.whereClause)
    return _deparse(node)


@lru_cache(maxsize=4096)
def normal_index(definition: str) -> Shape:
    """An index's definition as ``pg_get_indexdef`` prints it (or a CREATE INDEX statement), normalised."""
    pglast = _pglast()

    try:
        node = pglast.parse_sql(definition)[0].stmt
        return shape(table=_relation_name(node.relation), definition=_index_text(node))
    except (pglast.parser.ParseError, AttributeError, IndexError):
        # not a definition the parser reads: compare the text as given
        return shape(definition=" ".join(definition.split()))


def column_shape(type_text: str, not_null: bool, default: str | None, generated: bool = False) -> Shape:
    """A column as the catalog shows it (``format_type``, ``attnotnull``, ``pg_get_expr`` of its default)."""
    expression = "" if default is None else ("stored " if generated else "") + normal_expression(default)
    return shape(type=normal_type(type_text), not_null=str(not_null).lower(), default=expression)


# -- describing statements ----------------------------------------------------------------------------


def _column_effect(table: str, column: Any, primary: set[str], conditional: bool) -> tuple[Effect, bool]:
    """(the effect of a column definition, whether adding it rewrites the table)."""
    ast = _pglast().ast
    enums = _pglast().enums

    name = str(column.colname)
    serial = column.typeName.names[-1].sval in _SERIAL
    not_null = name in primary or serial
    default: str | None = "" if not serial else None
    rewrites = serial
    for constraint in column.constraints or ():
        kind = constraint.contype
        if kind in (enums.ConstrType.CONSTR_NOTNULL, enums.ConstrType.CONSTR_PRIMARY):
            not_null = True
        elif kind == enums.ConstrType.CONSTR_DEFAULT:
            raw = constraint.raw_expr
            null = isinstance(raw, ast.A_Const) and raw.isnull
            rewrites = rewrites or bool(set(_calls(raw)) & _VOLATILE)
            default = "" if null else _expression_text(raw)
        elif kind == enums.ConstrType.CONSTR_GENERATED:
            default = "stored " + _expression_text(constraint.raw_expr)
            rewrites = True
        elif kind == enums.ConstrType.CONSTR_IDENTITY:
            not_null, default, rewrites = True, None, True
    attributes = {"type": _type_text(column.typeName), "not_null": str(not_null).lower()}
    if default is not None:
        attributes["default"] = default
    ref = ObjectRef(Kind.COLUMN, f"{table}.{name}")
    return Effect(ref, True, shape(**attributes), conditional=conditional), rewrites


def _calls(node: Any) -> list[str]:
    """The names of the functions an expression calls."""
    ast = _pglast().ast

    if isinstance(node, tuple | list):
        return [name for item in node for name in _calls(item)]
    if not isinstance(node, ast.Node):
        return []
    found = [str(node.funcname[-1].sval)] if isinstance(node, ast.FuncCall) else []
    return found + [name for attribute in node for name in _calls(getattr(node, attribute))]


def _create_table(text: str, node: Any) -> Statement:
    ast = _pglast().ast
    enums = _pglast().enums

    table = _relation_name(node.relation)
    conditional = bool(node.if_not_exists)
    primary = {
        key.sval
        for element in node.tableElts or ()
        if isinstance(element, ast.Constraint) and element.contype == enums.ConstrType.CONSTR_PRIMARY
        for key in element.keys or ()
    }
    effects = [Effect(ObjectRef(Kind.TABLE, table), True, conditional=conditional)]
    effects += [
        _column_effect(table, element, primary, conditional)[0]
        for element in node.tableElts or ()
        if isinstance(element, ast.ColumnDef)
    ]
    return Statement(text, tuple(effects), touch=Touch(Form.CREATE_TABLE, table))


def _create_index(text: str, node: Any) -> Statement:
    table = _relation_name(node.relation)
    name = node.idxname
    touch = Touch(Form.CREATE_INDEX, table, name, concurrently=bool(node.concurrent))
    if name is None:  # PostgreSQL picks the name: nothing to look for
        return Statement(text, recognised=False, touch=touch)
    conditional = bool(node.if_not_exists)
    definition = shape(table=table, definition=_index_text(node))
    return Statement(text, (Effect(ObjectRef(Kind.INDEX, name), True, definition, conditional),), touch=touch)


def _create_function(text: str, node: Any) -> Statement:
    name = node.funcname[-1].sval
    source = next((option.arg for option in node.options or () if option.defname == "as"), ())
    body = body_hash("".join(part.sval for part in source[:1]))
    replaces = bool(node.replace)
    effect = Effect(ObjectRef(Kind.FUNCTION, name), True, shape(body=body), rerunnable=replaces)
    return Statement(text, (effect,))


def _drop(text: str, node: Any) -> Statement:
    ast = _pglast().ast
    enums = _pglast().enums

    objects = enums.ObjectType
    kinds = {
        objects.OBJECT_TABLE: Kind.TABLE,
        objects.OBJECT_INDEX: Kind.INDEX,
        objects.OBJECT_EXTENSION: Kind.EXTENSION,
        objects.OBJECT_FUNCTION: Kind.FUNCTION,
    }
    kind = kinds.get(node.removeType)
    if kind is None:
        return Statement(text, recognised=False)
    names = []
    for item in node.objects:
        if isinstance(item, ast.ObjectWithArgs):
            names.append(item.objname[-1].sval)
        elif isinstance(item, ast.String):
            names.append(item.sval)
        else:
            names.append(item[-1].sval)
    effects = tuple(Effect(ObjectRef(kind, name), False, conditional=bool(node.missing_ok)) for name in names)
    touch = Touch()
    if kind is Kind.TABLE:
        touch = Touch(Form.DROP_TABLE, names[0])
    elif kind is Kind.INDEX:
        touch = Touch(Form.DROP_INDEX, index=names[0], concurrently=bool(node.concurrent))
    return Statement(text, effects, touch=touch)


def _alter_table(text: str, node: Any) -> Statement:
    ast = _pglast().ast
    enums = _pglast().enums

    table = _relation_name(node.relation)
    effects: list[Effect] = []
    actions: list[Action] = []
    recognised = True
    forms = enums.AlterTableType
    harmless = {forms.AT_SetStatistics, forms.AT_SetStorage, forms.AT_SetCompression, forms.AT_SetOptions,
                forms.AT_ResetOptions}  # fmt: skip
    for command in node.cmds:
        kind = command.subtype
        column = ObjectRef(Kind.COLUMN, f"{table}.{command.name}")
        if kind == enums.AlterTableType.AT_AddColumn:
            effect, rewrites = _column_effect(table, command.def_, set(), bool(command.missing_ok))
            effects.append(effect)
            actions.append(Action(Change.ADD_COLUMN, effect.ref.name.split(".", 1)[1], rewrites=rewrites))
        elif kind == enums.AlterTableType.AT_DropColumn:
            effects.append(Effect(column, False, conditional=bool(command.missing_ok)))
            actions.append(Action(Change.DROP_COLUMN, command.name))
        elif kind == enums.AlterTableType.AT_AlterColumnType:
            new_type = _type_text(command.def_.typeName)
            effects.append(Effect(column, True, shape(type=new_type), rerunnable=True, partial=True))
            actions.append(Action(Change.ALTER_TYPE, command.name, new_type=new_type))
        elif kind == enums.AlterTableType.AT_ColumnDefault:
            raw = command.def_
            default = "" if raw is None or (isinstance(raw, ast.A_Const) and raw.isnull) else _expression_text(raw)
            effects.append(Effect(column, True, shape(default=default), rerunnable=True, partial=True))
            actions.append(Action(Change.OTHER, command.name))
        elif kind in (enums.AlterTableType.AT_SetNotNull, enums.AlterTableType.AT_DropNotNull):
            not_null = kind == enums.AlterTableType.AT_SetNotNull
            effects.append(Effect(column, True, shape(not_null=str(not_null).lower()), rerunnable=True, partial=True))
            actions.append(Action(Change.SET_NOT_NULL if not_null else Change.OTHER, command.name))
        elif kind == enums.AlterTableType.AT_AddConstraint:
            constraint = command.def_
            recognised = False  # what it adds (a constraint, an index) is not modelled
            actions.append(
                Action(
                    Change.ADD_CONSTRAINT,
                    validated=not constraint.skip_validation,
                    foreign=constraint.contype == enums.ConstrType.CONSTR_FOREIGN,
                )
            )
        elif kind in harmless:
            actions.append(Action(Change.OTHER, command.name or ""))
        else:
            recognised = False
            actions.append(Action(Change.OTHER, command.name or ""))
    return Statement(text, tuple(effects), recognised=recognised, touch=Touch(Form.ALTER_TABLE, table,
                                                                              actions=tuple(actions)))  # fmt: skip


def _insert(text: str, node: Any) -> Statement:
    table = _relation_name(node.relation)
    touch = Touch(Form.WRITE, table)
    values = node.selectStmt.valuesLists if node.selectStmt is not None else None
    if not node.cols or not values or len(values) != 1:
        return Statement(text, recognised=False, touch=touch)
    probe = RowProbe(
        table=table,
        columns=tuple(str(column.name) for column in node.cols),
        values_sql=_deparse(node.selectStmt).removeprefix("VALUES "),
    )
    ref = ObjectRef(Kind.ROW, f"{probe.table}({', '.join(probe.columns)}) {probe.values_sql}")
    return Statement(text, (Effect(ref, True),), probe=probe, touch=touch)


def _do(text: str, node: Any) -> Statement:
    """A DO block re-runs harmlessly; what it may create is there afterwards, whatever was there before."""
    body = next((str(option.arg.sval) for option in node.args or () if option.defname == "as"), "")
    names = []
    for match in _EXTENSION_IN_BODY.finditer(body):
        name = match.group(1)
        names.append(name[1:-1].replace('""', '"') if name.startswith('"') else name.lower())
    return Statement(text, tuple(Effect(ObjectRef(Kind.EXTENSION, name), True, conditional=True) for name in names))


def describe(text: str) -> Statement:
    """Classify one statement (as split by `migrator.core.sqlsplit`) into its effects and what it touches."""
    pglast = _pglast()
    ast = pglast.ast
    enums = _pglast().enums

    try:
        parsed = pglast.parse_sql(text)
    except pglast.parser.ParseError:
        return Statement(text, recognised=False)
    if len(parsed) != 1:
        return Statement(text, recognised=False)
    node = parsed[0].stmt
    if isinstance(node, ast.CreateStmt):
        return _create_table(text, node)
    if isinstance(node, ast.IndexStmt):
        return _create_index(text, node)
    if isinstance(node, ast.CreateExtensionStmt):
        effect = Effect(ObjectRef(Kind.EXTENSION, node.extname), True, conditional=bool(node.if_not_exists))
        return Statement(text, (effect,))
    if isinstance(node, ast.CreateFunctionStmt):
        return _create_function(text, node)
    if isinstance(node, ast.DropStmt):
        return _drop(text, node)
    if isinstance(node, ast.AlterTableStmt) and node.objtype == enums.ObjectType.OBJECT_TABLE:
        return _alter_table(text, node)
    if isinstance(node, ast.InsertStmt):
        return _insert(text, node)
    if isinstance(node, ast.DoStmt):
        return _do(text, node)
    if isinstance(node, ast.RenameStmt) and node.relation is not None:  # ALTER TABLE ... RENAME
        return Statement(text, recognised=False, touch=Touch(Form.ALTER_TABLE, _relation_name(node.relation)))
    if isinstance(node, ast.UpdateStmt | ast.DeleteStmt):
        return Statement(text, recognised=False, touch=Touch(Form.WRITE, _relation_name(node.relation)))
    return Statement(text, recognised=False)


# -- the online rewrite's shadow ---------------------------------------------------------------------


class ShadowUse(StrEnum):
    """When a vendor statement runs on the shadow of an online rewrite (`migrator.core.shadow`)."""

    TABLE = "table"  # an ALTER TABLE: on the empty shadow, before the copy (instant there)
    INDEX = "index"  # an index built or dropped: after the copy, with the shadow's other indexes
    SKIP = "skip"  # a DO block: the vendor's drops INVALID indexes, and the shadow is built without any


def for_shadow(text: str, schema: str) -> tuple[ShadowUse, str]:
    """``text`` as it runs on the shadow, a table of the same name in ``schema``: index statements lose
    ``CONCURRENTLY`` (only the migrator touches the shadow, and a concurrent build would wait for every old
    snapshot of the live table's readers) and name ``schema`` (a ``DROP INDEX`` of a name the shadow lacks must
    not reach the live table's). A statement of any other form is a ValueError: the shadow would not match what
    the vendor's statement leaves."""
    pglast = _pglast()
    ast, objects = pglast.ast, pglast.enums.ObjectType
    parsed = pglast.parse_sql(text)
    if len(parsed) != 1:
        raise ValueError(f"not one statement: {' '.join(text.split())[:120]}")
    node = parsed[0].stmt
    if isinstance(node, ast.AlterTableStmt) and node.objtype == objects.OBJECT_TABLE:
        return ShadowUse.TABLE, text
    if isinstance(node, ast.IndexStmt):
        node.relation.schemaname = schema
        node.concurrent = False
        return ShadowUse.INDEX, _deparse(node)
    if isinstance(node, ast.DropStmt) and node.removeType == objects.OBJECT_INDEX:
        node.objects = tuple((ast.String(sval=schema), item[-1]) for item in node.objects)
        node.concurrent = False
        return ShadowUse.INDEX, _deparse(node)
    if isinstance(node, ast.DoStmt):
        return ShadowUse.SKIP, text
    raise ValueError(f"a statement an online rewrite cannot apply to a shadow: {' '.join(text.split())[:120]}")


def retarget_index(definition: str, schema: str) -> str:
    """An index definition (``pg_get_indexdef``) built on the table of the same name in ``schema`` instead,
    under the same name (index names are per schema), without ``CONCURRENTLY``."""
    pglast = _pglast()
    node = pglast.parse_sql(definition)[0].stmt
    if not isinstance(node, pglast.ast.IndexStmt):
        raise ValueError(f"not an index definition: {definition[:120]}")
    node.relation.schemaname = schema
    node.concurrent = False
    return _deparse(node)


@dataclass(frozen=True)
class ConcurrentIndex:
    """A plain ``CREATE INDEX`` rewritten to build without blocking writes, and the columns it reads."""

    text: str  # the same index, ``CONCURRENTLY IF NOT EXISTS``
    columns: tuple[str, ...]


def _column_names(node: Any) -> list[str]:
    """The columns an expression reads (the last field of each column reference)."""
    ast = _pglast().ast

    if isinstance(node, tuple | list):
        return [name for item in node for name in _column_names(item)]
    if not isinstance(node, ast.Node):
        return []
    if isinstance(node, ast.ColumnRef):
        last = node.fields[-1]
        return [str(last.sval)] if isinstance(last, ast.String) else []
    return [name for attribute in node for name in _column_names(getattr(node, attribute))]


def concurrent_index(text: str) -> ConcurrentIndex | None:
    """The vendor's ``CREATE INDEX`` as ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` (same name, table, keys,
    method, predicate), which takes SHARE UPDATE EXCLUSIVE instead of SHARE: reads and writes go on during the
    build, and the vendor's statement then finds the index in place. None for anything else (or an unnamed
    index, which could not be found again)."""
    pglast = _pglast()
    try:
        parsed = pglast.parse_sql(text)
    except pglast.parser.ParseError:
        return None
    if len(parsed) != 1 or not isinstance(parsed[0].stmt, pglast.ast.IndexStmt) or parsed[0].stmt.idxname is None:
        return None
    node = parsed[0].stmt
    columns = [str(element.name) for element in node.indexParams or () if element.name]
    columns += _column_names([element.expr for element in node.indexParams or () if element.expr is not None])
    columns += _column_names(node.whereClause)
    node.concurrent = True
    node.if_not_exists = True
    return ConcurrentIndex(_deparse(node), tuple(dict.fromkeys(columns)))
