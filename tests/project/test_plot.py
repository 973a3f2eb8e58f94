"""bench/plot.py reads the rewrite benchmark's figures (the drawing itself needs matplotlib, which only the
benchmark's own environment has: `bash scripts/bench.sh plot`)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from bench.plot import RUNNERS, load_series

ROOT = Path(__file__).resolve().parents[2]


def test_samples_are_read_per_runner_in_time_order() -> None:
    document = {
        "runners": {
            "tool": {"worst_s": 39.4, "samples": [[2.0, 39.4], [-0.5, 0.004]]},
            "migrator": {"samples": [[0.1, 0.003], [40.0, 0.2]]},
        }
    }
    series = load_series(document)
    assert series == {"tool": [(-0.5, 0.004), (2.0, 39.4)], "migrator": [(0.1, 0.003), (40.0, 0.2)]}
    assert list(RUNNERS) == ["tool", "migrator"]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"runners": {"tool": {"samples": [[0, 1]]}}}, "expected runners tool and migrator"),
        ({"runners": {"tool": {"samples": []}, "migrator": {"samples": [[0, 1]]}}}, "runners.tool.samples is empty"),
        ({"runners": {"tool": {"samples": [[0, -1]]}, "migrator": {"samples": [[0, 1]]}}}, "negative latency"),
    ],
)
def test_another_shape_is_refused(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_series(document)


def test_matplotlib_is_imported_only_to_draw() -> None:
    """Nothing the migrator, its tests or the image import may pull matplotlib in: only inside draw()."""
    tree = ast.parse((ROOT / "bench" / "plot.py").read_text())
    top_level = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    names = [alias.name for node in top_level for alias in node.names] + [
        node.module or "" for node in top_level if isinstance(node, ast.ImportFrom)
    ]
    assert not any("matplotlib" in name for name in names)
    runtime = (ROOT / "requirements" / "runtime.txt").read_text() + (ROOT / "Dockerfile").read_text()
    assert "matplotlib" not in runtime
