"""How far did a crashed attempt get inside the first pending version? (pure)

The tool runs a version's statements one by one in autocommit and records the version only after the last,
so a crash always leaves "the first k statements applied" for some k in 0..n. For each k we know what the
objects the version touches must look like, definitions included: what the versions before left (``before``),
then the effects of statements 1..k folded over it (`expect`). An object the earlier versions do not know starts
as the opposite of the first decisive effect on it; conditional effects (``IF [NOT] EXISTS``, a ``DO`` block's)
hold afterwards but say nothing about before, nor which definition the object has.

k is found as the prefixes the catalog agrees with, each stepped back over statements that decide nothing
(only conditional or rerunnable effects: they re-run harmlessly, so they never decide k). One such k: repair from
there. Two or more: the catalog fits two different points equally (a version that re-creates an object as it
was), so the answer would be a guess: refused, naming the objects. If the definitions the earlier versions left
match no prefix (a store set up by another release's files), presence alone is tried before refusing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from migrator.core.state import Catalog, describe_shape
from migrator.core.statements import Effect, Kind, ObjectRef, Statement


@dataclass(frozen=True)
class Expected:
    """What an object must look like: present or absent, and the attributes of its definition that are known."""

    present: bool
    attributes: Mapping[str, str]

    def __str__(self) -> str:
        if not self.present:
            return "absent"
        return "present" + (f" ({describe_shape(self.attributes)})" if self.attributes else "")


Expectations = dict[ObjectRef, Expected]


def expect(expected: Expectations, effect: Effect) -> None:
    """Fold one effect into ``expected``: what holds after the statement that has it."""
    previous = expected.get(effect.ref)
    if not effect.present:
        expected[effect.ref] = Expected(False, {})
        if effect.ref.kind is Kind.TABLE:  # its columns and indexes go with it
            for ref, item in list(expected.items()):
                if _belongs(ref, item, effect.ref.name):
                    expected[ref] = Expected(False, {})
    elif effect.partial:
        known = previous.attributes if previous is not None and previous.present else {}
        expected[effect.ref] = Expected(True, {**known, **dict(effect.shape)})
    elif effect.conditional:  # nothing was done if it was there: its definition is whatever it was
        known = previous.attributes if previous is not None and previous.present else {}
        expected[effect.ref] = Expected(True, dict(known))
    else:
        expected[effect.ref] = Expected(True, dict(effect.shape))


def expectations(statements: Iterable[Statement], start: Expectations | None = None) -> Expectations:
    """What ``statements`` leave, run in order after ``start``."""
    expected: Expectations = dict(start or {})
    for statement in statements:
        for effect in statement.effects:
            expect(expected, effect)
        table = statement.touch.table
        if not statement.recognised and table is not None:  # it changes the table in a way not modelled
            for ref in [ref for ref, item in expected.items() if _belongs(ref, item, table)]:
                del expected[ref]
    return expected


def _belongs(ref: ObjectRef, item: Expected, table: str) -> bool:
    """A column or index of ``table``."""
    return (ref.kind is Kind.COLUMN and ref.name.startswith(f"{table}.")) or (
        ref.kind is Kind.INDEX and item.attributes.get("table") == table
    )


@dataclass(frozen=True)
class Mismatch:
    ref: ObjectRef
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.ref}: expected {self.expected}, found {self.found}"


def _initial(statements: tuple[Statement, ...], before: Mapping[ObjectRef, Expected] | None) -> Expectations:
    """The objects the version touches, as they were before it: from ``before`` when it knows them (None: only
    presence, from the first decisive effect)."""
    initial: Expectations = {}
    for statement in reversed(statements):  # the first decisive touch decides the initial state
        for effect in statement.effects:
            if effect.decisive:
                initial[effect.ref] = Expected(not effect.present, {})
    if before is not None:
        for statement in statements:
            for effect in statement.effects:
                if effect.ref in before:
                    initial[effect.ref] = before[effect.ref]
                    if effect.ref.kind is Kind.TABLE:  # a table the version drops: its columns and indexes too
                        for ref, item in before.items():
                            if _belongs(ref, item, effect.ref.name):
                                initial.setdefault(ref, item)
    return initial


def _mismatches(statements: tuple[Statement, ...], k: int, catalog: Catalog, initial: Expectations) -> list[Mismatch]:
    expected = expectations(statements[:k], initial)
    found: list[Mismatch] = []
    for ref, item in expected.items():
        seen = catalog.seen(ref)
        if not seen.fits(item.present, item.attributes):
            found.append(Mismatch(ref, str(item), str(seen)))
    return found


@dataclass(frozen=True)
class Progress:
    """``applied`` statements of the version are in place. When None, ``mismatches`` explain why no point fits,
    or ``ambiguous`` names the points that fit equally and ``objects`` what they disagree on."""

    applied: int | None
    mismatches: tuple[Mismatch, ...] = ()
    ambiguous: tuple[int, ...] = ()
    objects: tuple[ObjectRef, ...] = ()


def _step_back(statements: tuple[Statement, ...], k: int) -> int:
    while k > 0 and not statements[k - 1].decisive:
        k -= 1
    return k


def applied_prefix(
    statements: tuple[Statement, ...], catalog: Catalog, before: Mapping[ObjectRef, Expected] | None = None
) -> Progress:
    """Find k, the number of leading statements whose effects the catalog shows (``before``: what the versions
    before this one left, `expectations`)."""
    strict = _initial(statements, before)
    initials = [strict] if before is None else [strict, _initial(statements, None)]
    for initial in initials:
        fitting = sorted(
            {
                _step_back(statements, k)
                for k in range(len(statements) + 1)
                if not _mismatches(statements, k, catalog, initial)
            }
        )
        if len(fitting) == 1:
            return Progress(fitting[0])
        if len(fitting) > 1:
            objects = {
                effect.ref
                for statement in statements[fitting[0] : fitting[-1]]
                for effect in statement.effects
                if effect.decisive
            }
            return Progress(None, ambiguous=tuple(fitting), objects=tuple(sorted(objects, key=str)))
    closest = min(range(len(statements) + 1), key=lambda k: len(_mismatches(statements, k, catalog, strict)))
    return Progress(None, tuple(_mismatches(statements, closest, catalog, strict)))
