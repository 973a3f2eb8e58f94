"""Live-query latency over time while Temporal's visibility store is upgraded, bare tool against migrator, drawn
from the rewrite benchmark's figures into a PNG:

    bash scripts/bench.sh plot [--data bench/rewrite.json] [--out docs/rewrite-latency.png]

The figures' shape (bench/rewrite.py writes it): ``{"runners": {"tool": {..., "samples": [[t, latency], ...]},
"migrator": {...}}}``, ``t`` the start of a live query in seconds since the upgrade started (negative: before it)
and ``latency`` in seconds. Only the standard library and matplotlib, which the benchmark's own environment
installs (requirements/bench.txt); the migrator and its image never import this module.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RUNNERS = {"tool": "bare temporal-sql-tool", "migrator": "temporal-migrator"}
COLOURS = {"tool": "#c0392b", "migrator": "#2471a3"}
Series = dict[str, list[tuple[float, float]]]


def load_series(document: dict[str, Any]) -> Series:
    """Each runner's (seconds since the upgrade started, latency) samples, in time order; refuses another shape."""
    runs = document.get("runners")
    if not isinstance(runs, dict) or set(runs) != set(RUNNERS):
        found = sorted(runs) if isinstance(runs, dict) else runs
        raise ValueError(f"expected runners {' and '.join(RUNNERS)}, got {found!r}")
    series: Series = {}
    for runner in RUNNERS:
        samples = runs[runner].get("samples")
        if not isinstance(samples, list) or not samples:
            raise ValueError(f"runners.{runner}.samples is empty or missing")
        pairs = [(float(t), float(latency)) for t, latency in samples]
        if any(latency < 0 for _, latency in pairs):
            raise ValueError(f"runners.{runner}.samples holds a negative latency")
        series[runner] = sorted(pairs)
    return series


def draw(series: Series, out: Path) -> None:
    """A log-scale scatter of every query's latency: the plain rewrite's stall stands out as a wall."""
    import matplotlib  # noqa: PLC0415 (the benchmark's own dependency, imported only to draw)

    matplotlib.use("Agg")
    from matplotlib import pyplot  # noqa: PLC0415

    figure, axes = pyplot.subplots(figsize=(10, 4.5), dpi=120)
    for runner, label in RUNNERS.items():
        times = [t for t, _ in series[runner]]
        latencies = [latency for _, latency in series[runner]]
        worst = max(latencies)
        axes.scatter(times, latencies, s=4, alpha=0.6, color=COLOURS[runner], label=f"{label} (worst {worst:.2f} s)")
    axes.axvline(0, color="#555555", linewidth=0.8, linestyle="--")
    axes.set_yscale("log")
    axes.set_xlabel("seconds since the upgrade started (dashed line)")
    axes.set_ylabel("live query latency (s, log scale)")
    axes.set_title("Visibility store upgrade under live traffic")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(loc="upper right")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    pyplot.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=root / "bench" / "rewrite.json")
    parser.add_argument("--out", type=Path, default=root / "docs" / "rewrite-latency.png")
    args = parser.parse_args(argv)
    draw(load_series(json.loads(args.data.read_text())), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
