"""Upgrade across releases: both stores installed by the migrator with the pinned release's tool and tree
(TEMPORAL_VERSION), then migrated with the next release's own tool build and tree (TEMPORAL_NEXT_VERSION,
whose visibility versions use ``CREATE INDEX CONCURRENTLY`` and DO blocks). The result must equal a clean
install of the next release by its bare tool, and the migrator must understand every statement of that tree
exactly as the next tool splits it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from integration.databases import AppDb, MakeDb
from integration.harness import Store, versioned_dir
from integration.processes import RunMigrator, StartMigrator, events_named
from integration.scenarios import TARGETS, reference_dump
from migrator.versions import parse_version

# Schema versions of the release pinned as TEMPORAL_NEXT_VERSION (v1.31.x).
NEXT_TARGETS: dict[Store, str] = {"temporal": "1.19", "visibility": "1.14"}
# No run of the cross-release migration may take longer than this; a hang (a waiter's snapshot blocking the
# holder's CREATE INDEX CONCURRENTLY) would.
BOUNDED_SECONDS = 120


def next_env(db: AppDb, next_tool: Path, next_schema_dir: Path) -> dict[str, str]:
    """The migrator's environment for ``db`` pointed at the next release's tool and tree."""
    return db.env(TEMPORAL_SQL_TOOL=str(next_tool), MIGRATOR_SCHEMA_DIR=str(next_schema_dir))


def vendor_versions(schema_dir: Path, store: Store) -> list[str]:
    """The version directories of a tree (read directly, not through the migrator), oldest first."""
    names = [
        json.loads((child / "manifest.json").read_text())["CurrVersion"]
        for child in versioned_dir(schema_dir, store).iterdir()
        if (child / "manifest.json").is_file()
    ]
    return sorted(names, key=parse_version)


def next_reference_dump(make_db: MakeDb, next_tool: Path, next_schema_dir: Path, store: Store) -> str:
    """Schema of a clean install of the next release by its bare tool."""
    return reference_dump(make_db, next_schema_dir, store, tool=next_tool)


def test_next_release_is_pinned_with_the_expected_targets(next_schema_dir: Path) -> None:
    for store in ("temporal", "visibility"):
        assert vendor_versions(next_schema_dir, store)[-1] == NEXT_TARGETS[store]


@pytest.mark.parametrize("store", ["temporal", "visibility"])
def test_upgrade_to_the_next_release_matches_its_clean_install(
    store: Store,
    app_db: AppDb,
    make_db: MakeDb,
    run_migrator: RunMigrator,
    next_tool: Path,
    next_schema_dir: Path,
) -> None:
    installed = run_migrator(app_db, "migrate", "--schema", store)
    assert installed.returncode == 0, installed.stderr[-3000:]
    assert app_db.version_rows() == [(app_db.name, TARGETS[store])]
    before = app_db.history()

    upgraded = run_migrator(app_db, "migrate", "--schema", store, env=next_env(app_db, next_tool, next_schema_dir))

    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    assert app_db.version_rows() == [(app_db.name, NEXT_TARGETS[store])]
    history = app_db.history()
    assert history[: len(before)] == before
    added = [new for _, new in history[len(before) :]]
    pending = [v for v in vendor_versions(next_schema_dir, store) if parse_version(v) > parse_version(TARGETS[store])]
    assert added == pending  # each new version once, in order
    assert app_db.invalid_indexes() == []
    assert app_db.schema_dump() == next_reference_dump(make_db, next_tool, next_schema_dir, store)


def test_concurrent_migrations_through_create_index_concurrently_do_not_hang(
    app_db: AppDb, run_migrator: RunMigrator, start_migrator: StartMigrator, next_tool: Path, next_schema_dir: Path
) -> None:
    """Waiters poll the lock while the holder runs visibility versions that build indexes concurrently."""
    installed = run_migrator(app_db, "migrate", "--schema", "visibility")
    assert installed.returncode == 0, installed.stderr[-3000:]
    assert app_db.version_rows() == [(app_db.name, TARGETS["visibility"])]
    env = next_env(app_db, next_tool, next_schema_dir)
    started = time.monotonic()
    processes = [start_migrator(app_db, "migrate", "--schema", "visibility", env=env) for _ in range(3)]
    results: list[tuple[str, str]] = []
    for process in processes:
        remaining = max(1.0, BOUNDED_SECONDS - (time.monotonic() - started))
        try:
            results.append(process.communicate(timeout=remaining))
        except subprocess.TimeoutExpired:
            pytest.fail(f"a migrator was still running after {BOUNDED_SECONDS}s (hang on the lock or the index build)")
    codes = [process.returncode for process in processes]
    assert codes == [0, 0, 0], [stderr[-1500:] for _, stderr in results]
    assert app_db.version_rows() == [(app_db.name, NEXT_TARGETS["visibility"])]
    assert app_db.invalid_indexes() == []
    runners = [stderr for _, stderr in results if events_named(stderr, "tool.started")]
    assert len(runners) == 1
    others = [stderr for _, stderr in results if stderr not in runners]
    assert all(
        events_named(stderr, "lock.waiting") or events_named(stderr, "migrate.done")[0]["steps"] == []
        for stderr in others
    )
