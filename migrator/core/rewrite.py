"""Online or plain: whether a table the pending statements would rewrite (or scan under a write-blocking lock) is
rebuilt beside the live one (`migrator.core.online`), given a concurrent index build first, or left to the
vendor's plain statement; and why. Pure: from the impact report's classification, the catalog's sizes, the
table's facts and the operator's policy.

The plain path stalls every query on the table for the whole rewrite. Its length is estimated from the table's
``pg_total_relation_size`` (heap, TOAST and every index: a rewrite rebuilds them all) at `REWRITE_RATE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from migrator.core.online import RETIRED_SCHEMA, WORK_SCHEMA, TableFacts
from migrator.core.sizes import pretty_size

# Bytes of pg_total_relation_size a plain rewrite gets through per second. Measured at 27-39 MB/s (a 1.6 GB
# visibility table with 55 indexes rewritten in 42-60 s, PostgreSQL 15 on a 2-core machine); taken below that,
# so the estimate errs long: a table then goes online a little early rather than stalling a little late.
REWRITE_RATE = 25 * 1024**2


class RewriteMode(StrEnum):
    """``--rewrite-mode``: online when the estimate exceeds ``--max-stall`` (auto), always, or never."""

    AUTO = "auto"
    ONLINE = "online"
    PLAIN = "plain"


class Route(StrEnum):
    """How the heavy statements of some versions on one table run."""

    ONLINE = "online"  # on a shadow table, swapped in (an OnlineRewrite step)
    CONCURRENT_INDEX = "concurrent-index"  # the version's plain CREATE INDEX built CONCURRENTLY first
    PLAIN = "plain"  # the vendor's statement as it is, under its lock


def estimate_stall(total_bytes: int | None) -> float | None:
    """Seconds a plain rewrite of a table of ``total_bytes`` holds its lock; None when the size is unknown."""
    return None if total_bytes is None else total_bytes / REWRITE_RATE


def describe_estimate(total_bytes: int | None) -> str:
    """``1.6 GB, a plain rewrite stalls it about 66 s``: the figure and where it comes from."""
    stall = estimate_stall(total_bytes)
    if total_bytes is None or stall is None:
        return "size unknown (locked by another session)"
    return (
        f"{pretty_size(total_bytes)}, a plain rewrite stalls it about {stall:.1f} s (at {pretty_size(REWRITE_RATE)}/s)"
    )


def wants_online(total_bytes: int | None, mode: RewriteMode, max_stall: float) -> bool:
    """Whether ``mode`` asks for the online path for a table of ``total_bytes`` (an unknown size counts as large:
    a false alarm is cheaper than a stall)."""
    if mode is RewriteMode.PLAIN:
        return False
    stall = estimate_stall(total_bytes)
    return mode is RewriteMode.ONLINE or stall is None or stall > max_stall


def preflight(facts: TableFacts, *, allow_all_tables_publication: bool) -> tuple[str, ...]:
    """What in the table's surroundings makes the online path unsafe, each with its fix; empty when nothing does
    (the role's privileges are the planner's preflight).

    The swap replaces the table by another relation: whatever refers to the old one by its OID (a view, a
    foreign key, a rule, a policy, inheritance, a trigger, extended statistics) would follow the old table
    away. Change capture needs a key to replay by. A ``FOR ALL TABLES`` publication would publish the
    helper tables, which a subscriber lacks (its apply worker then fails in a loop)."""
    problems: list[str] = []
    if not facts.primary_key:
        problems.append(
            f"{facts.table} has no primary key, which change capture replays by: add one, or use --rewrite-mode plain"
        )
    if facts.dependents:
        problems.append(
            f"{facts.table} has dependents the swap would break ({', '.join(facts.dependents)}): drop them for the "
            "run and re-create them after, or use --rewrite-mode plain"
        )
    if facts.all_tables_publications and not allow_all_tables_publication:
        problems.append(
            f"FOR ALL TABLES publication {', '.join(facts.all_tables_publications)} would publish the rewrite's "
            "helper tables and stop its subscribers: use --online-allow-all-tables-publication once the "
            f"subscribers have schemas {WORK_SCHEMA} and {RETIRED_SCHEMA}, or --rewrite-mode plain"
        )
    return tuple(problems)


@dataclass(frozen=True)
class RewriteDecision:
    """The path the heavy statements of ``versions`` on ``table`` take, the estimate it rests on, and why."""

    table: str
    versions: tuple[str, ...]
    path: Route
    total_bytes: int | None
    reason: str
    refusals: tuple[str, ...] = ()  # why the online path was not taken (or, asked for, is refused)

    @property
    def estimate(self) -> float | None:
        return estimate_stall(self.total_bytes)

    @property
    def extra_disk(self) -> int | None:
        """Disk the run holds beyond today's: the shadow, about the table's total size, for the whole run."""
        return self.total_bytes if self.path is Route.ONLINE else None

    def to_dict(self) -> dict[str, Any]:
        estimate = self.estimate
        return {
            "table": self.table,
            "versions": list(self.versions),
            "path": self.path.value,
            "bytes": self.total_bytes,
            "estimated_stall_seconds": None if estimate is None else round(estimate, 1),
            "extra_disk_bytes": self.extra_disk,
            "reason": self.reason,
            "refusals": list(self.refusals),
        }


def why(total_bytes: int | None, mode: RewriteMode, max_stall: float) -> str:
    """The reason a decision names: the mode, or the estimate against ``--max-stall``."""
    estimate = describe_estimate(total_bytes)
    if mode is not RewriteMode.AUTO:
        return f"--rewrite-mode {mode}; {estimate}"
    stall = estimate_stall(total_bytes)
    if stall is None:
        return f"{estimate}: taken as over --max-stall {max_stall:g} s"
    relation = ">" if stall > max_stall else "<="
    return f"{estimate} {relation} --max-stall {max_stall:g} s"
