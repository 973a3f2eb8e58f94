"""Benchmark: the migrator against the bare temporal-sql-tool, on a throwaway local PostgreSQL.

    bash scripts/bench.sh [--rounds N] [--out FILE] [--noop-only]

Alternates A (migrator) and B ``--rounds`` times per scenario and reports medians and ratios: the no-op on
both stores against the Python floor (`FLOOR`: interpreter, psycopg, one connection and one query per store;
``--noop-only`` runs only this) and against that floor loaded as the migrator loads (`TUNED_FLOOR`), the no-op
against the bare tool, fresh install of both stores, 16 concurrent migrators vs one, ``status`` latency, and the
migrator's peak RSS (``wait4`` of each child). Writes JSON
(``--out``) and prints a table with the goals. Figures only: nothing here fails on a slow machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.pgcluster import LocalCluster, create_database, drop_database, ensure_login_role
from devtools.pins import resolve_schema_dir, resolve_tool

STORES = ("temporal", "visibility")
# What runs the migrator and the floor: scripts/bench.sh's copy of the image's environment, else this one. The
# migrator runs as the image's entrypoint does: the installed console script, its modules compiled at install.
PYTHON = os.environ.get("BENCH_PYTHON") or sys.executable
MIGRATOR = str(Path(PYTHON).with_name("temporal-migrator"))
# Children start here, not in the repository: `python -c` puts its working directory first on sys.path, and the
# repository's uncompiled `migrator/` would be imported instead of the installed one.
NEUTRAL_DIR = "/"
GOALS = {
    "noop_floor_ratio": 1.2,
    "noop_ratio": 1.0,
    "fresh_ratio": 1.05,
    "contention_ratio": 1.3,
    "peak_rss_mb": 80.0,
}
# The least any Python no-op costs: the interpreter, psycopg, one connection and one query (the version row).
FLOOR = """
import os, psycopg
with psycopg.connect(host=os.environ["SQL_HOST"], port=os.environ["SQL_PORT"], user=os.environ["SQL_USER"],
                     password=os.environ["SQL_PASSWORD"], dbname=os.environ["SQL_DATABASE"]) as conn:
    conn.execute("SELECT curr_version FROM schema_version").fetchall()
"""
# The same floor loaded as the migrator loads (`migrator.__main__.run`: the cyclic collector off while modules
# load, then frozen): what remains above it is the migrator's own cost.
TUNED_FLOOR = "import gc\ngc.disable()\nimport psycopg\ngc.freeze()\ngc.enable()\n" + FLOOR


@dataclass(frozen=True)
class Run:
    seconds: float
    max_rss_kb: int
    cpu_seconds: float = 0.0  # user + system of the children: steadier than wall time on a shared machine


@dataclass
class Bench:
    cluster: LocalCluster
    tool: Path
    schema_dir: Path
    password: str = field(default_factory=lambda: uuid.uuid4().hex)
    rss_kb: list[int] = field(default_factory=list)
    cpu_seconds: float = 0.0
    last_stderr: str = ""  # of the last child reaped (a migrator's JSON log lines)

    def new_databases(self) -> dict[str, str]:
        """One fresh database per store, owned by the store's role (CloudNativePG style)."""
        names = {}
        with self.cluster.admin_connect() as conn:
            for store in STORES:
                name = f"bench_{store}_{uuid.uuid4().hex[:8]}"
                create_database(conn, name, f"bench_{store}")
                names[store] = name
        return names

    def drop(self, names: dict[str, str]) -> None:
        with self.cluster.admin_connect() as conn:
            for name in names.values():
                drop_database(conn, name)

    def env(self, store: str, database: str) -> dict[str, str]:
        return {
            **os.environ,
            "SQL_HOST": self.cluster.host,
            "SQL_PORT": str(self.cluster.port),
            "SQL_USER": f"bench_{store}",
            "SQL_PASSWORD": self.password,
            "SQL_DATABASE": database,
            "SQL_PLUGIN": "postgres12",
            "TEMPORAL_SQL_TOOL": str(self.tool),
            "MIGRATOR_SCHEMA_DIR": str(self.schema_dir),
            "MIGRATOR_TERMINATION_LOG": "/dev/null",
        }

    def spawn(self, argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, env=env, cwd=NEUTRAL_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def reap(self, process: subprocess.Popen[bytes], what: str) -> int:
        """wait4 the child: its own peak RSS (its CPU time is added to ``cpu_seconds``), exit status checked."""
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""  # first: a full pipe
        _, status, usage = os.wait4(process.pid, 0)  # would block a child that logs much (an online rewrite)
        self.cpu_seconds += usage.ru_utime + usage.ru_stime
        process.returncode = os.waitstatus_to_exitcode(status)
        self.last_stderr = stderr
        if process.returncode != 0:
            raise RuntimeError(f"{what} exited {process.returncode}: {stderr[-1500:]}")
        return int(usage.ru_maxrss)

    def migrator(
        self,
        command: str,
        names: dict[str, str],
        copies: int = 1,
        *,
        stores: Sequence[str] = STORES,
        args: Sequence[str] = (),
    ) -> Run:
        """``temporal-migrator COMMAND [ARGS]`` on each of ``stores`` in turn (``copies`` at once per store)."""
        started, cpu = time.perf_counter(), self.cpu_seconds
        peak = 0
        for store in stores:
            argv = [MIGRATOR, command, "--schema", store, *args]
            processes = [self.spawn(argv, self.env(store, names[store])) for _ in range(copies)]
            for process in processes:
                rss = self.reap(process, f"migrator {command} {store}")
                self.rss_kb.append(rss)
                peak = max(peak, rss)
        return Run(time.perf_counter() - started, peak, self.cpu_seconds - cpu)

    def floor(self, names: dict[str, str], program: str = FLOOR) -> Run:
        """`FLOOR` (or ``program``) on both stores in turn, as `migrator` runs them."""
        started, cpu = time.perf_counter(), self.cpu_seconds
        peak = 0
        for store in STORES:
            process = self.spawn([PYTHON, "-c", program], self.env(store, names[store]))
            peak = max(peak, self.reap(process, f"python floor {store}"))
        return Run(time.perf_counter() - started, peak, self.cpu_seconds - cpu)

    def tool_run(self, names: dict[str, str], *, setup: bool, stores: Sequence[str] = STORES) -> Run:
        """The bare tool: ``[setup-schema -v 0.0 +] update-schema`` on each of ``stores`` in turn."""
        started = time.perf_counter()
        peak = 0
        for store in stores:
            base = [
                str(self.tool),
                "--ep",
                self.cluster.host,
                "-p",
                str(self.cluster.port),
                "-u",
                f"bench_{store}",
                "--db",
                names[store],
                "--pl",
                "postgres12",
            ]
            versioned = self.schema_dir / "postgresql" / "v12" / store / "versioned"
            commands = [["setup-schema", "-v", "0.0"]] if setup else []
            commands.append(["update-schema", "-d", str(versioned)])
            for command in commands:
                peak = max(peak, self.reap(self.spawn([*base, *command], self.env(store, names[store])), "tool"))
        return Run(time.perf_counter() - started, peak)


def alternate(rounds: int, a: Callable[[], float], b: Callable[[], float]) -> tuple[list[float], list[float]]:
    """A, B, A, B, ...: both sides see the same machine conditions."""
    first: list[float] = []
    second: list[float] = []
    for _ in range(rounds):
        first.append(a())
        second.append(b())
    return first, second


def summarise(name: str, a: list[float], b: list[float], a_label: str, b_label: str) -> dict[str, Any]:
    median_a, median_b = statistics.median(a), statistics.median(b)
    return {
        "scenario": name,
        "a": a_label,
        "b": b_label,
        "a_median_s": round(median_a, 3),
        "b_median_s": round(median_b, 3),
        "ratio": round(median_a / median_b, 2),
        "a_runs": a,
        "b_runs": b,
    }


def noop_floor(bench: Bench, rounds: int, at_target: dict[str, str]) -> dict[str, Any]:
    """The no-op against the Python floor and the tuned floor, alternated in the same run: wall time, and CPU time
    beside it (the goal is against the floor; the tuned one shows what the migrator's own code costs)."""
    noop: list[Run] = []
    floor: list[Run] = []
    tuned: list[Run] = []
    for _ in range(rounds):
        noop.append(bench.migrator("migrate", at_target))
        floor.append(bench.floor(at_target))
        tuned.append(bench.floor(at_target, TUNED_FLOOR))
    summary = summarise(
        "no-op, both stores", [r.seconds for r in noop], [r.seconds for r in floor], "migrator migrate", "Python floor"
    )
    cpu_a, cpu_b, cpu_tuned = (statistics.median(r.cpu_seconds for r in runs) for runs in (noop, floor, tuned))
    wall_tuned = statistics.median(r.seconds for r in tuned)
    return {
        **summary,
        "a_cpu_median_s": round(cpu_a, 3),
        "b_cpu_median_s": round(cpu_b, 3),
        "cpu_ratio": round(cpu_a / cpu_b, 2),
        "tuned_median_s": round(wall_tuned, 3),
        "tuned_cpu_median_s": round(cpu_tuned, 3),
        "tuned_ratio": round(summary["a_median_s"] / wall_tuned, 2),
        "tuned_cpu_ratio": round(cpu_a / cpu_tuned, 2),
    }


def run(rounds: int, noop_only: bool = False) -> dict[str, Any]:
    tool_path, _ = resolve_tool()
    schema_dir, _ = resolve_schema_dir()
    if tool_path is None or schema_dir is None:
        raise SystemExit("temporal-sql-tool or its schema tree not found: run through scripts/bench.sh")
    cluster = LocalCluster.create()
    try:
        bench = Bench(cluster, tool_path, schema_dir)
        with cluster.admin_connect() as conn:
            for store in STORES:
                ensure_login_role(conn, f"bench_{store}", bench.password)
        results: list[dict[str, Any]] = []

        at_target = bench.new_databases()
        bench.migrator("migrate", at_target)
        floor = noop_floor(bench, rounds, at_target)
        if noop_only:
            return {
                "rounds": rounds,
                "postgres_major": cluster.major,
                "noop_floor": floor,
                "goals": {"noop_floor_ratio": floor["ratio"] <= GOALS["noop_floor_ratio"]},
            }
        noop = alternate(
            rounds,
            lambda: bench.migrator("migrate", at_target).seconds,
            lambda: bench.tool_run(at_target, setup=False).seconds,
        )
        results.append(summarise("no-op, both stores", *noop, "migrator migrate", "tool update-schema"))

        def fresh(with_migrator: bool) -> float:
            names = bench.new_databases()
            try:
                if with_migrator:
                    return bench.migrator("migrate", names).seconds
                return bench.tool_run(names, setup=True).seconds
            finally:
                bench.drop(names)

        fresh_runs = alternate(rounds, lambda: fresh(True), lambda: fresh(False))
        results.append(
            summarise(
                "fresh install, both stores", *fresh_runs, "migrator migrate", "tool setup-schema + update-schema"
            )
        )

        def contended(copies: int) -> float:
            names = bench.new_databases()
            try:
                return bench.migrator("migrate", names, copies=copies).seconds
            finally:
                bench.drop(names)

        contention = alternate(rounds, lambda: contended(16), lambda: contended(1))
        results.append(summarise("fresh install, both stores", *contention, "16 concurrent migrators", "one migrator"))

        status = [bench.migrator("status", at_target).seconds / len(STORES) for _ in range(rounds)]
        peak_mb = max(bench.rss_kb) / 1024
        return {
            "rounds": rounds,
            "postgres_major": cluster.major,
            "noop_floor": floor,
            "scenarios": results,
            "status_median_s": round(statistics.median(status), 3),
            "peak_rss_mb": round(peak_mb, 1),
            "goals": {
                "noop_floor_ratio": floor["ratio"] <= GOALS["noop_floor_ratio"],
                "noop_ratio": results[0]["ratio"] <= GOALS["noop_ratio"],
                "fresh_ratio": results[1]["ratio"] <= GOALS["fresh_ratio"],
                "contention_ratio": results[2]["ratio"] <= GOALS["contention_ratio"],
                "peak_rss_mb": peak_mb <= GOALS["peak_rss_mb"],
            },
        }
    finally:
        cluster.destroy()


def table(report: dict[str, Any]) -> str:
    lines = ["| scenario | A | B | A median | B median | A/B | goal |", "|---|---|---|---|---|---|---|"]
    goal_keys = ["noop_floor_ratio", "noop_ratio", "fresh_ratio", "contention_ratio"]
    rows = [report["noop_floor"], *report.get("scenarios", [])]
    for key, item in zip(goal_keys, rows, strict=False):
        verdict = "met" if report["goals"][key] else "NOT met"
        lines.append(
            f"| {item['scenario']} | {item['a']} | {item['b']} | {item['a_median_s']:.3f} s "
            f"| {item['b_median_s']:.3f} s | {item['ratio']:.2f} | ≤ {GOALS[key]} ({verdict}) |"
        )
    floor = report["noop_floor"]
    lines[3:3] = [
        f"| no-op, both stores, CPU time | migrator migrate | Python floor | {floor['a_cpu_median_s']:.3f} s "
        f"| {floor['b_cpu_median_s']:.3f} s | {floor['cpu_ratio']:.2f} | |",
        f"| no-op, both stores | migrator migrate | tuned floor | {floor['a_median_s']:.3f} s "
        f"| {floor['tuned_median_s']:.3f} s | {floor['tuned_ratio']:.2f} | |",
        f"| no-op, both stores, CPU time | migrator migrate | tuned floor | {floor['a_cpu_median_s']:.3f} s "
        f"| {floor['tuned_cpu_median_s']:.3f} s | {floor['tuned_cpu_ratio']:.2f} | |",
    ]
    if "scenarios" not in report:
        return "\n".join(lines)
    rss_verdict = "met" if report["goals"]["peak_rss_mb"] else "NOT met"
    lines.append(f"| `status`, one store | migrator status | | {report['status_median_s']:.3f} s | | | |")
    lines.append(f"| peak RSS of a migrator | | | {report['peak_rss_mb']} MB | | | ≤ 80 MB ({rss_verdict}) |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results.json"))
    parser.add_argument("--noop-only", action="store_true", help="only the no-op against the Python floor")
    args = parser.parse_args(argv)
    publish(run(args.rounds, args.noop_only), args.out, table)
    return 0


def publish(report: dict[str, Any], out: Path, render: Callable[[dict[str, Any]], str]) -> None:
    """Write the figures as JSON and print the table made from them."""
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    print(f"\nfigures: {out}")


if __name__ == "__main__":
    sys.exit(main())
