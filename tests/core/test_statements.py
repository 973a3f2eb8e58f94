from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from migrator.core.statements import (
    Effect,
    Kind,
    ObjectRef,
    Shape,
    body_hash,
    column_shape,
    concurrent_index,
    describe,
    normal_expression,
    normal_index,
    normal_type,
    shape,
)


def ref(kind: Kind, name: str) -> ObjectRef:
    return ObjectRef(kind, name)


def column(name: str, type_: str, not_null: bool = False, default: str = "", **flags: bool) -> Effect:
    return Effect(ref(Kind.COLUMN, name), True, shape(type=type_, not_null=str(not_null).lower(), default=default),
                  **flags)  # fmt: skip


def index(name: str, catalog: str, **flags: bool) -> Effect:
    """The index as ``pg_get_indexdef`` prints it."""
    return Effect(ref(Kind.INDEX, name), True, normal_index(catalog), **flags)


@pytest.mark.parametrize(
    ("text", "effects"),
    [
        (
            "CREATE TABLE IF NOT EXISTS Foo (a INT);",
            [Effect(ref(Kind.TABLE, "foo"), True, conditional=True), column("foo.a", "int4", conditional=True)],
        ),
        (
            "CREATE TABLE \"MixedCase\" (id BIGINT, k VARCHAR(16) DEFAULT '', PRIMARY KEY (id));",
            [
                Effect(ref(Kind.TABLE, "MixedCase"), True),
                column("MixedCase.id", "int8", not_null=True),
                column("MixedCase.k", "varchar(16)", default=normal_expression("''::character varying")),
            ],
        ),
        (
            "CREATE UNIQUE INDEX cm_idx ON t (a);",
            [index("cm_idx", "CREATE UNIQUE INDEX cm_idx ON public.t USING btree (a)")],
        ),
        (
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix ON public.t USING GIN (a jsonb_path_ops) WHERE b > 0;",
            [index("ix", "CREATE INDEX ix ON public.t USING gin (a jsonb_path_ops) WHERE (b > 0)", conditional=True)],
        ),
        (
            "CREATE EXTENSION IF NOT EXISTS btree_gin;",
            [Effect(ref(Kind.EXTENSION, "btree_gin"), True, conditional=True)],
        ),
        ("CREATE EXTENSION btree_gin;", [Effect(ref(Kind.EXTENSION, "btree_gin"), True)]),
        (
            "CREATE FUNCTION convert_ts(s VARCHAR) RETURNS INT AS $$ BEGIN END $$ LANGUAGE plpgsql;",
            [Effect(ref(Kind.FUNCTION, "convert_ts"), True, shape(body=body_hash(" BEGIN END ")))],
        ),
        (
            "CREATE OR REPLACE FUNCTION f() RETURNS INT AS $body$SELECT 2$body$ LANGUAGE sql;",
            [Effect(ref(Kind.FUNCTION, "f"), True, shape(body=body_hash("SELECT 2")), rerunnable=True)],
        ),
        ("DROP TABLE a, public.b;", [Effect(ref(Kind.TABLE, "a"), False), Effect(ref(Kind.TABLE, "b"), False)]),
        ("DROP INDEX IF EXISTS by_x;", [Effect(ref(Kind.INDEX, "by_x"), False, conditional=True)]),
        ("DROP FUNCTION f(int);", [Effect(ref(Kind.FUNCTION, "f"), False)]),
        ("ALTER TABLE cm DROP immutable_data;", [Effect(ref(Kind.COLUMN, "cm.immutable_data"), False)]),
        (
            "ALTER TABLE cm ADD data BYTEA NOT NULL DEFAULT '';",
            [column("cm.data", "bytea", not_null=True, default=normal_expression("'\\x'::bytea"))],
        ),
        (
            "ALTER TABLE t ADD COLUMN a INT NULL, ADD COLUMN B JSONB GENERATED ALWAYS AS (x->'b') STORED;",
            [column("t.a", "int4"), column("t.b", "jsonb", default="stored " + normal_expression("(x -> 'b'::text)"))],
        ),
        (
            "ALTER TABLE t ALTER COLUMN a TYPE VARCHAR(255);",
            [Effect(ref(Kind.COLUMN, "t.a"), True, shape(type="varchar(255)"), rerunnable=True, partial=True)],
        ),
        (
            "ALTER TABLE t ALTER COLUMN a SET DEFAULT 0, ALTER a DROP NOT NULL;",
            [
                Effect(
                    ref(Kind.COLUMN, "t.a"), True, shape(default=normal_expression("0")), rerunnable=True, partial=True
                ),
                Effect(ref(Kind.COLUMN, "t.a"), True, shape(not_null="false"), rerunnable=True, partial=True),
            ],
        ),
        ("DO $$ BEGIN PERFORM 1; END $$;", []),
        (
            "ALTER TABLE t ADD COLUMN IF NOT EXISTS c INT;",
            [column("t.c", "int4", conditional=True)],
        ),
        (
            "DO LANGUAGE 'plpgsql' $$ BEGIN IF (NOT EXISTS (SELECT 1)) THEN CREATE EXTENSION btree_gin; END IF; END $$",
            [Effect(ref(Kind.EXTENSION, "btree_gin"), True, conditional=True)],
        ),
    ],
)
def test_effects(text: str, effects: list[Effect]) -> None:
    statement = describe(text)
    assert statement.recognised
    assert list(statement.effects) == effects


def test_insert_becomes_a_row_probe() -> None:
    statement = describe("INSERT INTO namespace_metadata (partition_id, notification_version) VALUES (54321, 1);")
    assert statement.probe is not None
    assert statement.probe.table == "namespace_metadata"
    assert statement.probe.columns == ("partition_id", "notification_version")
    assert statement.probe.values_sql == "(54321, 1)"
    assert [effect.ref.kind for effect in statement.effects] == [Kind.ROW]


@pytest.mark.parametrize(
    "text",
    [
        "UPDATE t SET a = 1;",
        "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0);",
        "ALTER TABLE t RENAME TO u;",
        "CREATE TYPE mood AS ENUM ('a');",
        "CREATE INDEX ON t (a);",  # PostgreSQL picks the name
        "CREATE TABLE (;",  # the parser rejects it
    ],
)
def test_unknown_forms_are_flagged(text: str) -> None:
    assert not describe(text).recognised


def test_only_decisive_effects_decide() -> None:
    assert describe("CREATE TABLE t (a INT);").decisive
    assert not describe("CREATE TABLE IF NOT EXISTS t (a INT);").decisive
    assert not describe("DO $$ BEGIN CREATE EXTENSION btree_gin; END $$;").decisive
    assert not describe("CREATE OR REPLACE FUNCTION f() RETURNS INT AS 'SELECT 1' LANGUAGE sql;").decisive
    assert not describe("ALTER TABLE t ALTER COLUMN a TYPE TEXT;").decisive


# What PostgreSQL 15 prints for the vendor's statements (pg_get_indexdef, format_type, pg_get_expr), copied
# from a clean install: the same definition must compare equal however it was spelled.
@pytest.mark.parametrize(
    ("statement", "catalog"),
    [
        (
            "CREATE INDEX by_status ON executions_visibility (namespace_id, status, "
            "(COALESCE(close_time, '9999-12-31 23:59:59')) DESC, start_time DESC, run_id);",
            "CREATE INDEX by_status ON public.executions_visibility USING btree (namespace_id, status, "
            "COALESCE(close_time, '9999-12-31 23:59:59'::timestamp without time zone) DESC, start_time DESC, run_id)",
        ),
        (
            "CREATE INDEX by_binary_checksums ON executions_visibility USING GIN (namespace_id, BinaryChecksums "
            "jsonb_path_ops);",
            "CREATE INDEX by_binary_checksums ON temporal.executions_visibility USING gin (namespace_id, "
            "binarychecksums jsonb_path_ops)",
        ),
        (
            "CREATE UNIQUE INDEX u ON t (a ASC NULLS LAST, (lower(b))) WHERE c = 'x';",
            "CREATE UNIQUE INDEX u ON public.t USING btree (a, lower((b)::text)) WHERE ((c)::text = 'x'::text)",
        ),
    ],
)
def test_an_index_compares_equal_to_what_the_catalog_prints_for_it(statement: str, catalog: str) -> None:
    (effect,) = describe(statement).effects
    assert effect.shape == normal_index(catalog)


@pytest.mark.parametrize(
    ("statement", "catalog"),
    [
        ("CREATE INDEX ix ON t (a, b);", "CREATE INDEX ix ON public.t USING btree (a)"),
        ("CREATE INDEX ix ON t (a);", "CREATE UNIQUE INDEX ix ON public.t USING btree (a)"),
        ("CREATE INDEX ix ON t (a);", "CREATE INDEX ix ON public.t USING btree (a) WHERE (a > 0)"),
        ("CREATE INDEX ix ON t (a);", "CREATE INDEX ix ON public.t USING hash (a)"),
        ("CREATE INDEX ix ON t (a);", "CREATE INDEX ix ON public.u USING btree (a)"),
        ("CREATE INDEX ix ON t (a DESC);", "CREATE INDEX ix ON public.t USING btree (a)"),
    ],
)
def test_an_index_with_another_definition_compares_different(statement: str, catalog: str) -> None:
    (effect,) = describe(statement).effects
    assert effect.shape != normal_index(catalog)


@pytest.mark.parametrize(
    ("statement", "catalog"),
    [
        ("ALTER TABLE t ADD c VARCHAR(16) NOT NULL DEFAULT '';",
         ("character varying(16)", True, "''::character varying")),
        ("ALTER TABLE t ADD c BIGINT NOT NULL DEFAULT -1;", ("bigint", True, "'-1'::integer")),
        ("ALTER TABLE t ADD c TIMESTAMP DEFAULT '1970-01-01 00:00:01+00:00';",
         ("timestamp without time zone", False, "'1970-01-01 00:00:01'::timestamp without time zone")),
        ("ALTER TABLE t ADD c DECIMAL(20, 5) GENERATED ALWAYS AS ((doc->'D')::decimal) STORED;",
         ("numeric(20,5)", False, "((doc -> 'D'::text))::numeric")),
        ("ALTER TABLE t ADD c BYTEA NULL DEFAULT NULL;", ("bytea", False, None)),
    ],
)  # fmt: skip
def test_a_column_compares_equal_to_what_the_catalog_prints_for_it(
    statement: str, catalog: tuple[str, bool, str | None]
) -> None:
    (effect,) = describe(statement).effects
    type_text, not_null, default = catalog
    generated = "GENERATED" in statement
    assert effect.shape == column_shape(type_text, not_null, default, generated)


def test_types_and_expressions_are_normalised_once() -> None:
    assert normal_type("character varying(255)") == normal_type("VARCHAR(255)") == "varchar(255)"
    assert normal_type("timestamp without time zone") == "timestamp"
    assert normal_type("integer") != normal_type("bigint")
    assert normal_expression("''::character varying") == normal_expression("''")
    assert normal_expression("'\\x'::bytea") == normal_expression("''")  # literals are reprinted by their type
    assert normal_expression("lower((name)::text)") != normal_expression("upper(name)")


def _shape_of(text: str) -> Shape:
    (effect,) = describe(text).effects
    return effect.shape


def test_a_function_body_is_told_apart() -> None:
    one = _shape_of("CREATE OR REPLACE FUNCTION f() RETURNS INT AS $$ SELECT 1 $$ LANGUAGE sql;")
    two = _shape_of("CREATE OR REPLACE FUNCTION f() RETURNS INT AS $$ SELECT 2 $$ LANGUAGE sql;")
    assert one != two
    assert one == shape(body=body_hash(" SELECT 1 "))


def test_the_parser_is_loaded_only_when_a_statement_is_described() -> None:
    probe = (
        "import sys, migrator.cli.main, migrator.core.statements, migrator.core.planner, migrator.core.verify, "
        "migrator.db.catalog; assert 'pglast' not in sys.modules; "
        "migrator.core.statements.describe('SELECT 1'); assert 'pglast' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=Path(__file__).parents[2])


def test_a_plain_create_index_becomes_concurrent_with_the_columns_it_reads() -> None:
    derived = concurrent_index(
        "CREATE INDEX by_x ON executions_visibility USING btree (namespace_id, (COALESCE(close_time, "
        "'9999-12-31 23:59:59')) DESC, run_id) WHERE status <> 1;"
    )
    assert derived is not None
    assert derived.text.startswith("CREATE INDEX CONCURRENTLY IF NOT EXISTS by_x ON executions_visibility")
    assert derived.columns == ("namespace_id", "run_id", "close_time", "status")
    assert normal_index(derived.text) == normal_index("CREATE INDEX by_x ON executions_visibility USING btree "
                                                      "(namespace_id, (COALESCE(close_time, '9999-12-31 23:59:59')) "
                                                      "DESC, run_id) WHERE status <> 1")  # fmt: skip
    unique = concurrent_index("CREATE UNIQUE INDEX u ON t USING gin (a jsonb_path_ops)")
    assert unique is not None
    assert unique.text == "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS u ON t USING gin (a jsonb_path_ops)"


@pytest.mark.parametrize("text", ["CREATE INDEX ON t (a)", "ALTER TABLE t ADD COLUMN a INT", "CREATE INDEX (", ""])
def test_only_a_named_create_index_is_made_concurrent(text: str) -> None:
    assert concurrent_index(text) is None
