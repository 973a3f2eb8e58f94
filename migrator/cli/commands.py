"""The four commands, each from settings to the summary `main` reports: status, plan, migrate, wait."""

from __future__ import annotations

import sys
from typing import Any

from migrator.cli.render import default_output, render
from migrator.core.impact import too_large
from migrator.core.planner import access_problem, resolve_target
from migrator.core.settings import Settings
from migrator.core.vendor import VendorSchema, VendorVersion
from migrator.errors import UnsafeStateError
from migrator.run.createdb import absent_document, ensure_database
from migrator.run.inspect import inspect
from migrator.run.migrate import migrate
from migrator.run.wait import wait
from migrator.source.tree import read_vendor_tree
from migrator.tool.runner import resolve_tool


def run_command(settings: Settings) -> dict[str, Any]:
    vendor = read_vendor_tree(settings.schema_dir, settings.store)  # statements: only those a plan needs
    target = resolve_target(vendor, settings.target)
    if settings.command == "migrate":
        tool = resolve_tool(settings.tool)
        if settings.create_database:
            ensure_database(settings)
        report = migrate(settings, tool, vendor, target)  # raises RunFailed: see main
        return {
            "from_version": report.from_version,
            "to_version": report.to_version,
            "steps": report.steps,
            "repaired_statements": report.repaired_statements,
        }
    if settings.command == "wait":
        return {"current_version": wait(settings, vendor, target)}
    document = absent_document(settings, vendor, target) if settings.create_database else None
    if document is None:
        document = _observed_document(settings, vendor, target)
    print(render(document, settings.output or default_output(sys.stdout)))
    if settings.command == "plan" and document["refusal"]:
        raise UnsafeStateError(document["refusal"])
    return {"state": document["state"], "current_version": document["current_version"]}


def _observed_document(settings: Settings, vendor: VendorSchema, target: VendorVersion) -> dict[str, Any]:
    state, planned, impact = inspect(settings, vendor, target)
    document = planned.to_dict()
    document["invalid_indexes"] = list(state.catalog.invalid_indexes)
    document["impact"] = [version.to_dict() for version in impact]
    if settings.command == "plan":
        document["steps"] = [step.to_dict() for step in planned.steps]
        document["blocked"] = access_problem(state, planned) or too_large(impact, settings.max_rewrite_size)
    return document
