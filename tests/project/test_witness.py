"""The live load's pure parts (devtools/witness.py): Temporal's statements, the rows it writes, the latency figures.

The comparison itself runs against a real table with a corrupted row in integration/test_online_rewrite.py.
"""

from __future__ import annotations

import json
import re

from psycopg import sql

from devtools.witness import (
    DB_FIELDS,
    delete_statement,
    figures,
    get_statement,
    insert_statement,
    list_statement,
    record_statement,
    relative,
    row_hash,
    search_attributes,
    upsert_statement,
    visibility_row,
)


def text(query: sql.Composable) -> str:
    return query.as_string(None)


def test_insert_is_temporals_do_nothing_with_every_field_in_order() -> None:
    query = text(insert_statement())
    columns = re.search(r"\(([^)]*)\) VALUES", query)
    assert columns is not None
    assert [c.strip().strip('"') for c in columns.group(1).split(",")] == list(DB_FIELDS)
    assert query.count("%s") == len(DB_FIELDS)
    assert query.endswith('ON CONFLICT ("namespace_id", "run_id") DO NOTHING')


def test_upsert_replaces_every_field_only_when_the_stored_version_is_older() -> None:
    query = text(upsert_statement())
    for name in DB_FIELDS:
        assert f'"{name}" = excluded."{name}"' in query
    assert query.endswith('WHERE "executions_visibility"."_version" < EXCLUDED."_version"')
    assert DB_FIELDS[-1] == "_version"  # Temporal keeps it last: MySQL assigns in order


def test_reads_and_delete_go_by_the_primary_key_or_the_list_order() -> None:
    key = '"namespace_id" = %s AND "run_id" = %s'
    assert text(delete_statement()) == f'DELETE FROM "executions_visibility" WHERE {key}'
    assert text(get_statement()).endswith(f"WHERE {key}")
    listed = text(list_statement())
    assert "ORDER BY COALESCE(close_time, '9999-12-31 23:59:59') DESC, start_time DESC, run_id LIMIT %s" in listed


def test_the_witness_row_follows_the_table_in_the_writes_transaction() -> None:
    query = text(record_statement(["namespace_id", "run_id", "memo"]))
    assert 'md5(ROW("namespace_id", "run_id", "memo")::text)' in query
    assert 'INSERT INTO "bench"."witness"' in query
    assert "ON CONFLICT" in query
    assert 'DELETE FROM "bench"."witness" w' in query
    assert "NOT EXISTS" in query
    assert query.count("%s") == 4  # the key twice: the row read back, the witness row removed


def test_row_hash_covers_exactly_the_given_columns() -> None:
    assert text(row_hash(["a", "b"])) == 'md5(ROW("a", "b")::text)'


def test_a_row_has_a_value_per_field_and_a_document_every_generated_column_can_read() -> None:
    row = visibility_row("ns", "run-1", version=7, n=4)
    assert len(row) == len(DB_FIELDS)
    assert row[0] == "ns"
    assert row[1] == "run-1"
    assert row[-1] == 7
    document = search_attributes(4)
    json.dumps(document)  # serialisable
    for name in ("TemporalDatetime01", "Datetime03", "TemporalScheduledStartTime"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", document[name])  # convert_ts reads RFC 3339
    for name in ("TemporalExternalPayloadSizeBytes", "TemporalExternalPayloadCount", "Int01", "TemporalInt02"):
        assert isinstance(document[name], int)
    assert search_attributes(4) == document
    assert search_attributes(5) != document


def test_figures_count_the_queries_started_in_the_window() -> None:
    samples = [(0.0, 5.0), (10.0, 0.01), (10.5, 2.0), (11.0, 0.02), (20.0, 9.0)]
    result = figures(samples, 10.0, 12.0)
    assert (result.queries, result.worst_s, result.over_1s, result.per_second) == (3, 2.0, 1, 1.5)
    assert result.p99_s == 0.02  # p99 of 3 samples is the second largest: the stall hides in it
    empty = figures(samples, 30.0, 31.0)
    assert (empty.queries, empty.worst_s, empty.p99_s, empty.over_1s) == (0, None, None, 0)


def test_relative_samples_are_seconds_since_the_origin_within_the_window() -> None:
    samples = [(100.0, 0.5), (101.5, 0.25), (103.0, 1.0)]
    assert relative(samples, 100.0, 100.0, 200.0) == [[0.0, 0.5], [1.5, 0.25], [3.0, 1.0]]
    assert relative(samples, 99.0, 101.0, 102.0) == [[2.5, 0.25]]
    assert relative(samples, 100.0, 104.0, 105.0) == []
