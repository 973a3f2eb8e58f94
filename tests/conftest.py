"""Fast tests: no database. A small synthetic vendor tree exercises every kind of statement the repair handles."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from migrator.core.vendor import VendorSchema
from migrator.source.tree import load_vendor_schema

TreeSpec = dict[str, str]

# A miniature store shaped like Temporal's: a base version with a seed row, a version that drops things, and a
# version that drops and re-adds a column with a new shape (the data-destroying replay case).
MINI_STORE: TreeSpec = {
    "1.0": """
        CREATE TABLE accounts (id INT PRIMARY KEY, name VARCHAR(16) NOT NULL); -- base table
        CREATE TABLE meta (partition_id INT PRIMARY KEY, version BIGINT NOT NULL);
        INSERT INTO meta (partition_id, version) VALUES (54321, 1);
        CREATE TABLE old_tasks (id INT PRIMARY KEY);
        CREATE INDEX accounts_by_name ON accounts (name);
    """,
    "1.1": """
        ALTER TABLE accounts ALTER COLUMN name TYPE VARCHAR(255);
        DROP TABLE old_tasks;
        ALTER TABLE accounts ADD encoding VARCHAR(16) NULL;
    """,
    "1.2": """
        DROP INDEX accounts_by_name;
        ALTER TABLE accounts DROP COLUMN encoding;
        ALTER TABLE accounts ADD COLUMN encoding VARCHAR(16) NOT NULL DEFAULT '';
        CREATE INDEX accounts_by_name ON accounts (name, encoding);
    """,
    "1.10": """
        CREATE TABLE later (id INT);
    """,
}


def write_tree(root: Path, store: str, spec: TreeSpec) -> Path:
    """Write a versioned tree under ``root`` (the --schema-dir) and return ``root``."""
    for version, sql_text in spec.items():
        directory = root / "postgresql" / "v12" / store / "versioned" / f"v{version}"
        directory.mkdir(parents=True)
        (directory / "schema.sql").write_text(sql_text)
        manifest = {
            "CurrVersion": version,
            "MinCompatibleVersion": "1.0",
            "Description": f"version {version}",
            "SchemaUpdateCqlFiles": ["schema.sql"],
        }
        (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root


@pytest.fixture(autouse=True)
def fresh_logging() -> Iterator[None]:
    """Each test starts and ends with structlog's defaults (the CLI configures it per run)."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def mini_schema_dir(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "schema", "temporal", MINI_STORE)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, mini_schema_dir: Path, tmp_path: Path) -> pytest.MonkeyPatch:
    """The environment of a CLI run on the mini tree: no SQL_/MIGRATOR_/TEMPORAL_ variable of the developer's
    shell, a user and database, and a termination-log file that exists (Kubernetes makes it; the migrator only
    writes into it). Returns the monkeypatch, for what a test sets beyond that."""
    for key in list(os.environ):
        if key.startswith(("SQL_", "MIGRATOR_", "TEMPORAL_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SQL_USER", "temporal")
    monkeypatch.setenv("SQL_DATABASE", "temporal")
    monkeypatch.setenv("MIGRATOR_SCHEMA_DIR", str(mini_schema_dir))
    (tmp_path / "termination-log").touch()
    monkeypatch.setenv("MIGRATOR_TERMINATION_LOG", str(tmp_path / "termination-log"))
    return monkeypatch


@pytest.fixture
def mini_vendor(mini_schema_dir: Path) -> VendorSchema:
    return load_vendor_schema(mini_schema_dir, "temporal")


@pytest.fixture
def tree_writer(tmp_path: Path) -> Callable[[TreeSpec], Path]:
    def write(spec: TreeSpec) -> Path:
        return write_tree(tmp_path / "custom", "temporal", spec)

    return write
