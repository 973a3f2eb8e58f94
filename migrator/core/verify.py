"""After `migrate`: does the catalog hold what a clean install at the target holds, definitions included? (pure)"""

from __future__ import annotations

from migrator.core.repair import Expectations, expectations
from migrator.core.state import State
from migrator.core.statements import Kind
from migrator.core.vendor import VendorSchema, VendorVersion


def expected_objects(vendor: VendorSchema, target: VendorVersion) -> Expectations:
    """What the vendor's statements up to ``target`` leave behind, definitions as far as they are certain (an
    ``IF NOT EXISTS`` create leaves whatever was there)."""
    return expectations(
        statement
        for version in vendor.versions
        if version.version <= target.version
        for statement in version.statements
    )


def verification_problems(state: State, vendor: VendorSchema, target: VendorVersion) -> list[str]:
    """After `migrate`: every object a clean install at ``target`` has, as it has it (INVALID counts as absent).

    Seed rows count only where observed (`observe`'s ``seeds_after``): the server updates older ones.
    """
    problems: list[str] = []
    for ref, expected in expected_objects(vendor, target).items():
        if ref.kind is Kind.ROW and ref.name not in state.catalog.rows:
            continue
        seen = state.catalog.seen(ref)
        if not seen.fits(expected.present, expected.attributes):
            invalid = ref.kind is Kind.INDEX and not seen.present and ref.name in state.catalog.indexes
            problems.append(f"{ref}: expected {expected}, found {'INVALID' if invalid else seen}")
    return problems
