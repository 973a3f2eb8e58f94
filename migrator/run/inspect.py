"""Observe and plan: for `status` and `plan` without the lock (changes nothing), and for `migrate` under it."""

from __future__ import annotations

from migrator.core.planner import Plan, Policy, Situation, facts_needed, plan
from migrator.core.rewrite import RewriteMode
from migrator.core.settings import Settings
from migrator.core.sizes import Sizes
from migrator.core.state import State
from migrator.core.vendor import VendorSchema, VendorVersion, definitions_needed, statements_needed
from migrator.db.catalog import read_sizes, read_table_facts
from migrator.db.driver import DatabaseMissingError, Driver
from migrator.db.interface import Connect, Database
from migrator.run.createdb import observe_absent
from migrator.source.tree import read_statements

NO_TABLES = Sizes({}, {}, {})  # a database still to be created
UPDATES = (Situation.BEHIND, Situation.PARTIAL)  # the situations whose pending statements may meet a table


def plan_absent(state: State, vendor: VendorSchema, target: VendorVersion, policy: Policy) -> Plan:
    """The plan of a database still to be created: a fresh install, whose statements are read first."""
    needed = statements_needed(vendor, state.version, target, invalid_indexes=False)
    return plan(state, read_statements(vendor, needed) if needed else vendor, target, policy, NO_TABLES)


def observe_and_plan(
    session: Database, vendor: VendorSchema, target: VendorVersion, policy: Policy, *, impact: bool = False
) -> tuple[State, Plan]:
    """The state and its plan. Only the statements of the versions the plan needs are read (none for a store at
    its target, whose catalog is read without definitions); reading them means observing again, definitions
    included (their seed rows are probed, and the store may have moved).
    The catalog's sizes are read only when versions are pending and the guard, the online decision (or the
    caller, for ``impact``) needs them, or an online rewrite is in progress: reading them takes a lock on every
    table, and a no-op needs none. The online path's facts are read only for tables pending statements rewrite
    or scan under a write-blocking lock."""
    state = session.observe(vendor, definitions=False)  # all a store at its target needs
    while needed := statements_needed(
        vendor, state.version, target, invalid_indexes=bool(state.catalog.invalid_indexes)
    ):
        vendor = read_statements(vendor, needed)
        state = session.observe(vendor)
    if not state.catalog.definitions and definitions_needed(
        state.version, target, invalid_indexes=bool(state.catalog.invalid_indexes)
    ):  # a later round of migrate: the statements were read already
        state = session.observe(vendor)
    if state.online is None:  # the guard and the online decision judge nothing without pending versions
        planned = plan(state, vendor, target)
        online = policy.rewrite_mode is not RewriteMode.PLAIN and planned.situation in UPDATES
        wanted = impact or policy.max_rewrite_size is not None or online
        if not (planned.pending and wanted):
            return state, plan(state, vendor, target, policy)
    sizes = read_sizes(lambda query, params: session.query(query, params, "reading table sizes"))
    tables = (
        facts_needed(planned, sizes) if state.online is None and policy.rewrite_mode is not RewriteMode.PLAIN else ()
    )
    facts = read_table_facts(lambda query, params: session.query(query, params, "reading table facts"), tables, sizes)
    return state, plan(state, vendor, target, policy, sizes, facts=facts)


def inspect(
    settings: Settings, vendor: VendorSchema, target: VendorVersion, connect: Connect = Driver.open
) -> tuple[State, Plan]:
    """Observe without the lock and without changing anything (status, plan), with the pending versions' impact.
    With ``--create-database`` a database that does not exist is observed as absent (asked of ``postgres``)."""
    policy = Policy.of(settings)
    while True:
        try:
            session = connect(settings, missing_database=settings.create_database)
        except DatabaseMissingError:
            state = observe_absent(settings, connect)
            if state is None:  # created since we tried: observe it
                continue
            return state, plan_absent(state, vendor, target, policy)
        with session:
            return observe_and_plan(session, vendor, target, policy, impact=True)
