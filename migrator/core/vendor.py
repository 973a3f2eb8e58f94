"""The vendor's versioned schema tree as values: versions, their manifests' facts and their statements.

`migrator.source.tree` reads a tree from disk into these values, the way temporal-sql-tool reads it; the
planner and the tool must see the same tree, so the tool is always pointed at `VendorSchema.versioned_dir`.

Statements are read only for the versions a plan needs (`statements_needed`): a store at its target reads
no SQL file of its own. The shell observes, asks which versions' statements the plan needs, reads them
(`migrator.source.tree.read_statements`), and plans; reading a version's statements before that is a bug,
and fails loudly rather than planning with none.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
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
    read_statements: tuple[Statement, ...] | None = None  # None: not read from disk yet

    @property
    def statements(self) -> tuple[Statement, ...]:
        if self.read_statements is None:
            raise AssertionError(f"the statements of v{self.name} were not read; see vendor.statements_needed")
        return self.read_statements


@dataclass(frozen=True)
class VendorSchema:
    """All versions of one store, oldest first."""

    store: str
    versioned_dir: PurePath
    versions: tuple[VendorVersion, ...]
    # The other store of the same tree, to recognise its tables: its first version only. A store is recognised
    # by the tables its first version creates, which the other store never creates (tested on every pinned
    # tree). Read, like this store's statements, only when the store is not at its target (`statements_needed`).
    other: VendorSchema | None = None

    def foreign_tables(self) -> frozenset[str]:
        """Tables the other store's first version creates: finding them means both stores share one database.

        Empty while the other store's first version is unread: a store at its target runs nothing, so it
        cannot come to share a database by this run, and a no-op reads no SQL file."""
        if self.other is None or self.other.versions[0].read_statements is None:
            return frozenset()
        return frozenset(self.other.created_tables())

    def with_statements(self, read: Iterable[VendorVersion]) -> VendorSchema:
        """This tree with the given versions (their statements read) in place of the same-named ones."""
        by_name = {item.name: item for item in read}
        return replace(self, versions=tuple(by_name.get(item.name, item) for item in self.versions))

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


def definitions_needed(version: str | None, target: VendorVersion, *, invalid_indexes: bool) -> bool:
    """Whether a plan compares the catalog's definitions: for versions pending after a recorded one (the repair
    tells how far the first got) and for invalid indexes (only the tree's own are dropped). Any other plan (a
    no-op, a fresh install, a refusal) needs only which objects exist."""
    if invalid_indexes:
        return True
    try:
        return version is not None and parse_version(version) < target.version
    except ValueError:
        return False


def statements_needed(
    vendor: VendorSchema, version: str | None, target: VendorVersion, *, invalid_indexes: bool
) -> list[VendorVersion]:
    """The versions whose statements a plan from a store at ``version`` reads, not read yet.

    None for a store at its target; the other store's first version alone for a store ahead of it (to tell the
    other store's database, see `VendorSchema.foreign_tables`). With versions pending, every version up to the
    target, and the other store's first version: the
    pending ones are what a repair, the privilege preflight and the impact report look at, and the earlier ones
    say what the first pending version's objects looked like before it (the repair compares definitions). Every
    version when ``version`` is missing or not one (the tables of the whole tree tell a Temporal database
    without its version row), or when the catalog has INVALID indexes (only the tree's own indexes are
    Temporal's to repair).
    """
    try:
        current = parse_version(version) if version is not None else None
    except ValueError:
        current = None
    if current is None or invalid_indexes:
        wanted = list(vendor.versions)
    elif current < target.version:
        wanted = [item for item in vendor.versions if item.version <= target.version]
    else:
        wanted = []
    unread = [item for item in wanted if item.read_statements is None]
    other = vendor.other.versions[0] if vendor.other is not None else None
    if other is not None and other.read_statements is None and (current is None or current != target.version):
        unread.append(other)  # recognising the other store's tables (see `VendorSchema.foreign_tables`)
    return unread
