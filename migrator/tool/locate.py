"""Where the tool is: checked by every `migrate`, also one that finds nothing to do, so kept apart from the
runner (`migrator.tool.runner`), which only a run that starts the tool needs."""

from __future__ import annotations

import os
import shutil

from migrator.errors import UsageError


def resolve_tool(name: str) -> str:
    """The tool's absolute path; checked before any DDL so a missing binary changes nothing."""
    found = shutil.which(name)
    if found is None:
        what = "is not executable" if os.path.exists(name) else "was not found"
        raise UsageError(f"temporal-sql-tool {name!r} {what}; install it or point --tool/TEMPORAL_SQL_TOOL at it")
    return found
