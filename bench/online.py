"""Benchmark under live traffic (issue 10, item 7): the same upgrade by the bare tool and by the migrator.

    bash scripts/bench.sh online [--blocker-seconds 30] [--rows 100000] [--out bench/online.json]

Both stores start at v1.29.1's schema (default store 1.18, visibility 1.9) with rows, made once and cloned
(``CREATE DATABASE … TEMPLATE``) for every run, and are upgraded to the pinned release's newest versions.
- **blocked**: a workload of Temporal-like point reads, list reads and updates on the hot tables of both stores
  (``executions``/``current_executions``, ``executions_visibility``) runs throughout; a blocker session holds
  ACCESS SHARE on ``executions_visibility`` in an open transaction for B seconds; the upgrade starts 0.5 s
  later. Reported per runner: the workload's worst and p99 latency over the queries that started while the
  upgrade ran, how many waited longer than 1 s, and the upgrade's total time.
- **100k rows, no blocker**: total upgrade time of each runner on the big visibility store.
- **no-op** (both stores current) against the floor any Python migrator pays: interpreter start,
  ``import psycopg``, one connection and one query per store, measured in the same run.
Figures only; nothing fails on a slow machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.run import STORES, Bench, publish
from devtools.data import fill, primary_key
from devtools.pgcluster import LocalCluster, drop_database, ensure_login_role
from devtools.pins import default_schema_dir, default_tool_path, read_pins, resolve_schema_dir, resolve_tool
from migrator.cli.options import OPTIONS

FROM_RELEASE = read_pins()["TEMPORAL_SERVER_FROM"]  # scripts/bench.sh builds its tool
HOT = {"temporal": ("executions", "current_executions"), "visibility": ("executions_visibility",)}
DEFAULT_STORE_ROWS = 10_000
SMALL_VISIBILITY_ROWS = 10_000
WORKERS_PER_STORE = 2
PAUSE = 0.02  # between one worker's queries: traffic, not a saturation test
SLOW = 1.0
DDL_LOCK_TIMEOUT = float(next(option.default for option in OPTIONS if option.dest == "ddl_lock_timeout") or 0)


def store_connection(
    bench: Bench, names: dict[str, str], store: str, application: str, *, autocommit: bool = True
) -> psycopg.Connection[tuple[Any, ...]]:
    env = bench.env(store, names[store])
    conn = psycopg.connect(
        host=env["SQL_HOST"], port=env["SQL_PORT"], user=env["SQL_USER"], password=env["SQL_PASSWORD"],
        dbname=env["SQL_DATABASE"], autocommit=autocommit, application_name=application,
    )  # fmt: skip
    conn.prepare_threshold = None  # a prepared SELECT * breaks when the upgrade adds a column
    return conn


@dataclass
class Workload:
    """Worker threads, each on its own autocommit connection, timing every query (start, seconds)."""

    bench: Bench
    names: dict[str, str]
    samples: list[tuple[float, float]] = field(default_factory=list)
    errors: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def queries(self, conn: psycopg.Connection[tuple[Any, ...]], store: str) -> list[tuple[sql.Composed, Any]]:
        """Point read, list read and update per hot table, on keys that exist."""
        result = []
        for table in HOT[store]:
            key = primary_key(conn, table)
            rows = conn.execute(
                sql.SQL("SELECT {} FROM {} LIMIT 200").format(
                    sql.SQL(", ").join(map(sql.Identifier, key)), sql.Identifier(table)
                )
            ).fetchall()
            where = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(n)) for n in key)
            first = sql.Identifier(key[0])
            for row in rows:
                result.append((sql.SQL("SELECT * FROM {} WHERE {}").format(sql.Identifier(table), where), row))
                result.append(
                    (sql.SQL("UPDATE {} SET {} = {} WHERE {}").format(sql.Identifier(table), first, first, where), row)
                )
                result.append(
                    (
                        sql.SQL("SELECT {} FROM {} WHERE {} = %s ORDER BY {} LIMIT 10").format(
                            first, sql.Identifier(table), first, sql.SQL(", ").join(map(sql.Identifier, key))
                        ),
                        row[:1],
                    )
                )
        return result

    def worker(self, store: str) -> None:
        with store_connection(self.bench, self.names, store, "bench-workload") as conn:
            queries = self.queries(conn, store)
            while not self.stop.is_set():
                query, params = random.choice(queries)
                started = time.monotonic()
                try:
                    conn.execute(query, params)
                except psycopg.Error:  # counted, and the workload goes on
                    self.errors += 1
                self.samples.append((started, time.monotonic() - started))
                time.sleep(PAUSE)

    def __enter__(self) -> Workload:
        for store in STORES:
            for _ in range(WORKERS_PER_STORE):
                thread = threading.Thread(target=self.worker, args=(store,), daemon=True)
                thread.start()
                self.threads.append(thread)
        time.sleep(1)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)

    def between(self, start: float, end: float) -> dict[str, Any]:
        latencies = sorted(seconds for started, seconds in self.samples if start <= started <= end)
        return {
            "queries": len(latencies),
            "worst_s": round(latencies[-1], 3) if latencies else None,
            "p99_s": round(latencies[int(0.99 * (len(latencies) - 1))], 3) if latencies else None,
            "over_1s": sum(1 for seconds in latencies if seconds > SLOW),
            "errors": self.errors,
        }


def blocker(bench: Bench, names: dict[str, str], seconds: float) -> threading.Thread:
    """A session holding ACCESS SHARE on the visibility table in an open transaction for ``seconds``."""
    ready = threading.Event()

    def hold() -> None:
        with store_connection(bench, names, "visibility", "bench-blocker", autocommit=False) as conn:
            conn.execute("SELECT 1 FROM executions_visibility LIMIT 1")
            ready.set()
            time.sleep(seconds)
            conn.commit()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    ready.wait(30)
    return thread


def template(bench: Bench, start: Bench, visibility_rows: int) -> dict[str, str]:
    """Both stores at the starting release, with rows in the hot tables (made once, cloned per run)."""
    names = bench.new_databases()
    start.tool_run(names, setup=True)
    for store in STORES:
        with store_connection(bench, names, store, "bench-fill") as conn:
            for table in HOT[store]:
                fill(conn, table, visibility_rows if store == "visibility" else DEFAULT_STORE_ROWS)
    return names


def clone(bench: Bench, source: dict[str, str]) -> dict[str, str]:
    """A file-level copy of both template databases (seconds, where filling again would take a minute)."""
    names = {}
    with bench.cluster.admin_connect() as conn:
        for store in STORES:
            name = f"bench_{store}_{uuid.uuid4().hex[:8]}"
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(source[store]), sql.Identifier(f"bench_{store}")
                )
            )
            names[store] = name
    for name in names.values():  # schema_version is keyed by the database name (the tool's --db)
        with bench.cluster.admin_connect(name) as conn:
            conn.execute("UPDATE schema_version SET db_name = current_database()")
    return names


def upgrade(bench: Bench, names: dict[str, str], runner: str) -> float:
    if runner == "migrator":
        return bench.migrator("migrate", names).seconds
    return bench.tool_run(names, setup=False).seconds


def blocked(bench: Bench, source: dict[str, str], runner: str, seconds: float) -> dict[str, Any]:
    names = clone(bench, source)
    try:
        with Workload(bench, names) as workload:
            holder = blocker(bench, names, seconds)
            time.sleep(0.5)
            start = time.monotonic()
            total = upgrade(bench, names, runner)
            end = time.monotonic()
            holder.join()
        return {"runner": runner, "upgrade_s": round(total, 2), **workload.between(start, end)}
    finally:
        bench.drop(names)


def floor_and_noop(bench: Bench, names: dict[str, str], rounds: int) -> dict[str, Any]:
    """Medians of: the migrator's no-op on both stores; the Python floor (`bench.run.FLOOR`) on both."""
    noop, base = [], []
    for _ in range(rounds):
        noop.append(bench.migrator("migrate", names).seconds)
        base.append(bench.floor(names).seconds)
    median_noop, median_floor = statistics.median(noop), statistics.median(base)
    return {
        "noop_s": round(median_noop, 3),
        "floor_s": round(median_floor, 3),
        "ratio": round(median_noop / median_floor, 2),
    }


def release_paths() -> tuple[Path, Path, Path, Path]:
    tool, schema_dir = resolve_tool()[0], resolve_schema_dir()[0]
    start_tool = Path(os.environ.get("BENCH_FROM_SQL_TOOL") or default_tool_path(FROM_RELEASE))
    start_schema = os.environ.get("BENCH_FROM_SCHEMA_DIR") or default_schema_dir(FROM_RELEASE)
    if tool is None or schema_dir is None or not start_tool.is_file() or start_schema is None:
        raise SystemExit(f"the pinned tool or {FROM_RELEASE}'s is missing: run through scripts/bench.sh online")
    return tool, schema_dir, start_tool, Path(start_schema)


@contextlib.contextmanager
def benches() -> Iterator[tuple[Bench, Bench]]:
    """A throwaway cluster with the bench roles, and its benches: the pinned release's and the start release's."""
    tool, schema_dir, start_tool, start_schema = release_paths()
    cluster = LocalCluster.create()
    try:
        bench = Bench(cluster, tool, schema_dir)
        start = Bench(cluster, start_tool, start_schema, password=bench.password)
        with cluster.admin_connect() as conn:
            for store in STORES:
                ensure_login_role(conn, f"bench_{store}", bench.password)
        yield bench, start
    finally:
        cluster.destroy()


def run(blocker_seconds: float, rows: int, rounds: int) -> dict[str, Any]:
    with benches() as (bench, start):
        cluster = bench.cluster
        small = template(bench, start, SMALL_VISIBILITY_ROWS)
        results: dict[str, Any] = {
            "blocker_seconds": blocker_seconds,
            "ddl_lock_timeout": DDL_LOCK_TIMEOUT,
            "blocked": [blocked(bench, small, runner, blocker_seconds) for runner in ("tool", "migrator")],
        }
        big = template(bench, start, rows)
        times: dict[str, list[float]] = {"tool": [], "migrator": []}
        for _ in range(rounds):
            for runner, values in times.items():
                names = clone(bench, big)
                try:
                    values.append(upgrade(bench, names, runner))
                finally:
                    if runner == "migrator" and "noop" not in results:
                        results["noop"] = floor_and_noop(bench, names, 5)
                    bench.drop(names)
        results["rows"] = rows
        results["unblocked"] = {runner: round(statistics.median(values), 2) for runner, values in times.items()}
        with cluster.admin_connect() as conn:
            for names in (small, big):
                for name in names.values():
                    drop_database(conn, name)
        return results


def table(report: dict[str, Any]) -> str:
    limit = report["ddl_lock_timeout"] + 1
    lines = [
        f"Blocker holding ACCESS SHARE on executions_visibility for {report['blocker_seconds']:g} s; workload on both "
        "stores' hot tables; upgrade v1.29.1 schemas -> pinned release",
        "",
        "| runner | worst query | p99 | queries > 1 s | upgrade total | goal |",
        "|---|---|---|---|---|---|",
    ]
    for item in report["blocked"]:
        goal = (
            f"worst ≤ {limit:g} s ({'met' if item['worst_s'] <= limit else 'NOT met'})"
            if item["runner"] == "migrator"
            else f"worst ≈ B = {report['blocker_seconds']:g} s"
        )
        lines.append(
            f"| {item['runner']} | {item['worst_s']:.2f} s | {item['p99_s']:.3f} s | {item['over_1s']} "
            f"| {item['upgrade_s']:.1f} s | {goal} |"
        )
    unblocked = report["unblocked"]
    ratio = unblocked["migrator"] / unblocked["tool"]
    noop = report["noop"]
    lines += [
        "",
        "| scenario | migrator | reference | ratio | goal |",
        "|---|---|---|---|---|",
        f"| upgrade, {report['rows'] // 1000}k visibility rows, no blocker | {unblocked['migrator']:.1f} s "
        f"| tool {unblocked['tool']:.1f} s | {ratio:.2f} | ≤ 1.05 ({'met' if ratio <= 1.05 else 'NOT met'}) |",
        f"| no-op, both stores | {noop['noop_s']:.3f} s | floor {noop['floor_s']:.3f} s | {noop['ratio']:.2f} "
        f"| ≤ 1.2 ({'met' if noop['ratio'] <= 1.2 else 'NOT met'}) |",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench online", description=__doc__.splitlines()[0])
    parser.add_argument("--blocker-seconds", type=float, default=30.0)
    parser.add_argument("--rows", type=int, default=100_000, help="visibility rows of the unblocked upgrade")
    parser.add_argument("--rounds", type=int, default=1, help="unblocked upgrades per runner (medians)")
    parser.add_argument("--out", type=Path, default=Path("bench/online.json"))
    args = parser.parse_args(argv)
    publish(run(args.blocker_seconds, args.rows, args.rounds), args.out, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
