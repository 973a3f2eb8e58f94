"""The repair runs the statements the tool would run: compare our split with what the real tool executes, for
each release the suite has a tool of (the pinned one and every upgrade source)."""

from __future__ import annotations

import pytest

from devtools.ci import unavailable
from devtools.databases import AppDb
from devtools.pins import Store, resolve_schema_dir, resolve_tool, upgrade_sources, versioned_dir
from integration.support.processes import run_tool_binary
from integration.support.scenarios import executed_statements
from migrator.source.tree import load_vendor_schema


@pytest.mark.parametrize("release", [None, *upgrade_sources()], ids=lambda release: release or "pinned")
@pytest.mark.parametrize("store", ["temporal", "visibility"])
def test_every_statement_equals_the_one_the_tool_runs(release: str | None, store: Store, app_db: AppDb) -> None:
    (tool, tool_why), (schema_dir, tree_why) = resolve_tool(release), resolve_schema_dir(release)
    if tool is None or schema_dir is None:
        unavailable(tool_why if tool is None else tree_why)
    assert run_tool_binary(tool, app_db, "setup-schema", "-v", "0.0").returncode == 0
    update = run_tool_binary(tool, app_db, "update-schema", "-d", str(versioned_dir(schema_dir, store)))
    assert update.returncode == 0, update.stderr[-2000:]
    executed = executed_statements(update.stderr)
    vendor = load_vendor_schema(schema_dir, store)
    ours = {item.name: [" ".join(s.text.split()) for s in item.statements] for item in vendor.versions}
    assert executed == ours
    assert sum(len(statements) for statements in ours.values()) > 50
