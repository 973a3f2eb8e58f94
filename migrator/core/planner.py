"""Decide what a run must do: a pure function of (observed state, vendor tree, target, policy). No I/O here.

The plan is the steps *and* one verdict: ok, refused (exit 6) or blocked before any DDL (exit 4 or 6: the
privilege preflight, a missing database the role may not create, the ``--max-rewrite-size`` guard). `plan`
and `migrate` both act on that verdict, so they cannot disagree. Every row of the states table in the README
is a branch below and a unit test in tests/core/test_planner.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from packaging.version import Version

from migrator.core.state import State
from migrator.core.statements import Kind
from migrator.core.vendor import VendorSchema, VendorVersion
from migrator.core.versions import parse_version
from migrator.errors import AccessError, ExitStatus, MigratorError, UnsafeStateError, UsageError

if TYPE_CHECKING:
    from migrator.core.impact import VersionImpact
    from migrator.core.sizes import Sizes

SETUP_VERSION = Version("0.0")
MIN_SERVER_VERSION_NUM = 130000


class Situation(StrEnum):
    ABSENT = "absent"  # no database yet (observed only with --create-database)
    EMPTY = "empty"
    SET_UP = "set-up"
    BEHIND = "behind"
    PARTIAL = "partial"
    CURRENT = "current"
    AHEAD = "ahead"
    REFUSED = "refused"


class Action(StrEnum):
    CREATE_DATABASE = "create-database"
    SETUP = "setup-schema"
    UPDATE = "update-schema"
    DROP_INVALID_INDEX = "drop-invalid-index"
    SKIP_STATEMENT = "skip-statement"
    RUN_STATEMENT = "run-statement"
    RECORD_VERSION = "record-version"
    BUILD_INDEX_CONCURRENTLY = "build-index-concurrently"
    ONLINE_REWRITE = "online-rewrite"
    ABORT_ONLINE = "abort-online"


# One dataclass per action, complete enough that the executor only carries it out; `Step` is their union, so
# a dispatch over it (``match`` + ``assert_never``) fails type-checking when an action is added and not handled.


@dataclass(frozen=True)
class CreateDatabase:
    """``CREATE DATABASE``, as temporal-sql-tool's create-database runs it, on the maintenance database."""

    action: ClassVar[Action] = Action.CREATE_DATABASE
    database: str

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "database": self.database}


@dataclass(frozen=True)
class Setup:
    """``temporal-sql-tool setup-schema -v <version>``."""

    action: ClassVar[Action] = Action.SETUP
    version: str

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "version": self.version}


@dataclass(frozen=True)
class Update:
    """``temporal-sql-tool update-schema`` up to ``version``."""

    action: ClassVar[Action] = Action.UPDATE
    version: str

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "version": self.version}


@dataclass(frozen=True)
class DropInvalidIndex:
    """Drop the INVALID leftover ``name`` of an interrupted build, before ``version`` rebuilds it."""

    action: ClassVar[Action] = Action.DROP_INVALID_INDEX
    version: str
    name: str

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "version": self.version, "index": self.name}


@dataclass(frozen=True)
class _Statement:
    """Statement ``statement`` of ``total`` of a version under repair, with the vendor's text verbatim."""

    action: ClassVar[Action]
    version: str
    statement: int
    total: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "version": self.version,
            "statement": self.statement,
            "of": self.total,
            "text": " ".join(self.text.split()),
        }


@dataclass(frozen=True)
class SkipStatement(_Statement):
    action: ClassVar[Action] = Action.SKIP_STATEMENT


@dataclass(frozen=True)
class RunStatement(_Statement):
    action: ClassVar[Action] = Action.RUN_STATEMENT


@dataclass(frozen=True)
class RecordVersion:
    """Record ``version`` as the tool does (``old_version`` is the one it replaces)."""

    action: ClassVar[Action] = Action.RECORD_VERSION
    version: str
    old_version: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "version": self.version, "old_version": self.old_version}


@dataclass(frozen=True)
class BuildIndexConcurrently:
    """Build ``index`` of ``version`` with ``CREATE INDEX CONCURRENTLY`` (``text``) before the version's own plain
    ``CREATE INDEX`` would block writes to ``table`` for the whole build; the vendor's statement then finds it."""

    action: ClassVar[Action] = Action.BUILD_INDEX_CONCURRENTLY
    version: str
    table: str
    index: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "version": self.version, "table": self.table, "index": self.index}


@dataclass(frozen=True)
class OnlineRewrite:
    """Apply ``statements`` (the vendor's, of ``versions``, on ``table``, in order) to a shadow of ``table`` and swap
    it in (`migrator.core.online`); ``reason`` says why online (the estimate). Resumes a rewrite in progress."""

    action: ClassVar[Action] = Action.ONLINE_REWRITE
    table: str
    versions: tuple[str, ...]
    statements: tuple[str, ...]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "table": self.table,
            "versions": list(self.versions),
            "statements": len(self.statements),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class AbortOnline:
    """Remove every trace of the online rewrite of ``table`` in progress; the table is left as it was."""

    action: ClassVar[Action] = Action.ABORT_ONLINE
    table: str

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "table": self.table}


Step = (
    CreateDatabase
    | Setup
    | Update
    | DropInvalidIndex
    | SkipStatement
    | RunStatement
    | RecordVersion
    | BuildIndexConcurrently
    | OnlineRewrite
    | AbortOnline
)


def repair_steps(version: VendorVersion, applied: int, old_version: str | None) -> tuple[Step, ...]:
    """Finish a partly applied version: skip what is in place, run the rest verbatim, record it as the tool does."""
    total = len(version.statements)
    statements = tuple(
        (SkipStatement if index < applied else RunStatement)(version.name, index + 1, total, statement.text)
        for index, statement in enumerate(version.statements)
    )
    return (*statements, RecordVersion(version.name, old_version))


class Outcome(StrEnum):
    OK = "ok"
    REFUSED = "refused"  # the state is unsafe to touch (exit 6)
    BLOCKED = "blocked"  # the state is fine, but this run may not do the DDL (exit 4 or 6)


_ERRORS: dict[ExitStatus, type[MigratorError]] = {
    ExitStatus.ACCESS: AccessError,
    ExitStatus.UNSAFE_STATE: UnsafeStateError,
}


@dataclass(frozen=True)
class Verdict:
    """Whether `migrate` may start the plan's DDL; if not, why (one line naming the fix) and its exit status."""

    outcome: Outcome = Outcome.OK
    reason: str | None = None
    status: ExitStatus = ExitStatus.OK

    @classmethod
    def refused(cls, reason: str) -> Verdict:
        return cls(Outcome.REFUSED, reason, ExitStatus.UNSAFE_STATE)

    @classmethod
    def blocked(cls, reason: str, status: ExitStatus) -> Verdict:
        return cls(Outcome.BLOCKED, reason, status)

    def error(self) -> MigratorError | None:
        """What `migrate` stops with before any DDL, and `plan` exits with after printing; None when ok."""
        return None if self.outcome is Outcome.OK else _ERRORS[self.status](self.reason)


OK = Verdict()


@dataclass(frozen=True)
class Policy:
    """What the operator tolerates (flags), as the planner needs it."""

    max_rewrite_size: int | None = None  # bytes; None: report only


@dataclass(frozen=True)
class Plan:
    """The whole program of `migrate` (``steps``), what it applies (``pending``, with its ``impact`` when the
    sizes were read) and whether it may run (``verdict``; ``refusal`` is the refused verdict's reason)."""

    situation: Situation
    database: str
    store: str
    current: str | None
    target: str
    pending: tuple[VendorVersion, ...] = ()
    steps: tuple[Step, ...] = ()
    refusal: str | None = None
    warnings: tuple[str, ...] = field(default=())
    impact: tuple[VersionImpact, ...] = ()
    verdict: Verdict = OK

    @property
    def blocked(self) -> str | None:
        return self.verdict.reason if self.verdict.outcome is Outcome.BLOCKED else None

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


def quote_identifier(name: str) -> str:
    """An identifier quoted as PostgreSQL reads it, so a printed GRANT or CREATE runs as shown (``Temporal-Dev``
    needs quotes; a double quote inside is doubled)."""
    return '"' + name.replace('"', '""') + '"'


def vendor_indexes(vendor: VendorSchema) -> frozenset[str]:
    """Every index some statement of the vendor tree creates: only these can fail a run's verification."""
    return frozenset(
        effect.ref.name
        for statement in vendor.all_statements()
        for effect in statement.effects
        if effect.ref.kind is Kind.INDEX and effect.present
    )


def _foreign_invalid_warning(state: State, vendor: VendorSchema) -> tuple[str, ...]:
    if not state.catalog.invalid_indexes:  # the vendor's statements are read only when there are some
        return ()
    foreign = sorted(set(state.catalog.invalid_indexes) - vendor_indexes(vendor))
    if not foreign:
        return ()
    return (
        f"INVALID indexes that are not Temporal's: {', '.join(foreign)}; left alone (drop or rebuild them with "
        "REINDEX INDEX CONCURRENTLY; they do not affect the migration)",
    )


def _locked_warning(state: State) -> tuple[str, ...]:
    """Tables another session holds ACCESS EXCLUSIVE on: their definitions were not read (reading them would
    queue behind the lock), so the plan compared their columns and indexes by presence only."""
    if not state.catalog.locked:
        return ()
    held = "; ".join(f"{table} by {holder}" for table, holder in sorted(state.catalog.locked.items()))
    return (
        f"tables locked by another session, their definitions compared by presence only: {held}; "
        "plan again once the lock is released",
    )


def _drop_invalid_steps(state: State, pending: tuple[VendorVersion, ...]) -> tuple[Step, ...]:
    """An interrupted CREATE INDEX CONCURRENTLY leaves an INVALID index under the vendor's name; the statement
    that builds it would be skipped as "already exists", so the leftover is dropped first."""
    steps: dict[str, Step] = {}
    for version in pending:
        for statement in version.statements:
            for effect in statement.effects:
                name = effect.ref.name
                index = state.catalog.indexes.get(name)
                if effect.ref.kind is Kind.INDEX and effect.present and index is not None and not index.valid:
                    steps.setdefault(name, DropInvalidIndex(version.name, name))
    return tuple(steps.values())


def plan(
    state: State, vendor: VendorSchema, target: VendorVersion, policy: Policy = Policy(), sizes: Sizes | None = None
) -> Plan:
    """The steps that bring ``state`` to ``target``, their impact and the one verdict on them.

    ``sizes`` are the catalog's table sizes, read by the shell before planning; the impact report is derived
    from them, and the ``--max-rewrite-size`` guard of ``policy`` needs them (a ValueError without them).
    """
    decided = _steps(state, vendor, target)
    if sizes is None:
        if policy.max_rewrite_size is not None and decided.pending:
            raise ValueError("the --max-rewrite-size guard needs the catalog's sizes")
        return replace(decided, verdict=_verdict(state, decided, policy))
    from migrator.core.impact import impact_report  # noqa: PLC0415 - a store at its target needs no impact report

    applied = sum(1 for step in decided.steps if isinstance(step, SkipStatement))
    judged = replace(decided, impact=tuple(impact_report(decided.pending, sizes, applied)))
    return replace(judged, verdict=_verdict(state, judged, policy))


def _verdict(state: State, planned: Plan, policy: Policy) -> Verdict:
    """Refused, else blocked by the preflight or the guard, else ok; a plan without steps is never blocked."""
    if planned.refusal:
        return Verdict.refused(planned.refusal)
    if not planned.steps:
        return OK
    if planned.situation is Situation.ABSENT and not state.access.can_create_database:
        return Verdict.blocked(createdb_problem(state.database, state.access.user), ExitStatus.ACCESS)
    problem = access_problem(state, planned)
    if problem:
        return Verdict.blocked(problem, ExitStatus.ACCESS)
    from migrator.core.impact import too_large  # noqa: PLC0415 - see plan

    too_big = too_large(planned.impact, policy.max_rewrite_size)
    if too_big:
        return Verdict.blocked(too_big, ExitStatus.UNSAFE_STATE)
    return OK


def createdb_problem(database: str, user: str) -> str:
    """Why a missing database stops the run, with the statements an administrator can run."""
    return (
        f"database {database!r} does not exist and role {user!r} may not create databases (no CREATEDB): "
        f"have an administrator run CREATE DATABASE {quote_identifier(database)} OWNER {quote_identifier(user)} "
        f"(CloudNativePG: a Database resource with owner {user}), or ALTER ROLE {quote_identifier(user)} CREATEDB"
    )


def _steps(state: State, vendor: VendorSchema, target: VendorVersion) -> Plan:
    """Decide the steps that bring ``state`` to ``target``; refusals are values, not exceptions.

    Tables only the *other* store creates mean both stores were pointed at one database, which cannot work
    (they share ``schema_version``'s row for the database name): refused before anything runs.
    """
    base = Plan(
        Situation.REFUSED,
        state.database,
        vendor.store,
        state.version,
        target.name,
        warnings=(*_locked_warning(state), *_foreign_invalid_warning(state, vendor)),
    )

    def refuse(reason: str) -> Plan:
        return replace(base, refusal=reason)

    if not state.exists:  # --create-database: create it, then set up and update
        pending = tuple(vendor.between(SETUP_VERSION, target.version))
        created = (CreateDatabase(state.database), Setup(str(SETUP_VERSION)), Update(target.name))
        return replace(base, situation=Situation.ABSENT, pending=pending, steps=created)

    other = sorted(vendor.foreign_tables() & state.catalog.tables)
    if other:
        return refuse(
            f"database {state.database!r} already holds the other store's tables ({', '.join(other[:3])}"
            f"{', ...' if len(other) > 3 else ''}); the default and visibility stores need separate databases: point "
            "--database/SQL_DATABASE of this store at its own database; changed nothing"
        )
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
        steps: tuple[Step, ...] = (Setup(str(SETUP_VERSION)), Update(target.name))
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
        return replace(base, situation=Situation.AHEAD, warnings=(*base.warnings, warning))
    if current != SETUP_VERSION and vendor.find(current) is None:
        return refuse(
            f"schema_version holds {state.version!r}, which is not a version of the vendor tree; use the schema "
            "tree of the Temporal release that set this database up or a newer one; changed nothing"
        )
    pending = tuple(vendor.between(current, target.version))
    from migrator.core.repair import applied_prefix, expectations  # noqa: PLC0415 - only a store behind its target

    first = pending[0]
    before = expectations(
        s for version in vendor.versions if version.version < first.version for s in version.statements
    )
    progress = applied_prefix(first.statements, state.catalog, before)
    if progress.ambiguous:
        points = " and ".join(str(k) for k in progress.ambiguous)
        return refuse(
            f"the catalog fits {points} of the {len(first.statements)} statements of v{first.name} equally (it "
            f"re-creates {', '.join(map(str, progress.objects))} as before), so how far a crashed run got cannot "
            "be told; finish that version by hand, then run migrate; changed nothing"
        )
    if progress.applied is None:
        details = "; ".join(str(mismatch) for mismatch in progress.mismatches[:5])
        return refuse(
            f"the catalog matches no point of a partial run of v{first.name} (was the schema changed by hand?): "
            f"{details}; changed nothing"
        )
    drops = _drop_invalid_steps(state, pending)
    update = (Update(target.name),)
    if progress.applied == 0:
        situation = Situation.SET_UP if current == SETUP_VERSION else Situation.BEHIND
        return replace(base, situation=situation, pending=pending, steps=(*drops, *update))
    unknown = next((statement for statement in first.statements if not statement.recognised), None)
    if unknown is not None:
        return refuse(
            f"v{first.name} is partly applied ({progress.applied} of {len(first.statements)} statements) and holds a "
            f"statement whose effect the migrator cannot check, so it cannot tell what a repair must run: "
            f"{' '.join(unknown.text.split())[:200].rstrip(';')}; finish that version by hand, then run migrate; "
            "changed nothing"
        )
    repair = repair_steps(first, progress.applied, state.version)
    rest = () if first is target else update
    return replace(base, situation=Situation.PARTIAL, pending=pending, steps=(*drops, *repair, *rest))


def access_problem(state: State, planned: Plan) -> str | None:
    """Preflight: what stops the planned DDL before it starts, with the fix (None when nothing does)."""
    if not planned.steps:
        return None
    access = state.access
    user, schema, database = (
        quote_identifier(access.user),
        quote_identifier(access.schema),
        quote_identifier(state.database),
    )
    if access.server_version_num < MIN_SERVER_VERSION_NUM:
        return (
            f"PostgreSQL {access.server_version_num // 10000}.{access.server_version_num % 10000} is older than 13: "
            "Temporal's visibility schema creates btree_gin, "
            "which PostgreSQL 12 lets only a superuser create; upgrade the server to 13 or later"
        )
    if access.read_only:
        return (
            f"database {state.database!r} is read-only (default_transaction_read_only is on); "
            "point --endpoint/SQL_HOST at the primary (CloudNativePG: the -rw service), or turn the setting off"
        )
    if not access.can_create_in_schema:
        return (
            f"role {access.user!r} may not CREATE in schema {access.schema!r} of database {state.database!r} "
            f"(owned by {access.database_owner!r}; PostgreSQL 15 no longer grants CREATE on public to every role): "
            f"make {access.user!r} the database owner, or GRANT CREATE ON SCHEMA {schema} TO {user}, "
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
            f"{', '.join(missing)} needs: GRANT CREATE ON DATABASE {database} TO {user}, or have an "
            f"administrator run CREATE EXTENSION {quote_identifier(missing[0])} in it first (CloudNativePG: Database "
            "spec.extensions)"
        )
    return None
