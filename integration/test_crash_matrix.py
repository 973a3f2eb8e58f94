"""Crash-point matrix: every statement boundary of every version of both stores, interrupted for real.

For each crash point (store, V, k) a copy of a template database at V-1 (``CREATE DATABASE ... TEMPLATE``) gets
a server-side interruption (``integration/support/crashpoints.py``); the real tool runs ``update-schema`` to the target
and dies at statement k+1 of V (k = n: at its own version write, "complete but unrecorded"). The interruption
is removed, ``migrate`` runs, and the database must equal a clean install: exit 0, version = target,
``pg_dump --schema-only`` identical, no INVALID index, seed rows neither duplicated nor lost, and the same
version history. The terminal summary prints how many crash points were tried and converged, and the
matrix's duration (``integration.support.crashpoints.summarise``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from devtools.ci import unavailable
from devtools.databases import AppDb, PgServer
from devtools.pgcluster import create_database
from devtools.pins import Store, resolve_schema_dir
from integration.support.crashpoints import (
    MARKER,
    CrashPoint,
    clone,
    crash_points,
    drop_quietly,
    expected_count,
    interrupt_update,
    is_do_block,
    probe_fires,
    seed_rows,
)
from integration.support.processes import RunMigrator, bring_to, events_named, steps_done
from integration.support.scenarios import TARGETS, Reference, clean_install

_SCHEMA_DIR, _SCHEMA_WHY = resolve_schema_dir()
POINTS: list[CrashPoint] = crash_points(_SCHEMA_DIR) if _SCHEMA_DIR is not None else []


@dataclass
class CrashLab:
    """Per-worker templates (one per store and recorded version) and references; dropped at session end."""

    server: PgServer
    roles: dict[str, str]
    tool: Path
    schema_dir: Path
    templates: dict[tuple[Store, str], str] = field(default_factory=dict)
    references: dict[Store, Reference] = field(default_factory=dict)
    probed: dict[tuple[Store, str], tuple[bool, ...] | None] = field(default_factory=dict)

    def app_db(self, name: str) -> AppDb:
        return AppDb(self.server, name, "app", self.roles["app"], self.tool, self.schema_dir, "app")

    def template(self, store: Store, version: str) -> str:
        """A database at ``version`` built by the bare tool, with no connection left open (usable as TEMPLATE)."""
        key = (store, version)
        if key not in self.templates:
            name = f"cm_tmpl_{store}_{version.replace('.', '_')}_{uuid.uuid4().hex[:6]}"
            with self.server.admin_connect() as conn:
                create_database(conn, name, "app")
            self.templates[key] = name
            bring_to(self.tool, self.app_db(name), self.schema_dir, store, version)
        return self.templates[key]

    def copy(self, store: Store, version: str, label: str) -> AppDb:
        name = f"cm_{label.replace('-', '_').replace('.', '_')}_{uuid.uuid4().hex[:6]}"
        clone(self.server, self.template(store, version), name, "app")
        return self.app_db(name)

    def observed(self, point: CrashPoint) -> CrashPoint:
        """``point`` with the statements that fire the DDL trigger observed, when its version has a DO block."""
        key = (point.store, point.version)
        if key not in self.probed:
            self.probed[key] = None
            if any(is_do_block(s) for s in point.statements):
                db = self.copy(point.store, point.previous, f"probe-{point.store}-{point.version}")
                try:
                    self.probed[key] = probe_fires(self.tool, db, self.schema_dir, point).fires
                finally:
                    drop_quietly(self.server, db.name)
        return replace(point, fires=self.probed[key])

    def reference(self, store: Store) -> Reference:
        if store not in self.references:
            db = self.app_db(f"cm_ref_{store}_{uuid.uuid4().hex[:6]}")
            with self.server.admin_connect() as conn:
                create_database(conn, db.name, "app")
            try:
                self.references[store] = clean_install(self.tool, db, self.schema_dir, store)
            finally:
                drop_quietly(self.server, db.name)
        return self.references[store]


@pytest.fixture(scope="session")
def crash_lab(
    pg_server: PgServer, app_roles: dict[str, str], temporal_tool: Path, schema_dir: Path
) -> Iterator[CrashLab]:
    lab = CrashLab(pg_server, app_roles, temporal_tool, schema_dir)
    yield lab
    for name in lab.templates.values():
        drop_quietly(pg_server, name)


def _crash(lab: CrashLab, db: AppDb, point: CrashPoint) -> None:
    """Run the real tool to the target with the interruption installed; leave only the vendor's objects."""
    crashed, seen = interrupt_update(lab.tool, db, lab.schema_dir, point)
    assert crashed.returncode == 1, f"the tool was not interrupted at {point.describe_failure()}"
    assert MARKER in crashed.stderr, crashed.stderr[-2000:]
    # The tool completed exactly statements 1..k of V (DDL ones are logged by the event trigger) ...
    assert seen == point.applied_ddl(), f"expected a crash at {point.describe_failure()}"
    # ... and did not record V.
    assert db.version_rows() == [(db.name, point.previous)]


def _portable_sample(points: list[CrashPoint]) -> set[str]:
    """The crash points every PostgreSQL major runs: per store, the first and the newest version at k = 0, the
    middle and k = n (done but unrecorded)."""
    sample: set[str] = set()
    for store in ("temporal", "visibility"):
        mine = [p for p in points if p.store == store]
        for version in {mine[0].version, mine[-1].version}:
            at = [p for p in mine if p.version == version]
            sample.update(p.id for p in (at[0], at[len(at) // 2], at[-1]))
    return sample


_PORTABLE = _portable_sample(POINTS) if POINTS else set()


@pytest.mark.parametrize(
    "point",
    [pytest.param(p, id=p.id, marks=[pytest.mark.portable] if p.id in _PORTABLE else []) for p in POINTS]
    or [pytest.param(None, id="no-schema-tree")],
)
def test_crash_point_converges(
    point: CrashPoint | None, crash_lab: CrashLab, run_migrator: RunMigrator, record_property: Any
) -> None:
    if point is None:
        unavailable(_SCHEMA_WHY)
    reference = crash_lab.reference(point.store)
    point = crash_lab.observed(point)
    db = crash_lab.copy(point.store, point.previous, point.id)
    try:
        _crash(crash_lab, db, point)
        planned = run_migrator(db, "plan", "--schema", point.store)
        assert planned.returncode == 0, planned.stderr[-3000:]
        done = run_migrator(db, "migrate", "--schema", point.store)
        failed = events_named(done.stderr, "run.failed")
        assert done.returncode == 0, f"{point.id}: exit {done.returncode}, run.failed={failed}\n{done.stderr[-3000:]}"
        # The plan is the whole program: migrate did exactly the steps plan showed, in the same words.
        done_steps = steps_done(done.stderr)
        assert done_steps == json.loads(planned.stdout)["steps"]
        newest = reference.versions[-1]
        assert db.version_rows() == [(db.name, newest)]
        assert db.schema_dump() == reference.dump
        assert db.invalid_indexes() == []
        with crash_lab.server.admin_connect(db.name) as conn:
            assert seed_rows(conn, list(reference.seeds)) == reference.seeds
        assert [new for _, new in db.history()] == reference.versions
        repaired = events_named(done.stderr, "repair.statement")
        record_property("crash_point", {"id": point.id, "repaired": len(repaired)})
    finally:
        drop_quietly(crash_lab.server, db.name)


def test_matrix_has_every_statement_boundary_and_every_unrecorded_version(schema_dir: Path) -> None:
    statements, versions = expected_count(schema_dir)
    assert len([p for p in POINTS if not p.unrecorded]) == statements
    assert len([p for p in POINTS if p.unrecorded]) == versions
    assert len({p.id for p in POINTS}) == len(POINTS)
    assert {p.store: p.version for p in POINTS if p.applied == 0} == TARGETS
