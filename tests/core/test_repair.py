"""How far a crashed attempt got: every prefix of the mini store's versions is found from the catalog alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from packaging.version import Version

from migrator.core.repair import applied_prefix
from migrator.core.state import Catalog, ColumnInfo
from migrator.core.vendor import VendorSchema

ROW = "meta(partition_id, version) (54321, 1)"


@dataclass
class Work:
    """A mutable catalog that the mini store's statements are replayed on by hand."""

    tables: set[str] = field(default_factory=set)
    columns: dict[str, ColumnInfo] = field(default_factory=dict)
    indexes: dict[str, bool] = field(default_factory=dict)
    rows: dict[str, bool] = field(default_factory=lambda: {ROW: False})


def _create_accounts(work: Work) -> None:
    work.tables.add("accounts")
    work.columns.update({"accounts.id": ColumnInfo(True, False), "accounts.name": ColumnInfo(True, False)})


# What each statement of MINI_STORE does to the catalog, written independently of migrator.statements.
REPLAY: dict[str, list[Callable[[Work], object]]] = {
    "1.0": [
        _create_accounts,
        lambda work: work.tables.add("meta"),
        lambda work: work.rows.update({ROW: True}),
        lambda work: work.tables.add("old_tasks"),
        lambda work: work.indexes.update({"accounts_by_name": True}),
    ],
    "1.1": [
        lambda work: None,
        lambda work: work.tables.discard("old_tasks"),
        lambda work: work.columns.update({"accounts.encoding": ColumnInfo(False, False)}),
    ],
    "1.2": [
        lambda work: work.indexes.pop("accounts_by_name"),
        lambda work: work.columns.pop("accounts.encoding"),
        lambda work: work.columns.update({"accounts.encoding": ColumnInfo(True, True)}),
        lambda work: work.indexes.update({"accounts_by_name": True}),
    ],
}


def catalog_after(vendor: VendorSchema, version: str, k: int) -> Catalog:
    """The catalog after the versions before ``version`` and the first k statements of it."""
    work = Work()
    for name, replay in REPLAY.items():
        for mutation in replay[: k if name == version else len(replay)]:
            mutation(work)
        if name == version:
            break
    assert vendor.find(Version(version)) is not None
    return Catalog(tables=frozenset(work.tables), columns=work.columns, indexes=work.indexes, rows=work.rows)


def test_every_prefix_of_the_base_version_is_found(mini_vendor: VendorSchema) -> None:
    version = mini_vendor.versions[0]
    for k in range(len(version.statements) + 1):
        assert applied_prefix(version.statements, catalog_after(mini_vendor, "1.0", k)).applied == k


def test_statements_without_effects_are_rerun(mini_vendor: VendorSchema) -> None:
    # v1.1 starts with ALTER COLUMN TYPE, which leaves no trace: with nothing else applied, run it again.
    version = mini_vendor.versions[1]
    assert applied_prefix(version.statements, catalog_after(mini_vendor, "1.1", 0)).applied == 0
    assert applied_prefix(version.statements, catalog_after(mini_vendor, "1.1", 1)).applied == 0
    assert applied_prefix(version.statements, catalog_after(mini_vendor, "1.1", 2)).applied == 2
    assert applied_prefix(version.statements, catalog_after(mini_vendor, "1.1", 3)).applied == 3


def test_drop_and_readd_is_told_apart_by_the_column_shape(mini_vendor: VendorSchema) -> None:
    # Before v1.2 and after all of it the same objects exist; only NOT NULL/DEFAULT tell "untouched" from
    # "complete but unrecorded" — replaying a complete v1.2 would reset every value of the column.
    version = mini_vendor.versions[2]
    for k in range(len(version.statements) + 1):
        assert applied_prefix(version.statements, catalog_after(mini_vendor, "1.2", k)).applied == k


def test_hand_changed_schema_is_refused_with_the_disagreeing_objects(mini_vendor: VendorSchema) -> None:
    version = mini_vendor.versions[2]
    catalog = catalog_after(mini_vendor, "1.2", 2)
    broken = Catalog(tables=catalog.tables, columns=catalog.columns, indexes={"accounts_by_name": True})
    progress = applied_prefix(version.statements, broken)
    assert progress.applied is None
    assert any("accounts.encoding" in str(mismatch) for mismatch in progress.mismatches)


def test_invalid_index_does_not_count_as_created(mini_vendor: VendorSchema) -> None:
    version = mini_vendor.versions[0]
    done = catalog_after(mini_vendor, "1.0", 5)
    invalid = Catalog(tables=done.tables, columns=done.columns, indexes={"accounts_by_name": False}, rows=done.rows)
    assert applied_prefix(version.statements, invalid).applied == 4
