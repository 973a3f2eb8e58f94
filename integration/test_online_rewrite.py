"""Online rewrites under a live Temporal-like load, checked by a transactional witness (devtools/witness.py).

- The witness itself: a table compared with it after live writes is identical; a row changed, removed or added
  behind its back, or a generated column that no longer equals its expression, is found.
"""

from __future__ import annotations

import time

import pytest

from devtools.data import fill
from devtools.databases import AppDb, MakeDb
from devtools.witness import Load, compare
from integration.support.plugin import ReleaseFiles
from integration.support.processes import bring_to

SOURCE_RELEASE = "v1.29.1"  # visibility 1.9, installed by its own tool (pins.env TEMPORAL_UPGRADE_OWN_TOOL)
SOURCE_VERSION = "1.9"
ROWS = 3_000


def visibility_at(make_db: MakeDb, release_files: ReleaseFiles, release: str, version: str, rows: int) -> AppDb:
    """A visibility store at ``version`` of ``release``'s tree, installed by the tool that installs it, with rows."""
    tool, schema = release_files(release)
    db = make_db()
    bring_to(tool, db, schema, "visibility", version)
    with db.connect() as conn:
        fill(conn, "executions_visibility", rows)
    return db


def run_load(db: AppDb, seconds: float) -> Load:
    load = Load(db.connect)
    with load:
        time.sleep(seconds)
    return load


@pytest.mark.portable
def test_the_witness_finds_a_row_changed_lost_or_resurrected_behind_its_back(
    make_db: MakeDb, release_files: ReleaseFiles
) -> None:
    db = visibility_at(make_db, release_files, SOURCE_RELEASE, SOURCE_VERSION, ROWS)
    load = run_load(db, 3)
    assert load.errors == []
    assert load.writes >= 20, load.writes
    with db.connect() as conn:
        clean = compare(conn, load.columns)
        assert clean.identical, clean.summary()
        assert clean.table_rows == clean.witness_rows >= ROWS // 2
        namespace, run_id = conn.execute(
            "SELECT namespace_id, run_id FROM executions_visibility ORDER BY run_id LIMIT 1"
        ).fetchone() or ("", "")
        conn.execute(
            "UPDATE executions_visibility SET memo = 'changed' WHERE namespace_id = %s AND run_id = %s",
            (namespace, run_id),
        )
        changed = compare(conn, load.columns)
        assert not changed.identical
        assert (changed.table_rows, changed.differing) == (clean.table_rows, 1)
        assert changed.examples == ((namespace.rstrip(), run_id.rstrip()),)
        assert changed.table_md5 != changed.witness_md5
        conn.execute("DELETE FROM executions_visibility WHERE namespace_id = %s AND run_id = %s", (namespace, run_id))
        lost = compare(conn, load.columns)
        assert (lost.table_rows, lost.witness_rows, lost.differing) == (clean.table_rows - 1, clean.table_rows, 1)
        conn.execute("DELETE FROM bench.witness WHERE namespace_id = %s AND run_id = %s", (namespace, run_id))
        assert compare(conn, load.columns).identical
        conn.execute("DELETE FROM bench.witness WHERE run_id = (SELECT max(run_id) FROM bench.witness)")
        resurrected = compare(conn, load.columns)
        assert (resurrected.differing, resurrected.table_rows - resurrected.witness_rows) == (1, 1)


@pytest.mark.portable
def test_the_witness_finds_a_generated_column_that_is_not_its_expression(
    make_db: MakeDb, release_files: ReleaseFiles
) -> None:
    db = visibility_at(make_db, release_files, SOURCE_RELEASE, SOURCE_VERSION, 200)
    load = run_load(db, 2)
    with db.connect() as conn:
        assert compare(conn, load.columns).generated == {}
        stamped = conn.execute(
            "SELECT count(*) FROM executions_visibility WHERE temporalscheduledstarttime IS NOT NULL"
        ).fetchone()
        assert stamped is not None
        assert stamped[0] > 0, "the load writes TemporalScheduledStartTime"
        # convert_ts, declared IMMUTABLE, redefined: the stored values no longer equal the expression's
        with conn.transaction(force_rollback=True):
            conn.execute(
                "CREATE OR REPLACE FUNCTION convert_ts(s varchar) RETURNS timestamp AS $$ BEGIN"
                " RETURN s::timestamptz AT TIME ZONE 'UTC' + interval '1 hour'; END $$"
                " LANGUAGE plpgsql IMMUTABLE RETURNS NULL ON NULL INPUT"
            )
            wrong = compare(conn, load.columns)
        assert compare(conn, load.columns).identical
    assert wrong.generated.get("temporalscheduledstarttime") == stamped[0], wrong.summary()
    assert not wrong.identical
