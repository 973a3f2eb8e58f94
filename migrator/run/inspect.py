"""Observe and plan: for `status` and `plan` without the lock (changes nothing), and for `migrate` under it."""

from __future__ import annotations

from migrator.core.planner import Plan, Policy, plan
from migrator.core.settings import Settings
from migrator.core.sizes import Sizes
from migrator.core.state import State
from migrator.core.vendor import VendorSchema, VendorVersion, statements_needed
from migrator.db.catalog import read_sizes
from migrator.db.driver import DatabaseMissingError, Driver
from migrator.db.interface import Connect, Database
from migrator.run.createdb import observe_absent
from migrator.source.tree import read_statements

NO_TABLES = Sizes({}, {}, {})  # a database still to be created


def plan_absent(state: State, vendor: VendorSchema, target: VendorVersion, policy: Policy) -> Plan:
    """The plan of a database still to be created: a fresh install, whose statements are read first."""
    needed = statements_needed(vendor, state.version, target, invalid_indexes=False)
    return plan(state, read_statements(vendor, needed) if needed else vendor, target, policy, NO_TABLES)


def observe_and_plan(
    session: Database, vendor: VendorSchema, target: VendorVersion, policy: Policy, *, impact: bool = False
) -> tuple[State, Plan]:
    """The state and its plan. Only the statements of the versions the plan needs are read (none for a store at
    its target); reading them means observing again (their seed rows are probed, and the store may have moved).
    The catalog's sizes are read only when versions are pending and the guard (or the caller, for ``impact``)
    needs them: reading them takes a lock on every table, and a no-op needs none."""
    state = session.observe(vendor)
    while needed := statements_needed(
        vendor, state.version, target, invalid_indexes=bool(state.catalog.invalid_indexes)
    ):
        vendor = read_statements(vendor, needed)
        state = session.observe(vendor)
    planned = plan(state, vendor, target)  # the guard of ``policy`` judges nothing without pending versions
    if planned.pending and (impact or policy.max_rewrite_size is not None):
        sizes = read_sizes(lambda query, params: session.query(query, params, "reading table sizes"))
        planned = plan(state, vendor, target, policy, sizes)
    return state, planned


def inspect(
    settings: Settings, vendor: VendorSchema, target: VendorVersion, connect: Connect = Driver.open
) -> tuple[State, Plan]:
    """Observe without the lock and without changing anything (status, plan), with the pending versions' impact.
    With ``--create-database`` a database that does not exist is observed as absent (asked of ``postgres``)."""
    policy = Policy(settings.max_rewrite_size)
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
