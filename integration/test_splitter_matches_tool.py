"""The repair runs the statements the tool would run: compare our split with what the real tool executes."""

from __future__ import annotations

from pathlib import Path

import pytest

from integration.harness import AppDb, RunTool, Store, versioned_dir
from integration.scenarios import executed_statements
from migrator.vendor import load_vendor_schema


@pytest.mark.parametrize("store", ["temporal", "visibility"])
def test_every_statement_equals_the_one_the_tool_runs(
    store: Store, app_db: AppDb, run_tool: RunTool, schema_dir: Path
) -> None:
    assert run_tool(app_db, "setup-schema", "-v", "0.0").returncode == 0
    update = run_tool(app_db, "update-schema", "-d", str(versioned_dir(schema_dir, store)))
    assert update.returncode == 0, update.stderr[-2000:]
    executed = executed_statements(update.stderr)
    vendor = load_vendor_schema(schema_dir, store)
    ours = {item.name: [" ".join(s.text.split()) for s in item.statements] for item in vendor.versions}
    assert executed == ours
    assert sum(len(statements) for statements in ours.values()) > 50
