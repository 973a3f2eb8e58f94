from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from devtools.ci import unavailable
from devtools.pins import resolve_schema_dir, upgrade_sources
from migrator.core.vendor import STORES
from migrator.errors import UsageError
from migrator.source.tree import load_vendor_schema, versioned_dir
from tests.conftest import TreeSpec


def test_versions_are_ordered_numerically(mini_schema_dir: Path) -> None:
    vendor = load_vendor_schema(mini_schema_dir, "temporal")
    assert [item.name for item in vendor.versions] == ["1.0", "1.1", "1.2", "1.10"]
    assert vendor.newest.name == "1.10"


def test_manifest_fields_are_recorded_as_the_tool_records_them(mini_schema_dir: Path) -> None:
    vendor = load_vendor_schema(mini_schema_dir, "temporal")
    manifest = versioned_dir(mini_schema_dir, "temporal") / "v1.1" / "manifest.json"
    assert vendor.versions[1].manifest_md5 == hashlib.md5(manifest.read_bytes()).hexdigest()
    assert (vendor.versions[1].min_compatible, vendor.versions[1].description) == ("1.0", "version 1.1")


def test_only_files_listed_in_the_manifest_are_read(mini_schema_dir: Path) -> None:
    (versioned_dir(mini_schema_dir, "temporal") / "v1.10" / "unused.sql").write_text("DROP TABLE accounts;")
    vendor = load_vendor_schema(mini_schema_dir, "temporal")
    assert [s.text for s in vendor.newest.statements] == ["CREATE TABLE later (id INT);"]


def test_a_directory_that_is_not_a_version_is_skipped_as_the_tool_skips_it(mini_schema_dir: Path) -> None:
    (versioned_dir(mini_schema_dir, "temporal") / "v1.2.bak").mkdir()
    vendor = load_vendor_schema(mini_schema_dir, "temporal")
    assert [item.name for item in vendor.versions] == ["1.0", "1.1", "1.2", "1.10"]


def test_missing_tree_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--schema-dir"):
        load_vendor_schema(tmp_path, "temporal")


def test_manifest_version_must_match_its_directory(tree_writer: Callable[[TreeSpec], Path]) -> None:
    root = tree_writer({"1.0": "CREATE TABLE a (b INT);"})
    manifest = versioned_dir(root, "temporal") / "v1.0" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "CurrVersion": "1.1"}))
    with pytest.raises(UsageError, match=r"does not match directory v1\.0"):
        load_vendor_schema(root, "temporal")


def test_listed_file_missing_is_reported(tree_writer: Callable[[TreeSpec], Path]) -> None:
    root = tree_writer({"1.0": "CREATE TABLE a (b INT);"})
    (versioned_dir(root, "temporal") / "v1.0" / "schema.sql").unlink()
    with pytest.raises(UsageError, match="listed in its manifest but cannot be read"):
        load_vendor_schema(root, "temporal")


def test_broken_manifest_is_reported(tree_writer: Callable[[TreeSpec], Path]) -> None:
    root = tree_writer({"1.0": "CREATE TABLE a (b INT);"})
    (versioned_dir(root, "temporal") / "v1.0" / "manifest.json").write_text("{not json")
    with pytest.raises(UsageError, match="cannot read"):
        load_vendor_schema(root, "temporal")


def test_manifest_without_min_compatible_version_is_refused(tree_writer: Callable[[TreeSpec], Path]) -> None:
    root = tree_writer({"1.0": "CREATE TABLE a (b INT);"})
    manifest = versioned_dir(root, "temporal") / "v1.0" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "MinCompatibleVersion": ""}))
    with pytest.raises(UsageError, match="MinCompatibleVersion"):
        load_vendor_schema(root, "temporal")


def test_tree_without_versions_is_refused(tmp_path: Path) -> None:
    versioned_dir(tmp_path, "temporal").mkdir(parents=True)
    with pytest.raises(UsageError, match=r"no vX\.Y version directories"):
        load_vendor_schema(tmp_path, "temporal")


@pytest.mark.parametrize("release", [None, *upgrade_sources()], ids=lambda release: release or "pinned")
@pytest.mark.parametrize("store", STORES)
def test_every_statement_of_each_release_is_understood(release: str | None, store: str) -> None:
    """Every vendor statement splits, and has known effects or is a known harmless re-run."""
    root, why = resolve_schema_dir(release)
    if root is None:
        unavailable(why)
    vendor = load_vendor_schema(root, store)
    unknown = [s.text for s in vendor.all_statements() if not s.recognised]
    assert unknown == []
    assert sum(1 for _ in vendor.all_statements()) > 50
    assert all(statement.text.endswith(";") for statement in vendor.all_statements())
