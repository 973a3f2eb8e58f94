"""The online rewrite's values: where its work lives, its phases, what a run left behind, and the facts about a
table the preflight judges. Pure values; the engine that acts on them is `migrator.run.online`.

A table the vendor's statements would rewrite (or scan under a write-blocking lock) is rebuilt beside the live
one instead: a shadow of the same name in `WORK_SCHEMA`, filled by keyset batches while a trigger captures the
live table's changes, indexed, caught up, then swapped in one short transaction. The old table waits in
`RETIRED_SCHEMA` until cleanup drops it. Both schemas exist only while a rewrite is in progress.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

WORK_SCHEMA = "temporal_migrator_online"  # the state row, the change log, the capture function, the shadow
RETIRED_SCHEMA = "temporal_migrator_retired"  # the old table, between the swap and cleanup


class Phase(StrEnum):
    """Where an online rewrite is, in order; the state row records the phase being worked on."""

    CAPTURE = "capture"  # work schema, state, log, trigger being set up
    COPY = "copy"  # keyset batches into the shadow (the resume key committed with each batch)
    INDEX = "index"  # the shadow's indexes being built
    CATCHUP = "catchup"  # captured keys replayed until the backlog is small
    SWAP = "swap"  # attempts at the swap transaction (the shadow is complete)
    CLEANUP = "cleanup"  # swapped: the old table and the work schema being dropped


@dataclass(frozen=True)
class OnlineProgress:
    """An online rewrite some run started in this database and did not finish (read from the state row)."""

    table: str
    versions: tuple[str, ...]
    phase: Phase


@dataclass(frozen=True)
class TableFacts:
    """What the preflight needs to know about one table before choosing (or refusing) the online path."""

    table: str
    total_bytes: int  # pg_total_relation_size: heap, TOAST and every index
    primary_key: tuple[str, ...]  # its columns, in key order; () when it has none
    dependents: tuple[str, ...]  # what the swap would break: "view v", "foreign key f of t", "trigger x", ...
    all_tables_publications: tuple[str, ...]  # FOR ALL TABLES publications (they would publish the helpers)
