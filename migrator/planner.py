"""Decide what a run must do: a pure function of (observed state, vendor tree, target). No I/O here.

Every row of the states table in the README is a branch below and a unit test in tests/test_planner.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from packaging.version import Version

from migrator.errors import UsageError
from migrator.repair import applied_prefix
from migrator.state import State
from migrator.statements import Kind
from migrator.vendor import VendorSchema, VendorVersion
from migrator.versions import parse_version

SETUP_VERSION = Version("0.0")
MIN_SERVER_VERSION_NUM = 120000


class Situation(StrEnum):
    EMPTY = "empty"
    SET_UP = "set-up"
    BEHIND = "behind"
    PARTIAL = "partial"
    CURRENT = "current"
    AHEAD = "ahead"
    REFUSED = "refused"


class Action(StrEnum):
    SETUP = "setup-schema"
    REPAIR = "repair"
    UPDATE = "update-schema"
    DROP_INVALID_INDEX = "drop-invalid-index"


@dataclass(frozen=True)
class Step:
    """One unit of work; `migrate` re-observes after each."""

    action: Action
    version: str
    applied: int = 0
    total: int = 0
    index: str = ""

    def to_dict(self) -> dict[str, Any]:
        if self.action is Action.DROP_INVALID_INDEX:
            return {"action": self.action.value, "version": self.version, "index": self.index}
        if self.action is Action.REPAIR:
            return {
                "action": self.action.value,
                "version": self.version,
                "applied_statements": self.applied,
                "remaining_statements": self.total - self.applied,
            }
        return {"action": self.action.value, "version": self.version}


@dataclass(frozen=True)
class Plan:
    situation: Situation
    database: str
    store: str
    current: str | None
    target: str
    pending: tuple[VendorVersion, ...] = ()
    steps: tuple[Step, ...] = ()
    refusal: str | None = None
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "schema": self.store,
            "current_version": self.current,
            "target_version": self.target,
            "state": self.situation.value,
            "pending_versions": [item.name for item in self.pending],
            "refusal": self.refusal,
            "warnings": list(self.warnings),
        }


def resolve_target(vendor: VendorSchema, requested: Version | None) -> VendorVersion:
    """The target must be a version of the vendor tree (the tool refuses anything else)."""
    if requested is None:
        return vendor.newest
    found = vendor.find(requested)
    if found is None:
        known = ", ".join(item.name for item in vendor.versions)
        raise UsageError(f"target version {requested} is not in the vendor tree ({known}); pick one of those")
    return found


def plan(state: State, vendor: VendorSchema, target: VendorVersion) -> Plan:
    """Decide the steps that bring ``state`` to ``target``; refusals are values, not exceptions."""
    base = Plan(Situation.REFUSED, state.database, vendor.store, state.version, target.name)

    def refuse(reason: str) -> Plan:
        return replace(base, refusal=reason)

    if state.version is None:
        found = sorted(vendor.created_tables() & state.catalog.tables)
        if found:
            others = f" (it has rows for {', '.join(state.other_databases)})" if state.other_databases else ""
            return refuse(
                f"Temporal tables ({', '.join(found[:3])}{', ...' if len(found) > 3 else ''}) exist but schema_version "
                f"has no row for database {state.database!r}{others}; if the database was restored or renamed, "
                "run with --database set to the name it was set up with; changed nothing"
            )
        pending = tuple(vendor.between(SETUP_VERSION, target.version))
        steps: tuple[Step, ...] = (Step(Action.SETUP, str(SETUP_VERSION)), Step(Action.UPDATE, target.name))
        return replace(base, situation=Situation.EMPTY, pending=pending, steps=steps)

    try:
        current = parse_version(state.version)
    except ValueError:
        return refuse(
            f"schema_version holds {state.version!r} for database {state.database!r}, which is not a version; "
            "fix the row by hand (it should name the last version applied); changed nothing"
        )
    if current == target.version:
        return replace(base, situation=Situation.CURRENT)
    if current > target.version:
        warning = f"database is at {state.version}, ahead of target {target.name}; never downgrading"
        return replace(base, situation=Situation.AHEAD, warnings=(warning,))
    if current != SETUP_VERSION and vendor.find(current) is None:
        return refuse(
            f"schema_version holds {state.version!r}, which is not a version of the vendor tree; use the schema "
            "tree of the Temporal release that set this database up or a newer one; changed nothing"
        )
    pending = tuple(vendor.between(current, target.version))
    first = pending[0]
    progress = applied_prefix(first.statements, state.catalog)
    if progress.applied is None:
        details = "; ".join(str(mismatch) for mismatch in progress.mismatches[:5])
        return refuse(
            f"the catalog matches no point of a partial run of v{first.name} (was the schema changed by hand?): "
            f"{details}; changed nothing"
        )
    if progress.applied == 0:
        situation = Situation.SET_UP if current == SETUP_VERSION else Situation.BEHIND
        steps = (Step(Action.UPDATE, target.name),)
    else:
        situation = Situation.PARTIAL
        repair = Step(Action.REPAIR, first.name, progress.applied, len(first.statements))
        steps = (repair,) if first is target else (repair, Step(Action.UPDATE, target.name))
    return replace(
        base, situation=situation, pending=pending, steps=_invalid_index_drops(first, progress.applied, state) + steps
    )


def _invalid_index_drops(version: VendorVersion, applied: int, state: State) -> tuple[Step, ...]:
    """An INVALID index that a remaining statement creates is a build that failed (a lock timeout, a crash):
    drop it first, or ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` would keep the broken one."""
    names = dict.fromkeys(
        effect.ref.name
        for statement in version.statements[applied:]
        for effect in statement.effects
        if effect.ref.kind is Kind.INDEX and effect.present and state.catalog.indexes.get(effect.ref.name) is False
    )
    return tuple(Step(Action.DROP_INVALID_INDEX, version.name, index=name) for name in names)


def access_problem(state: State, planned: Plan) -> str | None:
    """Preflight: what stops the planned DDL before it starts, with the fix (None when nothing does)."""
    if not planned.steps:
        return None
    access = state.access
    if access.server_version_num < MIN_SERVER_VERSION_NUM:
        return f"PostgreSQL {access.server_version_num} is older than 12, which Temporal's postgres12 schema needs"
    if access.read_only:
        return (
            f"database {state.database!r} is read-only (a standby, or default_transaction_read_only is on); "
            "point --endpoint/SQL_HOST at the primary (CloudNativePG: the -rw service)"
        )
    if not access.can_create_in_schema:
        return (
            f"role {access.user!r} may not CREATE in schema {access.schema!r} of database {state.database!r} "
            f"(owned by {access.database_owner!r}; PostgreSQL 15 no longer grants CREATE on public to every role): "
            f"make {access.user!r} the database owner, or GRANT CREATE ON SCHEMA {access.schema} TO {access.user}, "
            f"or with CloudNativePG give the Database schemas: [{{name: {access.schema}, owner: {access.user}}}]"
        )
    missing = sorted(
        {
            effect.ref.name
            for version in planned.pending
            for statement in version.statements
            for effect in statement.effects
            if effect.ref.kind is Kind.EXTENSION and effect.present
        }
        - state.catalog.extensions
    )
    if missing and not access.can_create_in_database:
        return (
            f"role {access.user!r} may not CREATE in database {state.database!r}, which extension "
            f"{', '.join(missing)} needs: GRANT CREATE ON DATABASE {state.database} TO {access.user}, or have an "
            f"administrator run CREATE EXTENSION {missing[0]} in it first (CloudNativePG: Database spec.extensions)"
        )
    return None
