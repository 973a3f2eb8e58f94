"""Every upgrade path: both stores installed with the tree of each older release we support (TEMPORAL_UPGRADE_FROM; by
its own tool for TEMPORAL_UPGRADE_OWN_TOOL, else by the pinned one, which installs those trees exactly as their own
tools do: integration/tool_equivalence.py), to its newest version or stopped at an intermediate one, or crashed in
the middle of a version under that older tree; then ``migrate`` with the pinned release (TEMPORAL_VERSION). The
result must equal a clean install of the pinned release by its bare tool: schema dump, seed rows, the versions
recorded in ``schema_update_history`` (each once, in order), no INVALID index. Releases that ship one version number
with different statements (visibility 1.14 of v1.31.2 and v1.32.2; v1.10-v1.12 of v1.30.4, emptied since v1.30.5)
are crossed on these paths."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from devtools.databases import AppDb, MakeDb
from devtools.pins import Store, read_pins, upgrade_sources
from devtools.supported import supported_releases
from integration.support.crashpoints import interrupt_update, middle_point, seed_rows
from integration.support.plugin import ReleaseFiles
from integration.support.processes import RunMigrator, StartMigrator, bring_to, events_named
from integration.support.scenarios import TARGETS, Reference, clean_install
from migrator.source.tree import load_vendor_schema

# No run of the cross-release migration may take longer than this; a hang (a waiter's snapshot blocking the
# holder's CREATE INDEX CONCURRENTLY) would.
BOUNDED_SECONDS = 120
STORES: tuple[Store, ...] = ("temporal", "visibility")
# Intermediate stops worth their own path: v1.30.4's per-version visibility rewrites (v1.10, v1.11, v1.12), whose
# directories the pinned tree keeps as empty version bumps.
STOPS: dict[str, dict[Store, tuple[str, ...]]] = {"v1.30.4": {"visibility": ("1.10", "1.11", "1.12")}}


_references: dict[Store, Reference] = {}


def reference(make_db: MakeDb, store: Store) -> Reference:
    """The pinned release's clean install of ``store`` (once per store and worker)."""
    if store not in _references:
        clean = make_db()
        assert clean.tool is not None
        assert clean.schema_dir is not None
        _references[store] = clean_install(clean.tool, clean, clean.schema_dir, store)
        assert clean.version_rows() == [(clean.name, TARGETS[store])]
    return _references[store]


def assert_equals_clean_install(db: AppDb, make_db: MakeDb, store: Store) -> None:
    expected = reference(make_db, store)
    assert db.version_rows() == [(db.name, TARGETS[store])]
    assert [new for _, new in db.history()] == expected.versions  # each version once, in order
    assert db.schema_dump() == expected.dump
    assert db.invalid_indexes() == []
    with db.server.admin_connect(db.name) as conn:
        assert seed_rows(conn, list(expected.seeds)) == expected.seeds


def newest(schema_dir: Path, store: Store) -> str:
    return load_vendor_schema(schema_dir, store).newest.name


def paths() -> list[Any]:
    """(source release, store, version the source's tool stops at: None = its newest)."""
    found: list[Any] = []
    for release in upgrade_sources():
        for store in STORES:
            for stop in (None, *STOPS.get(release, {}).get(store, ())):
                found.append(pytest.param(release, store, stop, id=f"{release}-{store}-{stop or 'newest'}"))
    return found


def test_the_readme_table_states_each_release_s_schema_versions(schema_dir: Path, release_files: ReleaseFiles) -> None:
    trees = {read_pins()["TEMPORAL_VERSION"]: schema_dir}
    trees.update({release: release_files(release)[1] for release in upgrade_sources()})
    stated = {release: (row["default store"], row["visibility store"]) for release, row in supported_releases().items()}
    assert stated == {
        release: (newest(tree, "temporal"), newest(tree, "visibility")) for release, tree in trees.items()
    }
    assert stated[read_pins()["TEMPORAL_VERSION"]] == (TARGETS["temporal"], TARGETS["visibility"])


@pytest.mark.parametrize(("release", "store", "stop"), paths())
def test_upgrade_path_matches_a_clean_install(
    release: str,
    store: Store,
    stop: str | None,
    app_db: AppDb,
    make_db: MakeDb,
    run_migrator: RunMigrator,
    release_files: ReleaseFiles,
) -> None:
    tool, schema_dir = release_files(release)
    bring_to(tool, app_db, schema_dir, store, stop)
    assert app_db.version_rows() == [(app_db.name, stop or newest(schema_dir, store))]

    upgraded = run_migrator(app_db, "migrate", "--schema", store)

    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    assert_equals_clean_install(app_db, make_db, store)


@pytest.mark.parametrize("release", upgrade_sources())
@pytest.mark.parametrize("store", STORES)
def test_crash_under_a_source_tree_then_migrate_matches_a_clean_install(
    store: Store,
    release: str,
    app_db: AppDb,
    make_db: MakeDb,
    run_migrator: RunMigrator,
    release_files: ReleaseFiles,
) -> None:
    tool, schema_dir = release_files(release)
    point = middle_point(schema_dir, store, newest(schema_dir, store))  # the newest version of the older tree
    bring_to(tool, app_db, schema_dir, store, point.previous)
    crashed, seen = interrupt_update(tool, app_db, schema_dir, point)
    assert crashed.returncode == 1, f"{release}: the tool was not interrupted at {point.describe_failure()}"
    assert seen == point.applied_ddl()
    assert app_db.version_rows() == [(app_db.name, point.previous)]

    repaired = run_migrator(app_db, "migrate", "--schema", store)

    assert repaired.returncode == 0, f"{release} {point.id}: {repaired.stderr[-3000:]}"
    assert_equals_clean_install(app_db, make_db, store)


def test_concurrent_migrations_through_create_index_concurrently_do_not_hang(
    app_db: AppDb, start_migrator: StartMigrator, release_files: ReleaseFiles
) -> None:
    """Waiters poll the lock while the holder runs visibility versions that build indexes concurrently."""
    tool, schema_dir = release_files(upgrade_sources()[0])
    bring_to(tool, app_db, schema_dir, "visibility", None)
    started = time.monotonic()
    processes = [start_migrator(app_db, "migrate", "--schema", "visibility") for _ in range(3)]
    results: list[tuple[str, str]] = []
    for process in processes:
        remaining = max(1.0, BOUNDED_SECONDS - (time.monotonic() - started))
        try:
            results.append(process.communicate(timeout=remaining))
        except subprocess.TimeoutExpired:
            pytest.fail(f"a migrator was still running after {BOUNDED_SECONDS}s (hang on the lock or the index build)")
    codes = [process.returncode for process in processes]
    assert codes == [0, 0, 0], [stderr[-1500:] for _, stderr in results]
    assert app_db.version_rows() == [(app_db.name, TARGETS["visibility"])]
    assert app_db.invalid_indexes() == []
    runners = [stderr for _, stderr in results if events_named(stderr, "tool.started")]
    assert len(runners) == 1
    others = [stderr for _, stderr in results if stderr not in runners]
    assert all(
        events_named(stderr, "lock.waiting") or events_named(stderr, "migrate.done")[0]["steps"] == []
        for stderr in others
    )
