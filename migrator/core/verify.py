"""After `migrate`: does the catalog hold what a clean install at the target holds? (pure)"""

from __future__ import annotations

from migrator.core.state import State
from migrator.core.statements import Effect, Kind, ObjectRef
from migrator.core.vendor import VendorSchema, VendorVersion


def expected_objects(vendor: VendorSchema, target: VendorVersion) -> dict[ObjectRef, Effect]:
    """What the vendor's statements up to ``target`` leave behind: the last effect on each object."""
    expected: dict[ObjectRef, Effect] = {}
    for version in vendor.versions:
        if version.version > target.version:
            break
        for statement in version.statements:
            for effect in statement.effects:
                expected[effect.ref] = effect
    return expected


def verification_problems(state: State, vendor: VendorSchema, target: VendorVersion) -> list[str]:
    """After `migrate`: every object a clean install at ``target`` has, as it has it (INVALID counts as absent).

    Seed rows count only where observed (`observe`'s ``seeds_after``): the server updates older ones.
    """
    problems: list[str] = []
    for ref, effect in expected_objects(vendor, target).items():
        if ref.kind is Kind.ROW and ref.name not in state.catalog.rows:
            continue
        seen = state.catalog.seen(ref)
        if seen.present != effect.present:
            found = "INVALID" if ref.kind is Kind.INDEX and ref.name in state.catalog.indexes else "absent"
            problems.append(
                f"{ref}: expected {'present' if effect.present else 'absent'}, found "
                f"{found if effect.present else 'present'}"
            )
    return problems
