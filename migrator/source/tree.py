"""Read the vendor's versioned schema tree from disk, the way temporal-sql-tool reads it.

Layout: ``<schema-dir>/postgresql/v12/<store>/versioned/vX.Y/manifest.json`` plus the SQL files the manifest
lists in ``SchemaUpdateCqlFiles`` (never a glob: some directories keep files that are not run). Every problem
with the tree is a usage error (exit 2): the fix is to point --schema-dir at the tool's own release.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import structlog

from migrator.core.statements import Statement, describe
from migrator.core.vendor import STORES, VendorSchema, VendorVersion
from migrator.core.versions import parse_version
from migrator.errors import UsageError

log = structlog.get_logger("migrator.source")
_VERSION_DIR = re.compile(r"^v[\d.]+")


def _statements(directory: Path, files: tuple[str, ...]) -> tuple[Statement, ...]:
    from migrator.core.sqlsplit import SplitError, split_statements  # noqa: PLC0415 - a no-op reads no SQL

    statements: list[Statement] = []
    for file_name in files:
        path = directory / file_name
        try:
            statements.extend(describe(text) for text in split_statements(path.read_bytes()))
        except OSError:
            raise UsageError(f"{path} is listed in its manifest but cannot be read") from None
        except SplitError as exc:
            raise UsageError(f"{path} cannot be split into statements: {exc}") from None
    return tuple(statements)


def versioned_dir(schema_dir: Path, store: str) -> Path:
    return schema_dir / "postgresql" / "v12" / store / "versioned"


def _read_version(directory: Path) -> VendorVersion:
    manifest_path = directory / "manifest.json"
    try:
        raw = manifest_path.read_bytes()
        manifest = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {manifest_path}: {exc}; use the schema tree of the tool's own release") from None
    name = str(manifest.get("CurrVersion", "")).removeprefix("v")
    if name != directory.name.removeprefix("v"):
        raise UsageError(
            f"{manifest_path}: CurrVersion {name!r} does not match directory {directory.name}; "
            "the vendor tree is damaged, use the schema tree of the tool's own release"
        )
    min_compatible = str(manifest.get("MinCompatibleVersion", "")).removeprefix("v")
    files = manifest.get("SchemaUpdateCqlFiles") or []
    if not min_compatible or (not files and not manifest.get("AllowNoCqlFiles", False)):
        raise UsageError(f"{manifest_path}: MinCompatibleVersion or SchemaUpdateCqlFiles missing")
    for file_name in files:
        if not (directory / str(file_name)).is_file():
            raise UsageError(f"{directory / str(file_name)} is listed in its manifest but cannot be read")
    try:
        version = parse_version(name)
    except ValueError:
        raise UsageError(f"{manifest_path}: CurrVersion {name!r} is not a version") from None
    return VendorVersion(
        name=name,
        version=version,
        min_compatible=min_compatible,
        description=str(manifest.get("Description", "")),
        manifest_md5=hashlib.md5(raw, usedforsecurity=False).hexdigest(),
        directory=directory,
        files=tuple(str(name) for name in files),
    )


def _is_version_dir(path: Path) -> bool:
    """The tool's rule: a directory named like ``v1.2``; one that is not a version (``v1.2.bak``) is skipped with
    a warning, as the tool skips it."""
    if not path.is_dir() or not _VERSION_DIR.match(path.name):
        return False
    try:
        parse_version(path.name[1:])
    except ValueError:
        log.warning("vendor.directory_skipped", directory=str(path), reason="not a version, as the tool skips it")
        return False
    return True


def read_vendor_tree(schema_dir: Path, store: str) -> VendorSchema:
    """Read and validate every version directory of ``store`` (errors are usage errors: exit 2), without their
    statements (see `read_statements`), and the other store's first version beside it when there is one (see
    `VendorSchema.foreign_tables`)."""
    root = versioned_dir(schema_dir, store)
    versions = _versions(root, store)
    others = [name for name in STORES if name != store and versioned_dir(schema_dir, name).is_dir()]
    other = None
    if others:
        other_root = versioned_dir(schema_dir, others[0])
        first = _versions(other_root, others[0])[0]
        other = VendorSchema(others[0], other_root, (first,))
    return VendorSchema(store=store, versioned_dir=root, versions=versions, other=other)


def read_statements(vendor: VendorSchema, versions: Iterable[VendorVersion]) -> VendorSchema:
    """``vendor`` with the statements of ``versions`` (of this store, or the other store's first version) read
    from their files, split as the tool splits them."""
    wanted = [item for item in versions if item.read_statements is None]
    read = vendor.with_statements(_with_statements(item) for item in wanted if item in vendor.versions)
    if vendor.other is not None and vendor.other.versions[0] in wanted:
        read = replace(read, other=replace(vendor.other, versions=(_with_statements(vendor.other.versions[0]),)))
    return read


def load_vendor_schema(schema_dir: Path, store: str) -> VendorSchema:
    """The whole tree of ``store`` with every version's statements (tests and tools; a run reads only what its
    plan needs: `read_vendor_tree`, then `read_statements`)."""
    vendor = read_vendor_tree(schema_dir, store)
    return read_statements(vendor, [*vendor.versions, *(vendor.other.versions if vendor.other else ())])


def _with_statements(version: VendorVersion) -> VendorVersion:
    return replace(version, read_statements=_statements(Path(version.directory), version.files))


def _versions(root: Path, store: str) -> tuple[VendorVersion, ...]:
    if not root.is_dir():
        raise UsageError(
            f"no vendor schema at {root}; point --schema-dir at the tree holding postgresql/v12/{store}/versioned "
            "(in the admin-tools image: /etc/temporal/schema)"
        )
    versions = sorted(
        (_read_version(child) for child in root.iterdir() if _is_version_dir(child)),
        key=lambda item: item.version,
    )
    if not versions:
        raise UsageError(f"{root} holds no vX.Y version directories; check --schema-dir")
    return tuple(versions)
