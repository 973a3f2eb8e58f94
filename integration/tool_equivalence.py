"""Whether the pinned release's tool installs an older release's tree exactly as that release's own tool does.

The suite installs the older trees of TEMPORAL_UPGRADE_FROM with the pinned tool, except those of
TEMPORAL_UPGRADE_OWN_TOOL (installed by their own tool, built for it). That rests on this check, for each upgrade
source installed by the pinned tool and each store, both tools on twin databases: the full install, every
intermediate stop the upgrade paths use, and the crash in the middle of the tree's newest version; compared are the
statements the tool executed (its own log), ``pg_dump --schema-only``, the ``schema_version`` and
``schema_update_history`` rows (timestamps aside), the seed rows, the exit status and, for the crash, the
statements completed before it. It can fail: v1.32.2's tool refuses v1.29.1's visibility tree ("error parsing file
v1.2/advanced_visibility.sql ... unmatched `i`"), one reason v1.29.1 keeps its own tool.

Not collected by the suite (its name does not match ``test_*.py``): it needs every upgrade source's own tool,
which CI does not build. Run it when a pin changes: ``bash scripts/tool-equivalence.sh`` (builds them, then runs
``pytest integration/tool_equivalence.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools.ci import unavailable
from devtools.databases import AppDb, MakeDb
from devtools.pins import Store, own_tool_sources, resolve_schema_dir, resolve_tool, upgrade_sources, versioned_dir
from integration.support.crashpoints import interrupt_update, middle_point, seed_rows, seed_tables
from integration.support.processes import run_tool_binary
from integration.support.scenarios import executed_statements
from integration.test_upgrade_paths import STOPS
from migrator.source.tree import load_vendor_schema

STORES: tuple[Store, ...] = ("temporal", "visibility")


@dataclass(frozen=True)
class Outcome:
    """What a tool left behind, in terms that do not depend on the database's name or the clock."""

    codes: tuple[int, ...]
    statements: Any  # executed (version -> statements) or, for a crash, the DDL completed before it
    dump: str
    versions: list[tuple[Any, ...]]
    history: list[tuple[Any, ...]]
    seeds: dict[str, list[tuple[Any, ...]]]

    def figures(self) -> str:
        count = (
            sum(len(items) for items in self.statements.values())
            if isinstance(self.statements, dict)
            else len(self.statements)
        )
        return f"{count} statements, {len(self.dump.splitlines())} dump lines, {len(self.history)} history rows"


def own_tool(release: str) -> Path:
    tool, why = resolve_tool(release, own=True)
    if tool is None:
        unavailable(why)
    return tool


def tree(release: str) -> Path:
    schema_dir, why = resolve_schema_dir(release)
    if schema_dir is None:
        unavailable(why)
    return schema_dir


def pinned_tool() -> Path:
    tool, why = resolve_tool()
    if tool is None:
        unavailable(why)
    return tool


def describe(db: AppDb, schema_dir: Path, store: Store, codes: tuple[int, ...], statements: Any) -> Outcome:
    with db.server.admin_connect(db.name) as conn:
        versions = conn.execute(
            "SELECT version_partition, curr_version, min_compatible_version FROM schema_version"
        ).fetchall()
        history = conn.execute(
            "SELECT version_partition, old_version, new_version, manifest_md5, description"
            " FROM schema_update_history ORDER BY update_time, new_version"
        ).fetchall()
        seeds = seed_rows(conn, seed_tables(schema_dir, store))
    return Outcome(codes, statements, db.schema_dump(), versions, history, seeds)


def install(tool: Path, db: AppDb, schema_dir: Path, store: Store, stop: str | None) -> Outcome:
    """``setup-schema -v 0.0`` then ``update-schema`` to ``stop`` (None: the tree's newest), as a hook would."""
    setup = run_tool_binary(tool, db, "setup-schema", "-v", "0.0")
    target = () if stop is None else ("-v", stop)
    update = run_tool_binary(tool, db, "update-schema", "-d", str(versioned_dir(schema_dir, store)), *target)
    codes = (setup.returncode, update.returncode)
    assert codes == (0, 0), update.stderr[-2000:]
    return describe(db, schema_dir, store, codes, executed_statements(update.stderr))


def crash(tool: Path, db: AppDb, schema_dir: Path, store: Store) -> Outcome:
    """The tool interrupted in the middle of the tree's newest version (as the upgrade-path crash test does)."""
    point = middle_point(schema_dir, store, load_vendor_schema(schema_dir, store).newest.name)
    install(tool, db, schema_dir, store, point.previous)
    crashed, seen = interrupt_update(tool, db, schema_dir, point)
    return describe(db, schema_dir, store, (crashed.returncode,), seen)


def cases() -> list[Any]:
    """Every upgrade source the suite installs with the pinned tool, each store, each case."""
    found: list[Any] = []
    for release in [release for release in upgrade_sources() if release not in own_tool_sources()]:
        for store in STORES:
            for case in ("newest", *STOPS.get(release, {}).get(store, ()), "crash"):
                found.append(pytest.param(release, store, case, id=f"{release}-{store}-{case}"))
    return found


@pytest.mark.parametrize(("release", "store", "case"), cases())
def test_the_pinned_tool_installs_an_older_tree_as_its_own_tool_does(
    release: str, store: Store, case: str, make_db: MakeDb
) -> None:
    schema_dir = tree(release)
    outcomes: dict[str, Outcome] = {}
    for name, tool in (("own", own_tool(release)), ("pinned", pinned_tool())):
        db = make_db()
        if case == "crash":
            outcomes[name] = crash(tool, db, schema_dir, store)
        else:
            outcomes[name] = install(tool, db, schema_dir, store, None if case == "newest" else case)
    own, pinned = outcomes["own"], outcomes["pinned"]
    print(f"\ntool-equivalence: {release} {store} {case}: own tool {own.figures()}; pinned tool {pinned.figures()}")
    assert own.statements  # the comparison is about something
    assert pinned.codes == own.codes
    assert pinned.statements == own.statements
    assert pinned.versions == own.versions
    assert pinned.history == own.history
    assert pinned.seeds == own.seeds
    assert pinned.dump == own.dump
    print(f"tool-equivalence: {release} {store} {case}: identical")
