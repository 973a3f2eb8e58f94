"""Shared steps of the integration scenarios: bring a database to a version with the bare tool, leave a
version half-applied, and the reference schema of a clean install."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.databases import AppDb, MakeDb
from devtools.pins import Store
from integration.support.crashpoints import seed_rows, seed_tables
from integration.support.processes import bring_to
from migrator.core.vendor import VendorVersion
from migrator.core.versions import parse_version
from migrator.source.tree import load_vendor_schema
from migrator.tool.runner import parse_line

# Newest schema versions of the pinned release (TEMPORAL_VERSION v1.32.2).
TARGETS: dict[Store, str] = {"temporal": "1.19", "visibility": "1.14"}
_reference_dumps: dict[tuple[Path, Path, Store], str] = {}
_VERSION_MARK = re.compile(r"^---- Executing updates for version (\S+) ----$")


def tool_to(db: AppDb, schema_dir: Path, store: Store, version: str) -> None:
    """Set up and update ``db`` with the pinned bare tool, as a hook script would ("0.0" = setup only)."""
    assert db.tool is not None, "make_db gives every database the pinned tool"
    bring_to(db.tool, db, schema_dir, store, version)


def vendor_version(schema_dir: Path, store: Store, version: str) -> VendorVersion:
    found = load_vendor_schema(schema_dir, store).find(parse_version(version))
    assert found is not None
    return found


def previous_version(schema_dir: Path, store: Store, version: str) -> str:
    vendor = load_vendor_schema(schema_dir, store)
    older = [item.name for item in vendor.versions if item.version < parse_version(version)]
    return older[-1] if older else "0.0"


def half_apply(db: AppDb, schema_dir: Path, store: Store, version: str, applied: int) -> VendorVersion:
    """The state a crash leaves: versions below ``version`` recorded, its first ``applied`` statements run.

    The statements are the vendor's own, split exactly as the tool splits them, run one by one in
    autocommit as the tool runs them, by the same role.
    """
    tool_to(db, schema_dir, store, previous_version(schema_dir, store, version))
    target = vendor_version(schema_dir, store, version)
    with db.connect() as conn:
        for statement in target.statements[:applied]:
            conn.execute(statement.text.encode())
    return target


@dataclass(frozen=True)
class Reference:
    """A clean install by a bare tool of its own tree, at the tree's newest version: what a migrated store must
    equal (schema, seed rows, the versions recorded in order)."""

    dump: str
    seeds: dict[str, list[tuple[Any, ...]]]
    versions: list[str]


def clean_install(tool: Path, db: AppDb, schema_dir: Path, store: Store) -> Reference:
    """Install ``store`` on the empty ``db`` with the bare ``tool`` and describe the result."""
    bring_to(tool, db, schema_dir, store, None)
    with db.server.admin_connect(db.name) as conn:
        seeds = seed_rows(conn, seed_tables(schema_dir, store))
    return Reference(db.schema_dump(), seeds, [new for _, new in db.history()])


def reference_dump(
    make_db: MakeDb, schema_dir: Path, store: Store, *, tool: Path | None = None, version: str | None = None
) -> str:
    """Schema of a clean install by a bare tool (default the pinned one) of its own tree, at ``version`` (default
    the pinned target; None with another ``tool``: the tree's newest); once per tool, tree, store and worker."""
    key = (tool or Path(), schema_dir, store)
    if key not in _reference_dumps:
        clean = make_db()
        if tool is None:
            tool_to(clean, schema_dir, store, version or TARGETS[store])
        else:
            bring_to(tool, clean, schema_dir, store, version)
        _reference_dumps[key] = clean.schema_dump()
    return _reference_dumps[key]


def executed_statements(tool_stderr: str) -> dict[str, list[str]]:
    """Version -> the statements a debug-logging ``update-schema`` run executed, from its output: the lines
    between ``---- Executing updates for version X ----`` and ``---- Done ----``."""
    executed: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in tool_stderr.splitlines():
        message = parse_line(raw).message
        if mark := _VERSION_MARK.match(message):
            current = executed.setdefault(mark.group(1), [])
        elif message == "---- Done ----":
            current = None
        elif current is not None:
            current.append(message)
    return executed


def held_until(gate: Path, timeout: float = 300) -> str:
    """Shell for ``wrapped_tool``'s ``before``: wait until the file ``gate`` exists (at most ``timeout`` seconds),
    so a test decides when the tool starts its work instead of guessing how long its own steps take."""
    return f'i=0; while [ ! -e "{gate}" ] && [ $i -lt {int(timeout * 20)} ]; do sleep 0.05; i=$((i + 1)); done'


def wrapped_tool(directory: Path, tool: Path, before: str = "", rewrite: str = "") -> Path:
    """A stand-in for the tool: a shell script that runs ``before`` (e.g. ``sleep 3``), then the real tool with
    its arguments, rewritten by the ``sed`` expression ``rewrite`` when given (one argument per line)."""
    script = directory / "temporal-sql-tool"
    run = f'exec "{tool}" "$@"'
    if rewrite:
        run = f'args=$(printf "%s\\n" "$@" | sed "{rewrite}")\nIFS="\n"\nexec "{tool}" $args'
    script.write_text(f"#!/bin/sh\n{before}\n{run}\n")
    script.chmod(0o755)
    return script
