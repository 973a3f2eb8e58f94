"""The rewrite benchmark's pure parts: the phases read from a migrator's log, and the table made from figures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from bench.rewrite import phases, table


def line(event: str, second: float, **fields: Any) -> str:
    stamp = datetime.fromtimestamp(1000.0 + second, tz=UTC).isoformat()
    return json.dumps({"event": event, "timestamp": stamp, **fields})


def test_phases_are_the_first_event_of_each_and_the_swap_keeps_its_figures() -> None:
    stderr = "\n".join(
        [
            "not json",
            line("online.started", 1.0),
            line("ddl.progress", 2.0, online="copy", rows=2000),
            line("ddl.progress", 3.0, online="copy", rows=4000),
            line("ddl.progress", 5.5, online="index", index=1),
            line("ddl.progress", 9.0, online="catchup", backlog=10),
            line("ddl.progress", 9.5, statement="ALTER TABLE x"),  # a plain statement's progress: no phase
            line("online.swapped", 10.25, attempt=2, replayed=12, stall=0.2, held=0.1),
        ]
    )
    assert phases(stderr, 1000.0) == {
        "capture": 1.0,
        "copy": 2.0,
        "index": 5.5,
        "catchup": 9.0,
        "cleanup": 10.25,
        "swap_figures": {"attempt": 2, "replayed": 12, "stall": 0.2, "held": 0.1},
    }


def runner(total: float, worst: float, lost: int) -> dict[str, Any]:
    return {
        "total_s": total,
        "worst_s": worst,
        "p99_s": 0.02,
        "over_1s": int(worst > 1),
        "per_second_before": 300.0,
        "per_second_during": 250.0,
        "writes_during": 900,
        "writes_lost": lost,
        "generated_mismatches": {},
        "error_count": 0,
        "phases": {},
    }


def test_the_table_judges_the_goals_from_the_figures() -> None:
    report: dict[str, Any] = {
        "rows": 100_000,
        "from_release": "v1.29.1",
        "postgres_major": 15,
        "migrator_args": ["--rewrite-mode", "online"],
        "runners": {"tool": runner(50.0, 45.0, 0), "migrator": runner(100.0, 0.4, 0)},
    }
    text = table(report)
    assert "| tool (plain ALTER) | 50.0 s | 45.000 s | 20.0 ms | 1 | 300 / 250 q/s | 900 | 0 | 0 |" in text
    assert "worst live query ≤ 1 s (met); 0 writes lost (met); total ≤ 2.5x the tool's (2.00x, met)" in text
    report["runners"]["migrator"] = runner(150.0, 1.2, 3)
    text = table(report)
    assert "(NOT met); 0 writes lost (NOT met); total ≤ 2.5x the tool's (3.00x, NOT met)" in text
