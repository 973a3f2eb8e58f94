"""docs/reference.md, and the exit-code and values tables of README.md and chart/README.md, made from the code's
own tables, so that no flag, default, exit code, log event or chart value is written down by hand:

    python -m devtools.reference            # rewrite them
    python -m devtools.reference --check    # exit 1 and name the files that differ (tests/project/test_reference.py)

Sources: `migrator.cli.options.OPTIONS` (flags, variables, defaults, meanings), `migrator.errors.EXIT_MEANINGS`,
the log calls in `migrator/` (read with `ast`, see `log_events`), and chart/values.yaml with its `# --` comments.
In README.md and chart/README.md only the text between `<!-- NAME -->` and `<!-- /NAME -->` is rewritten.
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devtools.pins import REPO_ROOT
from migrator.cli.options import OPTIONS
from migrator.errors import EXIT_MEANINGS, ExitStatus

REFERENCE = REPO_ROOT / "docs" / "reference.md"
README = REPO_ROOT / "README.md"
CHART_README = REPO_ROOT / "chart" / "README.md"
VALUES = REPO_ROOT / "chart" / "values.yaml"
BENCHMARKS = REPO_ROOT / "docs" / "benchmarks.md"
PACKAGE = REPO_ROOT / "migrator"
LEVELS = ("debug", "info", "warning", "error", "exception", "critical")
EVENT_NAME = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")
# Bound once per run by `migrator.cli.main` (structlog contextvars), so on every event after the settings are read.
CONTEXT_FIELDS = ("database", "schema")


def _cell(text: str) -> str:
    """``text`` for a Markdown table cell: pipes escaped, and ``<`` outside code spans written so that GitHub does
    not take ``<schema>`` for an HTML tag and hide it."""
    parts = text.replace("|", "\\|").replace("\n", " ").split("`")
    return "`".join(part if i % 2 else part.replace("<", "&lt;") for i, part in enumerate(parts))


# --- options ----------------------------------------------------------------------------------------------------


def options_table() -> list[str]:
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for option in OPTIONS:
        flags = ", ".join(f"`{flag}`" for flag in option.flags)
        default = "(empty)" if option.default == "" else f"`{option.default}`" if option.default else ""
        rows.append(f"| {flags} | `{option.env}` | {default} | {_cell(option.help)} |")
    rows.append("| `--traceback` | | | re-raise errors with a Python traceback (debugging) |")
    rows.append("| `--version`, `--help` | | | |")
    return rows


# The options an operator sets (README, "Flags people set"); the rest are in docs/reference.md.
COMMON_OPTIONS = (
    "host",
    "user",
    "password",
    "database",
    "store",
    "target",
    "connect_timeout",
    "lock_timeout",
    "ddl_lock_timeout",
    "rewrite_mode",
    "max_stall",
    "log_format",
)


def common_options_table() -> list[str]:
    by_dest = {option.dest: option for option in OPTIONS}
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for dest in COMMON_OPTIONS:
        option = by_dest[dest]
        default = "(empty)" if option.default == "" else f"`{option.default}`" if option.default else ""
        rows.append(f"| `{option.flags[0]}` | `{option.env}` | {default} | {_cell(option.help)} |")
    return rows


# --- exit codes -------------------------------------------------------------------------------------------------


def exit_table() -> list[str]:
    rows = ["| code | meaning |", "|---|---|"]
    rows += [f"| {status.value} | {summary}: {_cell(cases)} |" for status, (summary, cases) in EXIT_MEANINGS.items()]
    return rows


def _job_behaviour(status: ExitStatus, fail_fast: Sequence[int]) -> str:
    """What the chart's Job does with a container that exits with ``status`` (templates/job.yaml's podFailurePolicy)."""
    if status is ExitStatus.OK:
        return "next container, then the Job completes"
    if status in fail_fast:
        return "the Job fails at once"
    if status is ExitStatus.WAIT_TIMEOUT:
        return "(`wait` snippet) the init container restarts"
    if status is ExitStatus.TERMINATED:
        return "retried; an evicted pod does not count (`DisruptionTarget` is ignored)"
    if status is ExitStatus.DDL_FAILED:
        return "retried up to `job.backoffLimit` (a re-run resumes or repairs the half-applied version)"
    return "retried up to `job.backoffLimit`"


def chart_exit_table() -> list[str]:
    fail_fast = yaml.safe_load(VALUES.read_text())["job"]["failFastExitCodes"]
    codes = ", ".join(str(code) for code in fail_fast)
    rows = [f"| code | meaning | Job behaviour (default `failFastExitCodes: [{codes}]`) |", "|---|---|---|"]
    rows += [
        f"| {status.value} | {summary} | {_job_behaviour(status, fail_fast)} |"
        for status, (summary, _) in EXIT_MEANINGS.items()
    ]
    return rows


# --- log events -------------------------------------------------------------------------------------------------


@dataclass
class Event:
    """One event name, with every level and field any of its call sites gives it."""

    name: str
    levels: set[str] = field(default_factory=set)
    fields: set[str] = field(default_factory=set)
    opaque: set[str] = field(default_factory=set)  # `**expr` the scan could not resolve to keys
    sites: set[str] = field(default_factory=set)


def _dict_keys(node: ast.AST) -> set[str] | None:
    """The keys of a dict literal with constant string keys (None for anything else)."""
    if not isinstance(node, ast.Dict):
        return None
    keys = [k.value if isinstance(k, ast.Constant) else None for k in node.keys]
    return {k for k in keys if isinstance(k, str)} if all(isinstance(k, str) for k in keys) else None


class _Package:
    """Every module of the package parsed once, and the functions whose every return is a dict literal."""

    def __init__(self, root: Path) -> None:
        self.modules = {path: ast.parse(path.read_text(), str(path)) for path in sorted(root.rglob("*.py"))}
        self.returns: dict[str, list[set[str]]] = {}
        for tree in self.modules.values():
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef):
                    found = [_dict_keys(r.value) for r in ast.walk(node) if isinstance(r, ast.Return) and r.value]
                    if found and all(keys is not None for keys in found):
                        self.returns.setdefault(node.name, []).append(set().union(*(k for k in found if k)))

    def call_keys(self, node: ast.AST) -> set[str] | None:
        """Keys of ``f(...)`` or ``obj.f(...)`` when exactly one function of that name returns dict literals."""
        if not isinstance(node, ast.Call):
            return None
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        candidates = self.returns.get(name or "", [])
        return candidates[0] if len(candidates) == 1 else None


def _local_keys(package: _Package, function: ast.AST, name: str) -> set[str] | None:
    """Keys of a local dict ``name``: assigned from a literal or a resolvable call, then ``name.update(k=...)``."""
    keys: set[str] | None = None
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            keys = _dict_keys(node.value) or package.call_keys(node.value)
            if keys is None:
                return None
    if keys is None:
        return None
    for node in ast.walk(function):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "update"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == name
        ):
            keys |= {kw.arg for kw in node.keywords if kw.arg}
    return keys


def _level(call: ast.Call) -> str | None:
    """``log.info(...)`` → info; ``getattr(log, level)(...)`` → "the tool's"; None when not a log call."""
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "log":
        return func.attr if func.attr in LEVELS else None
    if (
        isinstance(func, ast.Call)
        and isinstance(func.func, ast.Name)
        and func.func.id == "getattr"
        and isinstance(func.args[0], ast.Name)
        and func.args[0].id == "log"
    ):
        return "the tool's level"
    return None


def _calls(node: ast.AST, scope: ast.AST) -> Iterator[tuple[ast.Call, ast.AST]]:
    """Every call under ``node`` with its innermost enclosing function (or the module)."""
    for child in ast.iter_child_nodes(node):
        inner = child if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else scope
        if isinstance(child, ast.Call):
            yield child, scope
        yield from _calls(child, inner)


def log_events(root: Path = PACKAGE) -> dict[str, Event]:
    """Every event the package logs, read from its source.

    Why a scan of the calls and not a registry of events: the calls are what runs, so the reference cannot list
    an event nobody emits or miss one somebody added, and a new module needs no registration to be documented.
    A call the scan cannot read (an event name that is not a literal) fails it, so nothing escapes it silently.
    """
    package = _Package(root)
    events: dict[str, Event] = {}
    for path, tree in package.modules.items():
        where = str(path.relative_to(root.parent))
        for node, function in _calls(tree, tree):
            if (level := _level(node)) is None:
                continue
            first = node.args[0] if node.args else None
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                raise ValueError(f"{where}:{node.lineno}: a log call whose event is not a string literal")
            if not EVENT_NAME.match(first.value):
                raise ValueError(f"{where}:{node.lineno}: event {first.value!r} is not a dotted name")
            event = events.setdefault(first.value, Event(first.value))
            event.levels.add("error" if level == "exception" else level)
            event.sites.add(where)
            for keyword in node.keywords:
                if keyword.arg is not None:
                    event.fields.add(keyword.arg)
                    continue
                value = keyword.value
                keys = package.call_keys(value)
                if keys is None and isinstance(value, ast.Name):
                    keys = _local_keys(package, function, value.id)
                if keys is None:
                    event.opaque.add(ast.unparse(value))
                else:
                    event.fields |= keys
    return dict(sorted(events.items()))


def events_table() -> list[str]:
    rows = ["| event | level | fields | emitted in |", "|---|---|---|---|"]
    for event in log_events().values():
        fields = [f"`{name}`" for name in sorted(event.fields)]
        fields += [f"those of `{expr}`" for expr in sorted(event.opaque)]
        levels = ", ".join(sorted(event.levels))
        sites = ", ".join(f"`{site}`" for site in sorted(event.sites))
        rows.append(f"| `{event.name}` | {levels} | {', '.join(fields) or '—'} | {sites} |")
    return rows


# --- chart values -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    path: str
    kind: str
    default: str
    description: str


FREE_FORM = {"podSecurityContext", "securityContext", "resources"}  # documented as one value each


def _comments(lines: list[str]) -> dict[str, str]:
    """Dotted path → its `# --` comment (continued by the `#` lines right after), from values.yaml's text."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped[1:].strip())
            continue
        match = re.match(r"^(\s*)([A-Za-z0-9_]+):", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([*(name for _, name in stack), match.group(2)])
        stack.append((indent, match.group(2)))
        if pending is not None:
            found[path] = " ".join(pending)
            pending = None
    return found


def _kind(value: Any, schema: dict[str, Any]) -> str:
    types = schema.get("type")
    names = {"string": "string", "integer": "int", "boolean": "bool", "array": "list", "object": "object"}
    if isinstance(types, list):
        return " or ".join(names.get(str(t), str(t)) for t in types)
    if isinstance(types, str):
        return names.get(types, types)
    return {bool: "bool", int: "int", str: "string", list: "list", dict: "object"}.get(type(value), "any")


def chart_values() -> list[Value]:
    values = yaml.safe_load(VALUES.read_text())
    schema = json.loads((VALUES.parent / "values.schema.json").read_text())
    comments = _comments(VALUES.read_text().splitlines())
    found: list[Value] = []

    def walk(node: Any, node_schema: dict[str, Any], prefix: str) -> None:
        if isinstance(node, dict) and node and prefix not in FREE_FORM:
            for key, child in node.items():
                walk(child, node_schema.get("properties", {}).get(key, {}), f"{prefix}.{key}" if prefix else key)
            return
        if prefix not in comments:
            raise ValueError(f"chart/values.yaml: {prefix} has no `# --` comment")
        default = "see values.yaml" if prefix in FREE_FORM else json.dumps(node, separators=(", ", ": "))
        found.append(Value(prefix, _kind(node, node_schema), default, comments[prefix]))

    walk(values, schema, "")
    return found


def values_table() -> list[str]:
    rows = ["| value | type | default | description |", "|---|---|---|---|"]
    rows += [f"| `{v.path}` | {v.kind} | `{v.default}` | {_cell(v.description)} |" for v in chart_values()]
    return rows


# --- the documents ----------------------------------------------------------------------------------------------


def reference() -> str:
    parts = [
        "# Reference",
        "",
        "Generated by `python -m devtools.reference` from the code's own tables (`migrator/cli/options.py`,",
        "`migrator/errors.py`, the log calls in `migrator/`, `chart/values.yaml`); do not edit by hand.",
        "",
        "## Options",
        "",
        "Options may come before or after the command. A flag wins over its variable, the variable over the",
        "default. Connection options have temporal-sql-tool's names and variables.",
        "",
        *options_table(),
        "",
        "## Exit codes",
        "",
        *exit_table(),
        "",
        "## Log events",
        "",
        "JSON lines on stderr (`--log-format console` for people), one event name plus fields. Every event after",
        f"the settings are read also carries {', '.join(f'`{name}`' for name in CONTEXT_FIELDS)}; JSON lines carry",
        "`level` and `timestamp` too.",
        "",
        *events_table(),
        "",
        "## Chart values",
        "",
        "From `chart/values.yaml` (its `# --` comments) and `chart/values.schema.json` (the types).",
        "",
        *values_table(),
        "",
    ]
    return "\n".join(parts)


def bench_table(name: str, form: str = "table", data: str | None = None) -> list[str]:
    """bench/<data or name>.json's figures, as `bench.<name>.<form>` renders them (`table` is what a run prints)."""
    module = importlib.import_module(f"bench.{name}")
    render = getattr(module, form)
    return str(render(json.loads((REPO_ROOT / "bench" / f"{data or name}.json").read_text()))).splitlines()


BLOCKS: dict[Path, dict[str, Callable[[], list[str]]]] = {
    README: {
        "common-options": common_options_table,
        "exit-codes": exit_table,
        "bench-rewrite-summary": functools.partial(bench_table, "rewrite", "summary"),
    },
    CHART_README: {"exit-codes": chart_exit_table, "values": values_table},
    BENCHMARKS: {
        "bench-run": functools.partial(bench_table, "run", data="results"),
        "bench-online": functools.partial(bench_table, "online"),
        "bench-rewrite": functools.partial(bench_table, "rewrite"),
    },
}


def replace_block(text: str, name: str, lines: list[str]) -> str:
    """``text`` with the lines between ``<!-- name -->`` and ``<!-- /name -->`` replaced by ``lines``."""
    pattern = re.compile(rf"(<!-- {re.escape(name)} -->\n).*?(<!-- /{re.escape(name)} -->)", re.DOTALL)
    if len(pattern.findall(text)) != 1:
        raise ValueError(f"expected one <!-- {name} --> ... <!-- /{name} --> block")
    return pattern.sub(lambda m: m.group(1) + "\n".join(lines) + "\n" + m.group(2), text)


def generated() -> dict[Path, str]:
    """Every generated file's full text, as it should be."""
    files = {REFERENCE: reference()}
    for path, blocks in BLOCKS.items():
        text = path.read_text()
        for name, make in blocks.items():
            text = replace_block(text, name, make())
        files[path] = text
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    args = parser.parse_args(argv)
    stale = [path for path, text in generated().items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(REPO_ROOT)} is out of date: run python -m devtools.reference", file=sys.stderr)
        return 1 if stale else 0
    for path, text in generated().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for path in stale:
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
