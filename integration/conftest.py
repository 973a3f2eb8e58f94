"""Loads the integration suite's plugin (``integration/support/plugin.py``); nothing else lives here."""

from integration.support.plugin import (
    app_db,
    app_roles,
    make_db,
    pg_server,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_report_header,
    pytest_terminal_summary,
    release_files,
    run_migrator,
    run_tool,
    schema_dir,
    start_migrator,
    temporal_tool,
)

__all__ = [
    "app_db",
    "app_roles",
    "make_db",
    "pg_server",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_report_header",
    "pytest_terminal_summary",
    "release_files",
    "run_migrator",
    "run_tool",
    "schema_dir",
    "start_migrator",
    "temporal_tool",
]
