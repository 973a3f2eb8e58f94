"""The online rewrite's SQL, generated from a table description (no database: the text itself is checked; the
integration tests in integration/test_online_engine.py run it)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from migrator.core.online import Phase
from migrator.core.shadow import (
    Backlog,
    Column,
    Grant,
    Index,
    Publication,
    TableShape,
    copy_batch,
    digest,
    finish_statements,
    index_statements,
    judge_backlog,
    key_statements,
    quote_literal,
    remove_statements,
    replay_bound,
    replay_statements,
    setup_statements,
    shadow_statements,
    swap_backlog,
    swap_lock_timeout,
    swap_statements,
    trigger_statements,
)
from migrator.core.statements import ShadowUse, for_shadow, retarget_index

SHAPE = TableShape(
    schema="public",
    name="visits",
    owner="temporal",
    columns=(
        Column(1, "namespace_id", "character(64)", not_null=True),
        Column(2, "run_id", "character(64)", not_null=True),
        Column(3, "gone", "", dropped=True, placeholder=(-1, "i")),
        Column(4, "doc", "jsonb", storage="m", compression="l", statistics=500, options=("n_distinct=8",)),
        Column(5, "flag", "boolean", generated="(doc -> 'Flag'::text)::boolean"),
        Column(6, "note", "text", collation='pg_catalog."C"', default="''::text", comment="it's a note"),
        Column(7, "version", "bigint", not_null=True, default="0", grants=(Grant("reader", "UPDATE", False),)),
    ),
    primary_key=("namespace_id", "run_id"),
    key_types=("character(64)", "character(64)"),
    primary_constraint="visits_pkey",
    primary_definition="PRIMARY KEY (namespace_id, run_id)",
    reloptions=("fillfactor=90",),
    toast_options=("autovacuum_enabled=off",),
    acl=(Grant("temporal", "SELECT", False), Grant("PUBLIC", "SELECT", True)),
    comment="visits",
    indexes=(
        Index("by_doc", "CREATE INDEX by_doc ON public.visits USING gin (doc)", comment="gin", clustered=True),
        Index("by_note", "CREATE UNIQUE INDEX by_note ON public.visits USING btree (note)", replica_identity=True),
    ),
    replica_identity="i",
    publications=(Publication("feed", ("namespace_id", "run_id", "doc"), "(namespace_id <> ''::bpchar)"),),
)
WORK = '"temporal_migrator_online"'


def test_the_shadow_has_every_attnum_with_holes_and_the_columns_extras() -> None:
    statements = shadow_statements(SHAPE)
    create = statements[0]
    assert create.startswith(f'CREATE TABLE {WORK}."visits" (')
    assert create.endswith(") WITH (fillfactor = '90')")
    lines = create.splitlines()[1:-1]
    assert [line.strip().rstrip(",") for line in lines] == [
        '"namespace_id" character(64) NOT NULL',
        '"run_id" character(64) NOT NULL',
        '"temporal_migrator_dropped_3" text',
        '"doc" jsonb',
        "\"flag\" boolean GENERATED ALWAYS AS ((doc -> 'Flag'::text)::boolean) STORED",
        '"note" text COLLATE pg_catalog."C" DEFAULT \'\'::text',
        '"version" bigint DEFAULT 0 NOT NULL',
    ]
    after = statements[1:]
    assert after[0] == f'ALTER TABLE {WORK}."visits" DROP COLUMN "temporal_migrator_dropped_3"'
    assert after[1] == f"ALTER TABLE {WORK}.\"visits\" SET (toast.autovacuum_enabled = 'off')"
    assert f'ALTER TABLE {WORK}."visits" ALTER COLUMN "doc" SET STORAGE MAIN' in after
    assert f'ALTER TABLE {WORK}."visits" ALTER COLUMN "doc" SET COMPRESSION lz4' in after
    assert f'ALTER TABLE {WORK}."visits" ALTER COLUMN "doc" SET STATISTICS 500' in after
    assert f'ALTER TABLE {WORK}."visits" ALTER COLUMN "doc" SET (n_distinct = \'8\')' in after
    assert f'ALTER TABLE {WORK}."visits" OWNER TO "temporal"' in after
    assert f"COMMENT ON COLUMN {WORK}.\"visits\".\"note\" IS 'it''s a note'" in after
    assert f"COMMENT ON TABLE {WORK}.\"visits\" IS 'visits'" in after


def test_an_explicit_acl_is_rebuilt_from_the_owners_revoked_defaults() -> None:
    grants = [statement for statement in shadow_statements(SHAPE) if "GRANT" in statement or "REVOKE" in statement]
    assert grants == [
        f'REVOKE ALL ON TABLE {WORK}."visits" FROM "temporal"',
        f'GRANT SELECT ON TABLE {WORK}."visits" TO "temporal"',
        f'GRANT SELECT ON TABLE {WORK}."visits" TO PUBLIC WITH GRANT OPTION',
        f'GRANT UPDATE ("version") ON TABLE {WORK}."visits" TO "reader"',
    ]
    default = [s for s in shadow_statements(replace(SHAPE, acl=None)) if s.startswith("REVOKE")]
    assert default == []  # relacl NULL: the owner's defaults, nothing to write


def test_a_dropped_column_of_a_width_without_placeholder_is_refused() -> None:
    with pytest.raises(ValueError, match="no placeholder type"):
        Column(3, "x", "", dropped=True, placeholder=(6, "s")).definition()


def test_the_key_then_indexes_then_what_names_an_index() -> None:
    assert key_statements(SHAPE) == [
        f'ALTER TABLE {WORK}."visits" ADD CONSTRAINT "visits_pkey" PRIMARY KEY (namespace_id, run_id)'
    ]
    assert index_statements(SHAPE.indexes[0], "CREATE INDEX by_doc ON w.visits (doc)") == [
        "CREATE INDEX by_doc ON w.visits (doc)",
        f"COMMENT ON INDEX {WORK}.\"by_doc\" IS 'gin'",
    ]
    assert finish_statements(SHAPE) == [
        f'ALTER TABLE {WORK}."visits" CLUSTER ON "by_doc"',
        f'ALTER TABLE {WORK}."visits" REPLICA IDENTITY USING INDEX "by_note"',
    ]
    on_key = replace(SHAPE, indexes=(), primary_replica_identity=True, primary_clustered=True)
    assert finish_statements(on_key) == [
        f'ALTER TABLE {WORK}."visits" CLUSTER ON "visits_pkey"',
        f'ALTER TABLE {WORK}."visits" REPLICA IDENTITY USING INDEX "visits_pkey"',
    ]
    assert finish_statements(replace(SHAPE, indexes=(), replica_identity="f")) == [
        f'ALTER TABLE {WORK}."visits" REPLICA IDENTITY FULL'
    ]
    assert finish_statements(replace(SHAPE, indexes=(), replica_identity="d")) == []


def test_the_log_keeps_the_keys_exact_types_and_the_trigger_cannot_be_bypassed() -> None:
    setup = setup_statements(SHAPE, ("1.13", "1.14"), "abc")
    assert setup[:2] == [f"CREATE SCHEMA {WORK}", 'CREATE SCHEMA "temporal_migrator_retired"']
    log = next(statement for statement in setup if "CREATE TABLE" in statement and '."log"' in statement)
    assert '"namespace_id" character(64) NOT NULL, "run_id" character(64) NOT NULL' in log
    state = "\n".join(setup[2:4])
    assert "table_name text" in state
    assert "versions text[]" in state
    assert "phase text" in state
    assert "'visits', ARRAY['1.13', '1.14']::text[], 'capture', 'public', 'abc'" in state
    capture = next(statement for statement in setup if 'temporal_migrator_capture"()' in statement)
    assert "SECURITY DEFINER SET search_path = pg_catalog, pg_temp" in capture
    assert '(OLD."namespace_id", OLD."run_id")' in capture
    assert '(NEW."namespace_id", NEW."run_id")' in capture
    triggers = trigger_statements(SHAPE)
    assert 'AFTER INSERT OR UPDATE OR DELETE ON "public"."visits" FOR EACH ROW' in triggers[0]
    assert "BEFORE TRUNCATE" in triggers[1]
    assert [t.split(" ENABLE ")[1] for t in triggers[2:]] == [
        'ALWAYS TRIGGER "temporal_migrator_capture"',
        'ALWAYS TRIGGER "temporal_migrator_no_truncate"',
    ]


def test_the_copy_resumes_after_the_committed_key_at_its_exact_types() -> None:
    first, later = copy_batch(SHAPE, first=True, rows=100), copy_batch(SHAPE, first=False, rows=100)
    copied = '"namespace_id", "run_id", "doc", "note", "version"'  # no generated column, no hole
    assert f'SELECT {copied} FROM "public"."visits" ORDER BY "namespace_id", "run_id" LIMIT 100' in first
    assert "resume_key[1]" not in first
    assert (
        '("namespace_id", "run_id") > (SELECT (resume_key[1])::character(64), (resume_key[2])::character(64) '
        f'FROM {WORK}."state")'
    ) in later
    assert "ON CONFLICT DO NOTHING" in later
    assert "rows_copied = rows_copied + " in later


def test_the_replay_resyncs_each_logged_key_from_the_live_row() -> None:
    delete, insert, forget = replay_statements(SHAPE)
    assert delete.startswith(f'DELETE FROM {WORK}."visits" AS s USING {WORK}."log" AS l')
    assert 's."namespace_id" = l."namespace_id" AND s."run_id" = l."run_id"' in delete
    assert insert.startswith(f'INSERT INTO {WORK}."visits" ("namespace_id", "run_id", "doc", "note", "version") ')
    assert 'FROM "public"."visits" WHERE ("namespace_id", "run_id") IN' in insert
    assert forget == f'DELETE FROM {WORK}."log" WHERE "temporal_migrator_seq" <= %s'
    assert all(statement.count("%s") == 1 for statement in (delete, insert, forget))
    assert "LIMIT 50" in replay_bound(50)
    assert "LIMIT" not in replay_bound(None)


def test_the_swap_drops_the_triggers_exchanges_the_tables_and_lists_the_new_one() -> None:
    assert swap_statements(SHAPE) == [
        f'ALTER TABLE {WORK}."visits" RESET (autovacuum_enabled, fillfactor)',
        f"ALTER TABLE {WORK}.\"visits\" SET (fillfactor = '90')",
        'DROP TRIGGER "temporal_migrator_capture" ON "public"."visits"',
        'DROP TRIGGER "temporal_migrator_no_truncate" ON "public"."visits"',
        'ALTER TABLE "public"."visits" SET SCHEMA "temporal_migrator_retired"',
        f'ALTER TABLE {WORK}."visits" SET SCHEMA "public"',
        'ALTER PUBLICATION "feed" ADD TABLE "public"."visits" ("namespace_id", "run_id", "doc") '
        "WHERE ((namespace_id <> ''::bpchar))",
        f"UPDATE {WORK}.\"state\" SET phase = '{Phase.CLEANUP.value}'",
    ]


def test_the_shadow_runs_without_autovacuum_until_the_swap_restores_the_live_tables_options() -> None:
    assert f'ALTER TABLE {WORK}."visits" SET (autovacuum_enabled = false)' in shadow_statements(SHAPE)
    plain = swap_statements(replace(SHAPE, reloptions=()))
    assert plain[0] == f'ALTER TABLE {WORK}."visits" RESET (autovacuum_enabled)'
    assert "SET (" not in plain[1]


def test_removal_drops_the_triggers_before_their_log_and_leaves_nothing() -> None:
    aborted = remove_statements("public", "visits", retired=False)
    assert aborted[:2] == [
        'DROP TRIGGER IF EXISTS "temporal_migrator_capture" ON "public"."visits"',
        'DROP TRIGGER IF EXISTS "temporal_migrator_no_truncate" ON "public"."visits"',
    ]
    assert aborted[2] == f'DROP TABLE IF EXISTS {WORK}."visits"'
    assert aborted.index(f'DROP TABLE IF EXISTS {WORK}."log"') > 1
    assert aborted[-2:] == [f"DROP SCHEMA IF EXISTS {WORK}", 'DROP SCHEMA IF EXISTS "temporal_migrator_retired"']
    cleaned = remove_statements("public", "visits", retired=True)
    assert cleaned[0] == 'DROP TABLE IF EXISTS "temporal_migrator_retired"."visits"'
    assert not any('"public"' in statement for statement in cleaned)  # the live table is not touched


@pytest.mark.parametrize(
    ("history", "verdict"),
    [
        ((5000, 3000, 150), Backlog.SWAP),
        ((5000,), Backlog.CONTINUE),
        ((5000, 4000, 4100, 4200), Backlog.CONTINUE),  # within patience
        ((4000, 4000, 4100, 4200, 4300), Backlog.DIVERGING),
        ((4000, 5000, 3999, 6000, 7000), Backlog.CONTINUE),  # a new low inside the window
    ],
)
def test_the_backlog_decides_swap_continue_or_give_up(history: tuple[int, ...], verdict: Backlog) -> None:
    assert judge_backlog(history, small=200, patience=3) is verdict


def test_the_swap_waits_half_the_tolerated_stall_at_most() -> None:
    assert swap_lock_timeout(5, 1.0) == 0.5
    assert swap_lock_timeout(0.2, 1.0) == 0.2
    assert swap_lock_timeout(0, 3.0) == 1.5  # --ddl-lock-timeout 0: no limit of its own


def test_the_swap_leaves_its_lock_what_the_measured_replay_rate_does_in_half_the_budget() -> None:
    assert swap_backlog(400.0, 0.5) == 100
    assert swap_backlog(0.0, 0.5) == 10  # nothing measured yet
    assert swap_backlog(400.0, -0.1) == 10  # a lock wait longer than the stall: the minimum


def test_a_resume_with_other_statements_is_told_apart() -> None:
    assert digest(("a", "b")) != digest(("ab",)) != digest(("a", "c"))
    assert digest(("a", "b")) == digest(("a", "b"))


def test_quote_literal_doubles_quotes() -> None:
    assert quote_literal("it's") == "'it''s'"


def test_vendor_statements_for_the_shadow() -> None:
    alter = "ALTER TABLE visits ADD COLUMN IF NOT EXISTS x bigint GENERATED ALWAYS AS ((doc->'X')::bigint) STORED"
    assert for_shadow(alter, "w") == (ShadowUse.TABLE, alter)  # verbatim: the search_path finds the shadow
    use, text = for_shadow("CREATE INDEX CONCURRENTLY IF NOT EXISTS by_x ON visits (namespace_id, x)", "w")
    assert (use, text) == (ShadowUse.INDEX, "CREATE INDEX IF NOT EXISTS by_x ON w.visits (namespace_id, x)")
    assert for_shadow("DROP INDEX CONCURRENTLY IF EXISTS by_x", "w") == (ShadowUse.INDEX, "DROP INDEX IF EXISTS w.by_x")
    assert for_shadow("DO $$ BEGIN END $$", "w")[0] is ShadowUse.SKIP
    with pytest.raises(ValueError, match="cannot apply to a shadow"):
        for_shadow("UPDATE visits SET x = 1", "w")


def test_an_existing_index_is_retargeted_to_the_shadow() -> None:
    definition = (
        "CREATE INDEX by_close ON public.visits USING btree (namespace_id, "
        "COALESCE(close_time, '9999-12-31 23:59:59'::timestamp without time zone) DESC, run_id) WHERE (x IS NULL)"
    )
    assert retarget_index(definition, "w") == (
        "CREATE INDEX by_close ON w.visits (namespace_id, (COALESCE(close_time, "
        "CAST('9999-12-31 23:59:59' AS timestamp))) DESC, run_id) WHERE x IS NULL"
    )
