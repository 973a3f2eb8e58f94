"""The vendor's versioned schema tree as values: versions, their manifests' facts and their statements.

`migrator.source.tree` reads a tree from disk into these values, the way temporal-sql-tool reads it; the
planner and the tool must see the same tree, so the tool is always pointed at `VendorSchema.versioned_dir`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePath

from packaging.version import Version

from migrator.core.statements import Statement
from migrator.core.versions import parse_version

STORES = ("temporal", "visibility")


@dataclass(frozen=True)
class VendorVersion:
    """One ``vX.Y`` directory: what the tool runs for it (``statements``, split as the tool splits the files the
    manifest lists) and what it records afterwards (name, minimum compatible version, description, MD5)."""

    name: str
    version: Version
    min_compatible: str
    description: str
    manifest_md5: str
    directory: PurePath
    files: tuple[str, ...]
    statements: tuple[Statement, ...] = ()


@dataclass(frozen=True)
class VendorSchema:
    """All versions of one store, oldest first."""

    store: str
    versioned_dir: PurePath
    versions: tuple[VendorVersion, ...]
    other: VendorSchema | None = None  # the other store of the same tree, to recognise its tables

    def foreign_tables(self) -> frozenset[str]:
        """Tables only the other store creates: finding them means both stores share one database."""
        if self.other is None:
            return frozenset()
        return frozenset(self.other.created_tables() - self.created_tables())

    @property
    def newest(self) -> VendorVersion:
        return self.versions[-1]

    def find(self, version: Version) -> VendorVersion | None:
        return next((item for item in self.versions if item.version == version), None)

    def between(self, current: Version, target: Version) -> list[VendorVersion]:
        """Versions in (current, target], the ones update-schema would run."""
        return [item for item in self.versions if current < item.version <= target]

    def created_tables(self) -> set[str]:
        """Every table some vendor statement creates: their presence marks a database as Temporal's."""
        return {
            effect.ref.name
            for item in self.versions
            for statement in item.statements
            for effect in statement.effects
            if effect.present and effect.ref.kind == "table"
        }

    def all_statements(self) -> Iterator[Statement]:
        for item in self.versions:
            yield from item.statements

    def after(self, version: str | None) -> list[VendorVersion]:
        """Versions newer than a stored version string; all of them when it is missing or unparseable."""
        try:
            current = parse_version(version) if version is not None else None
        except ValueError:
            current = None
        return [item for item in self.versions if current is None or item.version > current]
