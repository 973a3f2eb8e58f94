"""The four commands, each from settings to the summary `main` reports: status, plan, migrate, wait."""

from __future__ import annotations

import sys
from typing import Any

from migrator.cli.render import default_output, render
from migrator.core.planner import Plan, Situation, resolve_target
from migrator.core.settings import Settings
from migrator.core.state import State
from migrator.run.inspect import inspect
from migrator.run.migrate import migrate
from migrator.run.wait import wait
from migrator.source.tree import read_vendor_tree
from migrator.tool.locate import resolve_tool


def run_command(settings: Settings) -> dict[str, Any]:
    vendor = read_vendor_tree(settings.schema_dir, settings.store)  # statements: only those a plan needs
    target = resolve_target(vendor, settings.target)
    if settings.command == "migrate":
        tool = resolve_tool(settings.tool)
        report = migrate(settings, tool, vendor, target)  # raises RunFailed: see main
        return {
            "from_version": report.from_version,
            "to_version": report.to_version,
            "steps": report.steps,
            "repaired_statements": report.repaired_statements,
        }
    if settings.command == "wait":
        return {"current_version": wait(settings, vendor, target)}
    state, planned = inspect(settings, vendor, target)
    document = plan_document(settings.command, state, planned)
    print(render(document, settings.output or default_output(sys.stdout)))
    error = planned.verdict.error() if settings.command == "plan" else None
    if error is not None:  # after the document: plan exits with the code migrate would exit with before any DDL
        raise error
    return {"state": document["state"], "current_version": document["current_version"]}


def plan_document(command: str, state: State, planned: Plan) -> dict[str, Any]:
    """What `status` (the state) and `plan` (the state, the steps and what blocks them) print."""
    document = planned.to_dict()
    document["invalid_indexes"] = list(state.catalog.invalid_indexes)
    document["impact"] = [version.to_dict() for version in planned.impact]
    if command == "plan":
        document["steps"] = [step.to_dict() for step in planned.steps]
        document["blocked"] = planned.blocked
    elif planned.situation is Situation.ABSENT and planned.blocked:  # status: the fix, before migrate needs it
        document["warnings"] = [*document["warnings"], planned.blocked]
    return document
