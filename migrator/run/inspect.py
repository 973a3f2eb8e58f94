"""`status` and `plan`: observe without the lock, plan, and read the pending versions' impact. Changes nothing."""

from __future__ import annotations

from migrator.core.impact import VersionImpact, impact_report
from migrator.core.planner import Action, Plan, plan
from migrator.core.settings import Settings
from migrator.core.state import State
from migrator.core.vendor import VendorSchema, VendorVersion, statements_needed
from migrator.db.catalog import read_sizes
from migrator.db.driver import Driver
from migrator.source.tree import read_statements


def observe_and_plan(driver: Driver, vendor: VendorSchema, target: VendorVersion) -> tuple[State, Plan]:
    """Observe, read the statements of the versions the plan needs (none for a store at its target), plan.

    Reading statements means observing again: their seed rows are probed, and the store may have moved."""
    state = driver.observe(vendor)
    while needed := statements_needed(
        vendor, state.version, target, invalid_indexes=bool(state.catalog.invalid_indexes)
    ):
        vendor = read_statements(vendor, needed)
        state = driver.observe(vendor)
    return state, plan(state, vendor, target)


def impact_of(driver: Driver, planned: Plan) -> list[VersionImpact]:
    """The impact report of the pending versions (the catalog's sizes are read only when some are pending);
    statements a repair skips are in place already and have no impact left."""
    if not planned.pending:
        return []
    applied = sum(1 for step in planned.steps if step.action is Action.SKIP_STATEMENT)
    sizes = read_sizes(lambda query, params: driver.query(query, params, "reading table sizes"))
    return impact_report(planned.pending, sizes, applied)


def inspect(settings: Settings, vendor: VendorSchema, target: VendorVersion) -> tuple[State, Plan, list[VersionImpact]]:
    """Observe without the lock and without changing anything (status, plan), with the pending versions' impact."""
    with Driver.open(settings) as driver:
        state, planned = observe_and_plan(driver, vendor, target)
        return state, planned, impact_of(driver, planned)
