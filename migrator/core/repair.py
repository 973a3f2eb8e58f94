"""How far did a crashed attempt get inside the first pending version? (pure)

The tool runs a version's statements one by one in autocommit and records the version only after the last,
so a crash always leaves "the first k statements applied" for some k in 0..n. For each k we know what the
objects the version touches must look like: the effect of the last statement ≤ k touching an object, or, if
none did, the opposite of the first *unconditional* effect on it. Conditional effects (``IF [NOT] EXISTS``, a
``DO`` block's) hold afterwards but say nothing about before: an administrator may have created the object.
k is the largest prefix the catalog agrees with; then we step back over statements that decide nothing
(no observable or only conditional effects), which re-run harmlessly — so they never decide k.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from migrator.core.state import Catalog, Seen
from migrator.core.statements import Effect, ObjectRef, Statement


@dataclass(frozen=True)
class Mismatch:
    ref: ObjectRef
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.ref}: expected {self.expected}, found {self.found}"


def _describe(present: bool, not_null: bool | None = None, has_default: bool | None = None) -> str:
    if not present:
        return "absent"
    if not_null is None:
        return "present"
    return f"present ({'NOT NULL' if not_null else 'nullable'}, {'with' if has_default else 'no'} default)"


def _seen_text(seen: Seen) -> str:
    return _describe(seen.present, seen.not_null, seen.has_default)


def _agrees(expected: Effect, seen: Seen, initial: bool, compare_shape: bool) -> bool:
    if expected.present != seen.present:
        return False
    if not expected.present or initial:
        return True
    if compare_shape and expected.not_null is not None:
        return (expected.not_null, expected.has_default) == (seen.not_null, seen.has_default)
    return True


def _mismatches(statements: tuple[Statement, ...], k: int, catalog: Catalog) -> list[Mismatch]:
    touches = Counter(effect.ref for statement in statements for effect in statement.effects)
    expected: dict[ObjectRef, tuple[Effect, bool]] = {}
    for statement in reversed(statements):  # the first unconditional touch decides the initial state
        for effect in statement.effects:
            if not effect.conditional:
                expected[effect.ref] = (Effect(effect.ref, not effect.present), True)
    for statement in statements[:k]:
        for effect in statement.effects:
            expected[effect.ref] = (effect, False)
    found: list[Mismatch] = []
    for ref, (effect, initial) in expected.items():
        seen = catalog.seen(ref)
        compare_shape = touches[ref] > 1  # a version that drops and re-adds an object: the shape tells them apart
        if not _agrees(effect, seen, initial, compare_shape):
            want = (
                _describe(effect.present)
                if initial
                else _describe(
                    effect.present, *((effect.not_null, effect.has_default) if compare_shape else (None, None))
                )
            )
            found.append(Mismatch(ref, want, _seen_text(seen)))
    return found


@dataclass(frozen=True)
class Progress:
    """``applied`` statements of the version are in place; ``mismatches`` explain a refusal (applied is None)."""

    applied: int | None
    mismatches: tuple[Mismatch, ...] = ()


def applied_prefix(statements: tuple[Statement, ...], catalog: Catalog) -> Progress:
    """Find k, the number of leading statements whose effects the catalog shows."""
    candidates = [k for k in range(len(statements), -1, -1) if not _mismatches(statements, k, catalog)]
    if not candidates:
        closest = min(range(len(statements) + 1), key=lambda k: len(_mismatches(statements, k, catalog)))
        return Progress(None, tuple(_mismatches(statements, closest, catalog)))
    k = candidates[0]
    while k > 0 and not statements[k - 1].decisive:
        k -= 1
    return Progress(k)
