"""Benchmark of the table rewrite under a live Temporal-like load: the bare tool against the migrator's online path.

    bash scripts/bench.sh rewrite [--rows 100000] [--before 10] [--out bench/rewrite.json]

The visibility store starts at the schema of TEMPORAL_SERVER_FROM (1.9, installed by that release's own tool) with
``--rows`` rows, made once and cloned for each runner, and is upgraded to the pinned release's newest version
(1.13 and 1.14 rewrite ``executions_visibility``): by the bare tool (``update-schema``, the plain ALTER under
ACCESS EXCLUSIVE), then by the migrator (``migrate --rewrite-mode online``). Throughout, the load of
`devtools.witness` runs Temporal's own visibility statements (2 writers, 2 readers) with every write witnessed in
its transaction; afterwards the table is compared with the witness row by row.

Per runner: the upgrade's total time; over the queries that started while it ran the worst, p99, how many took
longer than 1 s and the throughput (against the ``--before`` seconds before it); the writes committed during it
and how many the table lost (differing keys); the migrator's phases (first ``ddl.progress`` of each). The JSON
(``--out``) holds ``{"runners": {"tool": {...figures, "samples": [[t, seconds], ...]}, "migrator": {...}}}``, ``t``
the start of a query in seconds since the upgrade started (negative: before it). Figures only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.online import FROM_RELEASE, clone, release_paths, store_connection, template
from bench.run import STORES, Bench, publish
from devtools.pgcluster import LocalCluster, drop_database, ensure_login_role
from devtools.witness import Load, compare, figures, relative

STORE = "visibility"
RUNNERS = ("tool", "migrator")
MIGRATOR_ARGS = ("--rewrite-mode", "online")
AFTER = 2.0  # seconds of load kept after the upgrade (what the plot shows of recovery)
GOALS = {"worst_s": 1.0, "writes_lost": 0, "time_ratio": 2.5}


# The events that open each phase of an online rewrite: ddl.progress carries the phase in ``online``.
_OPENING = {"online.started": "capture", "online.swapped": "cleanup"}


def phases(stderr: str, started: float) -> dict[str, Any]:
    """Seconds from the upgrade's start (wall clock ``started``) to the first event of each online phase, and the
    swap's own figures (its attempt, the keys replayed under the lock, the stall)."""
    first: dict[str, Any] = {}
    for line in stderr.splitlines():
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        name = str(event.get("event"))
        phase = event.get("online") if name == "ddl.progress" else _OPENING.get(name)
        if name == "online.swapped":
            first["swap_figures"] = {key: event.get(key) for key in ("attempt", "replayed", "stall", "held")}
        if not phase or phase in first or "timestamp" not in event:
            continue
        first[str(phase)] = round(datetime.fromisoformat(str(event["timestamp"])).timestamp() - started, 2)
    return first


def upgrade(bench: Bench, names: dict[str, str], runner: str) -> tuple[float, dict[str, Any]]:
    """The upgrade of the visibility store by ``runner``: its seconds, and the migrator's phases."""
    wall = time.time()
    if runner == "tool":
        return bench.tool_run(names, setup=False, stores=(STORE,)).seconds, {}
    seconds = bench.migrator("migrate", names, stores=(STORE,), args=MIGRATOR_ARGS).seconds
    return seconds, phases(bench.last_stderr, wall)


def measured(bench: Bench, source: dict[str, str], runner: str, before: float) -> dict[str, Any]:
    """One runner's upgrade of a clone of ``source`` under the witnessed load, and its figures."""
    names = clone(bench, source)
    try:
        load = Load(lambda: store_connection(bench, names, STORE, f"bench-load-{runner}"))
        load.prepare()
        with load:
            time.sleep(before)
            writes_before = load.writes
            start = time.monotonic()
            total, steps = upgrade(bench, names, runner)
            end = time.monotonic()
            writes_during = load.writes - writes_before
            time.sleep(AFTER)
        with store_connection(bench, names, STORE, "bench-compare") as conn:
            comparison = compare(conn, load.columns)
        during = figures(load.samples, start, end)
        return {
            "total_s": round(total, 2),
            **{key: value for key, value in during.as_dict().items() if key != "per_second"},
            "per_second_before": figures(load.samples, start - before, start).per_second,
            "per_second_during": during.per_second,
            "writes_during": writes_during,
            "writes_lost": comparison.differing,
            "rows": comparison.table_rows,
            "witness_rows": comparison.witness_rows,
            "generated_mismatches": comparison.generated,
            "errors": load.errors[:20],
            "error_count": len(load.errors),
            "phases": steps,
            "samples": relative(load.samples, start, start - before, end + AFTER),
        }
    finally:
        bench.drop(names)


def run(rows: int, before: float) -> dict[str, Any]:
    tool, schema_dir, start_tool, start_schema = release_paths()
    cluster = LocalCluster.create()
    try:
        bench = Bench(cluster, tool, schema_dir)
        start = Bench(cluster, start_tool, start_schema, password=bench.password)
        with cluster.admin_connect() as conn:
            for store in STORES:
                ensure_login_role(conn, f"bench_{store}", bench.password)
        source = template(bench, start, rows)
        report: dict[str, Any] = {
            "rows": rows,
            "from_release": FROM_RELEASE,
            "postgres_major": cluster.major,
            "migrator_args": list(MIGRATOR_ARGS),
            "runners": {runner: measured(bench, source, runner, before) for runner in RUNNERS},
        }
        with cluster.admin_connect() as conn:
            for name in source.values():
                drop_database(conn, name)
        return report
    finally:
        cluster.destroy()


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def table(report: dict[str, Any]) -> str:
    runners = report["runners"]
    ratio = runners["migrator"]["total_s"] / runners["tool"]["total_s"]
    lines = [
        f"Visibility {report['from_release']} schema (1.9) -> pinned release, {report['rows'] // 1000}k rows, "
        f"PostgreSQL {report['postgres_major']}; live Temporal visibility reads and writes, every write witnessed",
        "",
        "| runner | total | worst query | p99 | queries > 1 s | throughput before / during | writes during "
        "| writes lost | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for runner in RUNNERS:
        item = runners[runner]
        worst = "-" if item["worst_s"] is None else f"{item['worst_s']:.3f} s"
        p99 = "-" if item["p99_s"] is None else f"{item['p99_s'] * 1000:.1f} ms"
        label = "tool (plain ALTER)" if runner == "tool" else f"migrator {' '.join(report['migrator_args'])}"
        lines.append(
            f"| {label} | {item['total_s']:.1f} s | {worst} | {p99} | {item['over_1s']} "
            f"| {item['per_second_before']:.0f} / {item['per_second_during']:.0f} q/s | {item['writes_during']} "
            f"| {item['writes_lost']} | {item['error_count']} |"
        )
    migrator = runners["migrator"]
    stall = migrator["worst_s"] if migrator["worst_s"] is not None else float("inf")
    lost = max(runner["writes_lost"] + len(runner["generated_mismatches"]) for runner in runners.values())
    lines += [
        "",
        f"Goals: worst live query ≤ {GOALS['worst_s']:g} s ({verdict(stall <= GOALS['worst_s'])}); "
        f"0 writes lost ({verdict(lost == 0)}); total ≤ {GOALS['time_ratio']:g}x the tool's "
        f"({ratio:.2f}x, {verdict(ratio <= GOALS['time_ratio'])}).",
    ]
    steps = {phase: seconds for phase, seconds in migrator["phases"].items() if phase != "swap_figures"}
    if steps:
        lines.append(
            "Migrator phases (s from start): " + ", ".join(f"{phase} {seconds:.1f}" for phase, seconds in steps.items())
        )
    if "swap_figures" in migrator["phases"]:
        swap = migrator["phases"]["swap_figures"]
        lines.append(
            f"Swap: attempt {swap['attempt']}, {swap['replayed']} keys replayed under the lock, stall {swap['stall']} s"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench rewrite", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="visibility rows")
    parser.add_argument("--before", type=float, default=10.0, help="seconds of load measured before the upgrade")
    parser.add_argument("--out", type=Path, default=Path("bench/rewrite.json"))
    args = parser.parse_args(argv)
    publish(run(args.rows, args.before), args.out, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def summary(report: dict[str, Any]) -> str:
    """The README's short form of `table`: what an operator compares."""
    lines = [
        "| runner | worst live query | queries > 1 s | total | writes lost |",
        "|---|---|---|---|---|",
    ]
    for runner in RUNNERS:
        item = report["runners"][runner]
        label = "bare `temporal-sql-tool`" if runner == "tool" else "temporal-migrator"
        lines.append(
            f"| {label} | {item['worst_s']:.2f} s | {item['over_1s']} | {item['total_s']:.1f} s | {item['writes_lost']} |"
        )
    return "\n".join(lines)
