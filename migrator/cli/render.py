"""`status` and `plan` for a person at a terminal: a table in 100 columns instead of the JSON document.

It renders the same document the JSON output prints (never the planner's objects), so both formats show the
same facts, and fields other modules add later (the per-version ``impact`` list) appear once present.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from migrator.core.planner import Action
from migrator.core.sizes import pretty_size

OUTPUTS = ("json", "table")
WIDTH = 100
_INDENT = "  "
_MIN_DATABASE = 16
_LISTED_VERSIONS = 4
_NONE = "-"


def default_output(stream: TextIO) -> str:
    """A person at a terminal gets the table; a pipe, a script or the chart keep getting JSON."""
    return "table" if stream.isatty() else "json"


def render(document: Mapping[str, Any], output: str) -> str:
    """The text printed on stdout for ``document`` in ``output`` format (one of `OUTPUTS`)."""
    if output == "json":
        return json.dumps(document, indent=2)
    return render_table(document)


def _versions(names: Sequence[str]) -> str:
    """Pending versions, short enough for one cell: all of a few, else the range and the count."""
    if not names:
        return _NONE
    if len(names) <= _LISTED_VERSIONS:
        return ", ".join(names)
    return f"{names[0]} … {names[-1]} ({len(names)})"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, like ``kubectl get``; the last column is not padded."""
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def _paragraph(text: str, indent: str = _INDENT) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent + _INDENT)


def _section(title: str, items: Sequence[str]) -> list[str]:
    if not items:
        return []
    return ["", f"{title}:", *(line for item in items for line in _paragraph(item))]


def _summaries(document: Mapping[str, Any]) -> dict[str, str]:
    """Version → impact summary, for the versions whose impact item has one."""
    return {
        str(item["version"]): str(item["summary"])
        for item in document.get("impact") or ()
        if isinstance(item, Mapping) and item.get("summary") and "version" in item
    }


def _step_detail(step: Mapping[str, Any], covered: Sequence[str]) -> str:
    action = step.get("action")
    if action in (Action.SKIP_STATEMENT, Action.RUN_STATEMENT):
        verb = "in place, skipped" if action == Action.SKIP_STATEMENT else "runs"
        return f"{step.get('statement')}/{step.get('of')} {verb}: {step.get('text')}"
    if action == Action.DROP_INVALID_INDEX:
        return f"drops INVALID index {step.get('index')} (an interrupted build) before its rebuild"
    if action == Action.RECORD_VERSION:
        return f"records it as the tool does (was {step.get('old_version') or 'none'})"
    if action == Action.SETUP:
        return "creates schema_version and schema_update_history"
    if action == Action.CREATE_DATABASE:
        return f"creates database {step.get('database')!r}, owned by the role"
    if action == Action.ONLINE_REWRITE:
        return f"{step.get('table')} on a shadow table, swapped in ({step.get('reason')})"
    if action == Action.BUILD_INDEX_CONCURRENTLY:
        return f"builds {step.get('index')} CONCURRENTLY first (writes go on)"
    if action == Action.ABORT_ONLINE:
        return f"undoes the rewrite in progress; {step.get('table')} unchanged"
    return f"applies {_versions(covered)}" if covered else _NONE


def _covered(steps: Sequence[Mapping[str, Any]], pending: Sequence[str]) -> list[list[str]]:
    """The pending versions each step applies: a repair's record its own version, an update the rest up to its
    target."""
    covered: list[list[str]] = []
    done: set[str] = set()
    for step in steps:
        action, version = step.get("action"), str(step.get("version"))
        if action == Action.RECORD_VERSION:
            mine = [version] if version in pending else []
        elif action == Action.UPDATE:
            mine = [name for name in pending if name not in done]
            mine = mine[: mine.index(version) + 1] if version in mine else mine
        else:
            mine = []
        done.update(mine)
        covered.append(mine)
    return covered


_PATHS = {"online": "online-rewrite", "concurrent-index": "build-index-concurrently", "plain": "plain"}


def _rewrites(document: Mapping[str, Any]) -> list[str]:
    """Each heavy table's path with the estimate and why, and the disk an online rewrite holds."""
    lines = []
    for item in document.get("rewrites") or ():
        line = f"{_PATHS.get(item['path'], item['path'])} {item['table']} ({', '.join(item['versions'])}): "
        line += str(item["reason"])
        if item.get("extra_disk_bytes") is not None:
            line += f"; holds about {pretty_size(item['extra_disk_bytes'])} more disk for the whole run"
        lines.append(line)
    return _section("Rewrites", lines)


def _in_progress(document: Mapping[str, Any]) -> list[str]:
    online = document.get("online_rewrite")
    if not online:
        return []
    text = (
        f"{online['table']} ({', '.join(online['versions'])}), phase {online['phase']}: migrate resumes it, "
        "migrate --abort-online removes it (before its swap)"
    )
    return _section("Online rewrite in progress", [text])


def _version_cell(step: Mapping[str, Any]) -> str:
    if step.get("versions"):
        return ", ".join(step["versions"])
    return str(step.get("version") or _NONE)


def _steps(document: Mapping[str, Any]) -> list[str]:
    steps: Sequence[Mapping[str, Any]] = document.get("steps") or ()
    if not steps:
        return ["", "Steps: none; migrate would not start the tool."]
    summaries = _summaries(document)
    covered = _covered(steps, document.get("pending_versions") or ())
    rows = [["STEP", "ACTION", "VERSION", "DETAIL"]]
    rows += [
        [str(number), str(step.get("action")), _version_cell(step), _step_detail(step, versions)]
        for number, (step, versions) in enumerate(zip(steps, covered, strict=True), start=1)
    ]
    table = _columns(rows)
    lines = ["", table[0]]
    for row, versions in zip(table[1:], covered, strict=True):
        lines.append(_shorten(row, WIDTH))
        lines += [line for name in versions if name in summaries for line in _paragraph(summaries[name], "      ")]
    return lines


def render_table(document: Mapping[str, Any]) -> str:
    """The document as a person reads it first: one row for the store, then what needs attention."""
    pending: Sequence[str] = document.get("pending_versions") or ()
    header = ["STORE", "DATABASE", "CURRENT", "TARGET", "STATE", "PENDING"]
    database = str(document.get("database") or _NONE)
    row = [
        str(document.get("schema") or _NONE),
        database,
        str(document.get("current_version") or "none"),
        str(document.get("target_version") or _NONE),
        str(document.get("state") or _NONE),
        _versions(pending),
    ]
    overflow = max(len(line) for line in _columns([header, row])) - WIDTH
    if overflow > 0:  # only the database name can be long: cut it, keeping at least its start
        row[1] = _shorten(database, max(_MIN_DATABASE, len(database) - overflow))
    lines = _columns([header, row])
    if document.get("refusal"):
        lines += _section("Refused (exit 6 for plan and migrate; nothing changed)", [str(document["refusal"])])
    lines += _in_progress(document)
    lines += _section("Warnings", [str(item) for item in document.get("warnings") or ()])
    lines += _rewrites(document)
    if document.get("invalid_indexes"):
        lines += _section("INVALID indexes", [", ".join(document["invalid_indexes"])])
    if "steps" in document:
        lines += _steps(document)
        if document.get("blocked"):
            lines += _section("Blocked (migrate would stop before any DDL)", [str(document["blocked"])])
    else:
        summaries = _summaries(document)
        lines += _section("Impact", [summaries[name] for name in pending if name in summaries])
    return "\n".join(lines)
