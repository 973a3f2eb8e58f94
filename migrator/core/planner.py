"""Decide what a run must do: a pure function of (observed state, vendor tree, target, policy). No I/O here.

The plan is the steps *and* one verdict: ok, refused (exit 6) or blocked before any DDL (exit 4 or 6: the
privilege preflight, a missing database the role may not create, the ``--max-rewrite-size`` guard, the online
rewrite's preflight). `plan` and `migrate` both act on that verdict, so they cannot disagree. Every row of the
states table in the README is a branch below and a unit test in tests/core/test_planner.py (the online
rewrite's in tests/core/test_rewrite.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from packaging.version import Version

from migrator.core.online import OnlineProgress, Phase, TableFacts
from migrator.core.rewrite import RewriteDecision, RewriteMode, Route, preflight, wants_online, why
from migrator.core.settings import Settings
from migrator.core.state import State
from migrator.core.statements import Form, Kind, Statement, concurrent_index
from migrator.core.vendor import VendorSchema, VendorVersion, definitions_needed
from migrator.core.versions import parse_version
from migrator.errors import AccessError, ExitStatus, MigratorError, UnsafeStateError, UsageError

if TYPE_CHECKING:
    from migrator.core.impact import StatementImpact, VersionImpact
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
    ONLINE = "online-rewrite in progress"  # a run left an online rewrite unfinished (shown with its phase)


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
    rewrite_mode: RewriteMode = RewriteMode.AUTO
    max_stall: float = 1.0  # seconds of plain stall tolerated before auto goes online
    allow_all_tables_publication: bool = False
    abort_online: bool = False  # plan only the abort of the online rewrite in progress

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            settings.max_rewrite_size,
            RewriteMode(settings.rewrite_mode),
            settings.max_stall,
            settings.online_allow_all_tables_publication,
            settings.abort_online,
        )


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
    online: OnlineProgress | None = None  # the online rewrite a run left in progress
    rewrites: tuple[RewriteDecision, ...] = ()  # the path of each table pending statements rewrite or scan
    online_refusal: str | None = None  # the online path asked for and refused by its preflight (exit 6)
    online_statements: frozenset[tuple[str, int]] = frozenset()  # (version, statement) not run plain

    @property
    def state(self) -> str:
        """The situation as `status` shows it: ``online-rewrite in progress (copy)`` with the phase."""
        if self.situation is Situation.ONLINE and self.online is not None:
            return f"{self.situation.value} ({self.online.phase.value})"
        return self.situation.value

    @property
    def blocked(self) -> str | None:
        return self.verdict.reason if self.verdict.outcome is Outcome.BLOCKED else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "schema": self.store,
            "current_version": self.current,
            "target_version": self.target,
            "state": self.state,
            "pending_versions": [item.name for item in self.pending],
            "refusal": self.refusal,
            "warnings": list(self.warnings),
            "online_rewrite": None
            if self.online is None
            else {"table": self.online.table, "versions": list(self.online.versions), "phase": self.online.phase.value},
            "rewrites": [decision.to_dict() for decision in self.rewrites],
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
    state: State,
    vendor: VendorSchema,
    target: VendorVersion,
    policy: Policy = Policy(),
    sizes: Sizes | None = None,
    *,
    facts: Mapping[str, TableFacts] | None = None,
) -> Plan:
    """The steps that bring ``state`` to ``target``, their impact and the one verdict on them.

    ``sizes`` are the catalog's table sizes, read by the shell before planning; the impact report is derived
    from them, and the ``--max-rewrite-size`` guard and the online decision of ``policy`` need them (a
    ValueError without them where they decide something; without them ``auto`` estimates nothing and stays
    plain). ``facts`` are those of the tables `facts_needed` names, for the online path's preflight.
    """
    invalid = bool(state.catalog.invalid_indexes)
    if not state.catalog.definitions and definitions_needed(state.version, target, invalid_indexes=invalid):
        raise ValueError("planning pending versions needs the catalog's definitions")
    inputs = _Inputs(policy, sizes, facts or {})
    decided = _in_progress(state, vendor, target, inputs) or _steps(state, vendor, target, inputs)
    if policy.abort_online and state.online is None:
        warning = "--abort-online: no online rewrite is in progress, so there is nothing to abort; ran nothing"
        decided = replace(decided, steps=(), rewrites=(), warnings=(*decided.warnings, warning))
    if sizes is None:
        if policy.max_rewrite_size is not None and decided.pending and decided.steps:
            raise ValueError("the --max-rewrite-size guard needs the catalog's sizes")
        return replace(decided, verdict=_verdict(state, decided, policy))
    from migrator.core.impact import impact_report  # noqa: PLC0415 - a store at its target needs no impact report

    impact = (
        replace(version, statements=tuple(replace(s, online=(version.version, s.index) in decided.online_statements)
                                          for s in version.statements))
        for version in impact_report(decided.pending, sizes, _repaired(decided))
    )  # fmt: skip
    judged = replace(decided, impact=tuple(impact))
    return replace(judged, verdict=_verdict(state, judged, policy))


def _repaired(planned: Plan) -> int:
    """Statements of the first pending version already in place (a repair skips them)."""
    if planned.situation is not Situation.PARTIAL:
        return 0
    first = planned.pending[0].name
    return sum(1 for step in planned.steps if isinstance(step, SkipStatement) and step.version == first)


def facts_needed(planned: Plan, sizes: Sizes) -> frozenset[str]:
    """The tables whose facts the online decision may need: those that pending statements (of ``planned``, made
    without sizes) rewrite or scan under a write-blocking lock, and which exist before their version."""
    if not planned.pending or planned.online is not None:
        return frozenset()
    from migrator.core.impact import impact_report  # noqa: PLC0415 - see plan

    return frozenset(
        item.table
        for version in impact_report(planned.pending, sizes, _repaired(planned))
        for item in version.statements
        if item.heavy and item.size is not None and item.table is not None
    )


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
    if planned.online_refusal:
        return Verdict.blocked(planned.online_refusal, ExitStatus.UNSAFE_STATE)
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


def _steps(state: State, vendor: VendorSchema, target: VendorVersion, inputs: _Inputs) -> Plan:
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
    if progress.applied == 0:
        situation = Situation.SET_UP if current == SETUP_VERSION else Situation.BEHIND
        rest = _rest(state, pending, state.version, inputs)
        return rest.onto(replace(base, situation=situation, pending=pending, steps=drops))
    unknown = next((statement for statement in first.statements if not statement.recognised), None)
    if unknown is not None:
        return refuse(
            f"v{first.name} is partly applied ({progress.applied} of {len(first.statements)} statements) and holds a "
            f"statement whose effect the migrator cannot check, so it cannot tell what a repair must run: "
            f"{' '.join(unknown.text.split())[:200].rstrip(';')}; finish that version by hand, then run migrate; "
            "changed nothing"
        )
    repair = repair_steps(first, progress.applied, state.version)
    rest = _rest(state, pending[1:], first.name, inputs)
    return rest.onto(replace(base, situation=Situation.PARTIAL, pending=pending, steps=(*drops, *repair)))


@dataclass(frozen=True)
class _Inputs:
    """What the online decision is made from, besides the state and the tree."""

    policy: Policy
    sizes: Sizes | None
    facts: Mapping[str, TableFacts]


@dataclass(frozen=True)
class _Rest:
    """The steps that apply versions not partly applied, and the path each heavy table takes."""

    steps: tuple[Step, ...] = ()
    rewrites: tuple[RewriteDecision, ...] = ()
    warnings: tuple[str, ...] = ()
    refusal: str | None = None  # the online path asked for and refused (blocked, exit 6)
    handled: frozenset[tuple[str, int]] = frozenset()  # (version, statement) not run plain

    def onto(self, planned: Plan) -> Plan:
        return replace(
            planned,
            steps=(*planned.steps, *self.steps),
            rewrites=self.rewrites,
            warnings=(*planned.warnings, *self.warnings),
            online_refusal=self.refusal,
            online_statements=self.handled,
        )


def _in_progress(state: State, vendor: VendorSchema, target: VendorVersion, inputs: _Inputs) -> Plan | None:
    """A run left an online rewrite unfinished: abort it (alone), or resume it and then finish the versions. None
    when there is none (or the version row is not one of the tree's, which `_steps` refuses). The catalog is not
    compared with the versions: the swap may have put their columns in place already."""
    online = state.online
    try:
        current = parse_version(state.version or "")
    except ValueError:
        return None
    if online is None or (current != SETUP_VERSION and vendor.find(current) is None):
        return None
    base = Plan(
        Situation.ONLINE, state.database, vendor.store, state.version, target.name, online=online,
        warnings=_locked_warning(state),
    )  # fmt: skip
    what = f"the online rewrite of {online.table} ({', '.join(online.versions)}, phase {online.phase})"
    if inputs.policy.abort_online:
        if online.phase is Phase.CLEANUP:
            return replace(
                base,
                refusal=f"{what} has already swapped the new table in, so it cannot be aborted: run migrate without "
                "--abort-online to finish it; changed nothing",
            )
        return replace(base, steps=(AbortOnline(online.table),))
    if inputs.policy.rewrite_mode is RewriteMode.PLAIN:
        return replace(
            base,
            refusal=f"{what} is in progress and --rewrite-mode plain cannot run beside it: run migrate without "
            "--rewrite-mode plain to resume it, or migrate --abort-online to remove it first; changed nothing",
        )
    pending = tuple(vendor.between(current, target.version))
    group = pending[: len(online.versions)]
    if tuple(version.name for version in group) != online.versions:
        names = ", ".join(version.name for version in pending) or "none"
        return replace(
            base,
            refusal=f"{what} is in progress, but the versions pending to target {target.name} are {names}: run "
            "migrate --abort-online, then migrate; changed nothing",
        )
    if inputs.sizes is None:
        raise ValueError("resuming an online rewrite needs the catalog's sizes (which index is on which table)")
    from migrator.core.impact import impact_report  # noqa: PLC0415 - see plan

    reports = impact_report(pending, inputs.sizes)
    reason = f"resumes the online rewrite a run left in progress (phase {online.phase})"
    steps, handled = _online_steps(group, reports, online.table, state.version, reason)
    rest = _rest(state, pending[len(group) :], group[-1].name, inputs)
    resumed = RewriteDecision(online.table, online.versions, Route.ONLINE, _bytes(inputs.sizes, online.table), reason)
    merged = replace(rest, rewrites=(resumed, *rest.rewrites), handled=handled | rest.handled)
    return merged.onto(replace(base, pending=pending, steps=steps))


def _bytes(sizes: Sizes, table: str) -> int | None:
    size = sizes.tables.get(table)
    return None if size is None else size.bytes


def _shadow_statements(version: VendorVersion, report: VersionImpact, table: str) -> tuple[int, ...]:
    """The statements (1-based) of ``version`` an online rewrite of ``table`` applies to its shadow: its ALTER
    TABLEs, the indexes built on it and the drops of its indexes; DO blocks and other tables' statements run
    after the swap."""
    forms = (Form.ALTER_TABLE, Form.CREATE_INDEX, Form.DROP_INDEX)
    return tuple(
        item.index
        for statement, item in zip(version.statements, report.statements, strict=True)
        if item.table == table and statement.touch.form in forms
    )


def _online_steps(
    group: Sequence[VendorVersion], reports: Sequence[VersionImpact], table: str, old: str | None, reason: str
) -> tuple[tuple[Step, ...], frozenset[tuple[str, int]]]:
    """OnlineRewrite of ``group`` on ``table``, then for each version: skip what the shadow applied, run the
    rest, record it (the tool never runs its ALTER: on the swapped table it would take ACCESS EXCLUSIVE again)."""
    by_name = {report.version: report for report in reports}
    shadowed = {version.name: _shadow_statements(version, by_name[version.name], table) for version in group}
    statements = tuple(version.statements[index - 1].text for version in group for index in shadowed[version.name])
    steps: list[Step] = [OnlineRewrite(table, tuple(version.name for version in group), statements, reason)]
    for version in group:
        total = len(version.statements)
        steps += [
            (SkipStatement if number in shadowed[version.name] else RunStatement)(
                version.name, number, total, statement.text
            )
            for number, statement in enumerate(version.statements, start=1)
        ]
        steps.append(RecordVersion(version.name, old))
        old = version.name
    handled = frozenset((version, index) for version, indexes in shadowed.items() for index in indexes)
    return tuple(steps), handled


def _heavy(version: VendorVersion, report: VersionImpact) -> dict[str, list[tuple[Statement, StatementImpact]]]:
    """Table -> the statements of ``version`` that rewrite it or scan it under a write-blocking lock, for tables
    that exist before the version (a table it creates is empty)."""
    found: dict[str, list[tuple[Statement, StatementImpact]]] = {}
    for statement, item in zip(version.statements, report.statements, strict=True):
        if item.heavy and item.size is not None and item.table is not None:
            found.setdefault(item.table, []).append((statement, item))
    return found


def _index_only(items: Sequence[tuple[Statement, StatementImpact]]) -> bool:
    from migrator.core.impact import Effect  # noqa: PLC0415 - see plan

    return all(item.effect is Effect.SCAN and statement.touch.form is Form.CREATE_INDEX for statement, item in items)


def _rest(state: State, versions: Sequence[VendorVersion], old: str | None, inputs: _Inputs) -> _Rest:
    """The steps that bring the store from ``old`` through ``versions``: the tool's update, except where a heavy
    statement's table goes online (an OnlineRewrite of the consecutive versions that rewrite it, then their
    remaining statements and records) or gets its plain CREATE INDEX built concurrently first."""
    if not versions:
        return _Rest()
    policy, sizes = inputs.policy, inputs.sizes
    if sizes is None:
        if policy.rewrite_mode is RewriteMode.ONLINE:
            raise ValueError("--rewrite-mode online needs the catalog's sizes")
        return _Rest((Update(versions[-1].name),))
    from migrator.core.impact import impact_report  # noqa: PLC0415 - see plan

    reports = impact_report(versions, sizes)
    decider = _Decider(state, policy, sizes, inputs.facts)
    online_table, builds = decider.judge(versions, reports)
    steps: list[Step] = []
    handled = set(decider.built)
    covered: str | None = None  # the last version the next update-schema applies
    position = 0
    while position < len(versions):
        table = online_table.get(versions[position].name)
        group = [versions[position]]
        while table is not None and position + len(group) < len(versions):
            following = versions[position + len(group)]
            if online_table.get(following.name) != table:
                break
            group.append(following)
        if covered is not None and (table is not None or builds.get(group[0].name)):
            steps.append(Update(covered))
            old, covered = covered, None
        position += len(group)
        if table is None:
            steps += builds.get(group[0].name, ())
            covered = group[0].name
            continue
        reason = decider.reason(table)
        online, shadowed = _online_steps(group, reports, table, old, reason)
        steps += online
        handled |= shadowed
        decider.decided(
            RewriteDecision(table, tuple(v.name for v in group), Route.ONLINE, _bytes(sizes, table), reason)
        )
        old = group[-1].name
    if covered is not None:
        steps.append(Update(covered))
    return _Rest(tuple(steps), decider.decisions(), tuple(decider.warnings), decider.refusal(), frozenset(handled))


class _Decider:
    """The per-table judgement of `_rest`: wanted online (mode and estimate), allowed (preflight), and the
    decisions, warnings and refusals it leads to, in the order met."""

    def __init__(self, state: State, policy: Policy, sizes: Sizes, facts: Mapping[str, TableFacts]) -> None:
        self.state, self.policy, self.sizes, self.facts = state, policy, sizes, facts
        self.warnings: list[str] = []
        self.refusals: list[str] = []
        self.built: set[tuple[str, int]] = set()
        self._decisions: list[RewriteDecision] = []

    def judge(
        self, versions: Sequence[VendorVersion], reports: Sequence[VersionImpact]
    ) -> tuple[dict[str, str], dict[str, list[BuildIndexConcurrently]]]:
        """Version -> the table it rewrites online, and version -> its concurrent index builds."""
        online_table: dict[str, str] = {}
        builds: dict[str, list[BuildIndexConcurrently]] = {}
        columns = set(self.state.catalog.columns)  # what exists before each version, the earlier ones applied
        for version, report in zip(versions, reports, strict=True):
            candidates = []
            for table, items in _heavy(version, report).items():
                built = self.builds(version, table, items, columns) if _index_only(items) else None
                if built is not None:
                    builds.setdefault(version.name, []).extend(built)
                elif self.online(version, table):
                    candidates.append(table)
            if len(candidates) == 1:
                online_table[version.name] = candidates[0]
            elif candidates:
                self.too_many(version, candidates)
            columns |= {
                effect.ref.name
                for statement in version.statements
                for effect in statement.effects
                if effect.ref.kind is Kind.COLUMN and effect.present
            }
        return online_table, builds

    def wanted(self, table: str) -> bool:
        return wants_online(_bytes(self.sizes, table), self.policy.rewrite_mode, self.policy.max_stall)

    def reason(self, table: str) -> str:
        return why(_bytes(self.sizes, table), self.policy.rewrite_mode, self.policy.max_stall)

    def problems(self, table: str) -> tuple[str, ...]:
        facts = self.facts.get(table)
        if facts is None:
            raise ValueError(f"the online decision needs the facts of table {table} (see facts_needed)")
        found = preflight(facts, allow_all_tables_publication=self.policy.allow_all_tables_publication)
        access = self.state.access
        if not access.can_create_in_database:
            found += (
                f"role {access.user!r} may not CREATE in database {self.state.database!r}, and the online rewrite "
                f"creates two schemas: GRANT CREATE ON DATABASE {quote_identifier(self.state.database)} TO "
                f"{quote_identifier(access.user)}, or use --rewrite-mode plain",
            )
        return found

    def decided(self, decision: RewriteDecision) -> None:
        """Record a decision; a plain one for the same table and reason as the last one extends it."""
        last = next((item for item in reversed(self._decisions) if item.table == decision.table), None)
        if (
            last is not None
            and decision.path is Route.PLAIN
            and (last.path, last.reason) == (Route.PLAIN, decision.reason)
        ):
            self._decisions[self._decisions.index(last)] = replace(last, versions=(*last.versions, *decision.versions))
        else:
            self._decisions.append(decision)

    def plain(self, version: VendorVersion, table: str, reason: str, refusals: tuple[str, ...] = ()) -> None:
        self.decided(RewriteDecision(table, (version.name,), Route.PLAIN, _bytes(self.sizes, table), reason, refusals))

    def online(self, version: VendorVersion, table: str) -> bool:
        """Whether ``version``'s rewrite of ``table`` goes online; a refusal is a warning in auto (it runs plain,
        under the --max-rewrite-size guard) and blocks the plan when online was asked for."""
        reason = self.reason(table)
        if not self.wanted(table):
            self.plain(version, table, reason)
            return False
        problems = self.problems(table)
        if not problems:
            return True
        if self.policy.rewrite_mode is RewriteMode.ONLINE:
            self.refusals.append(
                f"v{version.name} rewrites {table} and the online path is refused: {'; '.join(problems)}"
            )
        elif not any(item.table == table and item.refusals for item in self._decisions):
            self.warnings.append(
                f"{table} is rewritten plain ({reason}): the online path is refused: {'; '.join(problems)}"
            )
        self.plain(version, table, f"{reason}; the online path is refused", problems)
        return False

    def too_many(self, version: VendorVersion, tables: Sequence[str]) -> None:
        problem = (
            f"v{version.name} rewrites {len(tables)} tables ({', '.join(tables)}), and the online path takes one table "
            "per version"
        )
        if self.policy.rewrite_mode is RewriteMode.ONLINE:
            self.refusals.append(f"{problem}: use --rewrite-mode auto or plain")
        else:
            self.warnings.append(f"{problem}: they are rewritten plain")
        for table in tables:
            self.plain(version, table, f"{self.reason(table)}; {problem}")

    def builds(
        self, version: VendorVersion, table: str, items: Sequence[tuple[Statement, StatementImpact]], columns: set[str]
    ) -> list[BuildIndexConcurrently] | None:
        """Concurrent builds of ``version``'s plain CREATE INDEXes on ``table`` (none when it stays plain); None
        when one of them cannot be built before the version (it adds the index's columns, or drops the index
        first): the version is then a rewrite candidate like any other."""
        reason = self.reason(table)
        if not self.wanted(table):
            self.plain(version, table, reason)
            return []
        dropped = {statement.touch.index for statement in version.statements if statement.touch.form is Form.DROP_INDEX}
        found = []
        for statement, item in items:
            index = statement.touch.index
            derived = concurrent_index(statement.text)
            if derived is None or index is None or index in dropped:
                return None
            if index in self.state.catalog.indexes:  # the vendor's statement finds it: nothing to build
                continue
            if not all(f"{table}.{column}" in columns for column in derived.columns):
                return None
            found.append((item.index, BuildIndexConcurrently(version.name, table, index, derived.text)))
        self.built.update((version.name, number) for number, _ in found)
        if found:
            self.decided(RewriteDecision(table, (version.name,), Route.CONCURRENT_INDEX, _bytes(self.sizes, table),
                                         f"{reason}; its CREATE INDEX built CONCURRENTLY first"))  # fmt: skip
        return [build for _, build in found]

    def decisions(self) -> tuple[RewriteDecision, ...]:
        return tuple(self._decisions)

    def refusal(self) -> str | None:
        if not self.refusals:
            return None
        return "; ".join(self.refusals) + "; changed nothing"


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
