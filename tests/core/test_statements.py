from __future__ import annotations

import pytest

from migrator.core.statements import Effect, Kind, ObjectRef, describe


def ref(kind: Kind, name: str) -> ObjectRef:
    return ObjectRef(kind, name)


@pytest.mark.parametrize(
    ("text", "effects"),
    [
        ("CREATE TABLE IF NOT EXISTS Foo (a INT);", [Effect(ref(Kind.TABLE, "foo"), True, conditional=True)]),
        ('CREATE TABLE "MixedCase" (a INT);', [Effect(ref(Kind.TABLE, "MixedCase"), True)]),
        ("CREATE UNIQUE INDEX cm_idx ON t (a);", [Effect(ref(Kind.INDEX, "cm_idx"), True)]),
        (
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix ON t (a);",
            [Effect(ref(Kind.INDEX, "ix"), True, conditional=True)],
        ),
        (
            "CREATE EXTENSION IF NOT EXISTS btree_gin;",
            [Effect(ref(Kind.EXTENSION, "btree_gin"), True, conditional=True)],
        ),
        ("CREATE EXTENSION btree_gin;", [Effect(ref(Kind.EXTENSION, "btree_gin"), True)]),
        (
            "CREATE FUNCTION convert_ts(s VARCHAR) RETURNS INT AS $$ BEGIN END $$ LANGUAGE plpgsql;",
            [Effect(ref(Kind.FUNCTION, "convert_ts"), True)],
        ),
        ("DROP TABLE a, public.b;", [Effect(ref(Kind.TABLE, "a"), False), Effect(ref(Kind.TABLE, "b"), False)]),
        ("DROP INDEX IF EXISTS by_x;", [Effect(ref(Kind.INDEX, "by_x"), False, conditional=True)]),
        ("ALTER TABLE cm DROP immutable_data;", [Effect(ref(Kind.COLUMN, "cm.immutable_data"), False)]),
        (
            "ALTER TABLE cm ADD data BYTEA NOT NULL DEFAULT '';",
            [Effect(ref(Kind.COLUMN, "cm.data"), True, not_null=True, has_default=True)],
        ),
        (
            "ALTER TABLE t ADD COLUMN a INT NULL, ADD COLUMN B JSONB GENERATED ALWAYS AS (x->'b') STORED;",
            [
                Effect(ref(Kind.COLUMN, "t.a"), True, not_null=False, has_default=False),
                Effect(ref(Kind.COLUMN, "t.b"), True, not_null=False, has_default=True),
            ],
        ),
        ("ALTER TABLE t ALTER COLUMN a TYPE VARCHAR(255);", []),
        ("ALTER TABLE t ALTER COLUMN a SET DEFAULT 0;", []),
        ("DO $$ BEGIN PERFORM 1; END $$;", []),
        (
            "ALTER TABLE t ADD COLUMN IF NOT EXISTS c INT;",
            [Effect(ref(Kind.COLUMN, "t.c"), True, not_null=False, has_default=False, conditional=True)],
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
    ],
)
def test_unknown_forms_are_flagged(text: str) -> None:
    assert not describe(text).recognised


def test_only_unconditional_effects_are_decisive() -> None:
    assert describe("CREATE TABLE t (a INT);").decisive
    assert not describe("CREATE TABLE IF NOT EXISTS t (a INT);").decisive
    assert not describe("DO $$ BEGIN CREATE EXTENSION btree_gin; END $$;").decisive
