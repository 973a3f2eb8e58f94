"""How far a crashed attempt got: every prefix of the mini store's versions is found from the catalog alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from packaging.version import Version

from migrator.core.repair import Expectations, applied_prefix, expectations
from migrator.core.state import Catalog, ColumnInfo, IndexInfo
from migrator.core.statements import Kind
from migrator.core.vendor import VendorSchema

ROW = "meta(partition_id, version) (54321, 1)"
BY_NAME = IndexInfo(True, "CREATE INDEX accounts_by_name ON public.accounts USING btree (name)")
BY_NAME_ENCODING = IndexInfo(True, "CREATE INDEX accounts_by_name ON public.accounts USING btree (name, encoding)")


@dataclass
class Work:
    """A mutable catalog that the mini store's statements are replayed on by hand, as PostgreSQL prints it."""

    tables: set[str] = field(default_factory=set)
    columns: dict[str, ColumnInfo] = field(default_factory=dict)
    indexes: dict[str, IndexInfo] = field(default_factory=dict)
    rows: dict[str, bool] = field(default_factory=lambda: {ROW: False})

    def create(self, table: str, **columns: ColumnInfo) -> None:
        self.tables.add(table)
        self.columns.update({f"{table}.{name}": info for name, info in columns.items()})

    def drop(self, table: str) -> None:
        self.tables.discard(table)
        for name in [name for name in self.columns if name.startswith(f"{table}.")]:
            del self.columns[name]


INT = ColumnInfo("integer", True)

# What each statement of MINI_STORE does to the catalog, written independently of migrator.core.statements.
REPLAY: dict[str, list[Callable[[Work], object]]] = {
    "1.0": [
        lambda work: work.create("accounts", id=INT, name=ColumnInfo("character varying(16)", True)),
        lambda work: work.create("meta", partition_id=INT, version=ColumnInfo("bigint", True)),
        lambda work: work.rows.update({ROW: True}),
        lambda work: work.create("old_tasks", id=INT),
        lambda work: work.indexes.update({"accounts_by_name": BY_NAME}),
    ],
    "1.1": [
        lambda work: work.columns.update({"accounts.name": ColumnInfo("character varying(255)", True)}),
        lambda work: work.drop("old_tasks"),
        lambda work: work.columns.update({"accounts.encoding": ColumnInfo("character varying(16)", False)}),
    ],
    "1.2": [
        lambda work: work.indexes.pop("accounts_by_name"),
        lambda work: work.columns.pop("accounts.encoding"),
        lambda work: work.columns.update(
            {"accounts.encoding": ColumnInfo("character varying(16)", True, "''::character varying")}
        ),
        lambda work: work.indexes.update({"accounts_by_name": BY_NAME_ENCODING}),
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


def invalid(index: IndexInfo | str) -> IndexInfo:
    """The index left INVALID by a failed build."""
    return IndexInfo(False, index if isinstance(index, str) else index.definition)


def catalog_of(expected: Expectations) -> Catalog:
    """A catalog holding ``expected``, every definition printed as the normalised text itself (which normalises to
    itself) where it is known."""
    present = {ref: item.attributes for ref, item in expected.items() if item.present}
    columns = {
        ref.name: ColumnInfo(
            attributes.get("type", "unknown"),
            attributes.get("not_null") == "true",
            (attributes.get("default") or "").removeprefix("stored ") or None,
            (attributes.get("default") or "").startswith("stored "),
        )
        for ref, attributes in present.items()
        if ref.kind is Kind.COLUMN
    }
    return Catalog(
        tables=frozenset(ref.name for ref in present if ref.kind is Kind.TABLE),
        columns=columns,
        indexes={
            ref.name: IndexInfo(True, attributes.get("definition", f"CREATE INDEX {ref.name} ON unknown (x)"))
            for ref, attributes in present.items()
            if ref.kind is Kind.INDEX
        },
        extensions=frozenset(ref.name for ref in present if ref.kind is Kind.EXTENSION),
        functions={
            ref.name: frozenset({attributes.get("body", "")})
            for ref, attributes in present.items()
            if ref.kind is Kind.FUNCTION
        },
    )


def before(vendor: VendorSchema, version: str) -> Expectations:
    """What the versions before ``version`` leave (the planner passes the same)."""
    return expectations(s for item in vendor.versions if item.version < Version(version) for s in item.statements)


def prefix(vendor: VendorSchema, version: str, catalog: Catalog) -> int | None:
    statements = next(item for item in vendor.versions if item.name == version).statements
    return applied_prefix(statements, catalog, before(vendor, version)).applied


def test_every_prefix_of_the_base_version_is_found(mini_vendor: VendorSchema) -> None:
    for k in range(len(mini_vendor.versions[0].statements) + 1):
        assert prefix(mini_vendor, "1.0", catalog_after(mini_vendor, "1.0", k)) == k


def test_statements_that_re_run_harmlessly_are_rerun(mini_vendor: VendorSchema) -> None:
    # v1.1 starts with ALTER COLUMN TYPE, which decides nothing: with nothing else applied, run it again.
    assert [prefix(mini_vendor, "1.1", catalog_after(mini_vendor, "1.1", k)) for k in range(4)] == [0, 0, 2, 3]


def test_drop_and_readd_is_told_apart_by_the_definitions(mini_vendor: VendorSchema) -> None:
    # Before v1.2 and after all of it the same objects exist; only the column's NOT NULL/DEFAULT and the index's
    # keys tell "untouched" from "complete but unrecorded" (replaying a complete v1.2 would reset the column).
    for k in range(len(mini_vendor.versions[2].statements) + 1):
        assert prefix(mini_vendor, "1.2", catalog_after(mini_vendor, "1.2", k)) == k


def test_hand_changed_schema_is_refused_with_the_disagreeing_objects(mini_vendor: VendorSchema) -> None:
    version = mini_vendor.versions[2]
    catalog = catalog_after(mini_vendor, "1.2", 2)
    broken = Catalog(tables=catalog.tables, columns=catalog.columns, indexes={"accounts_by_name": BY_NAME})
    progress = applied_prefix(version.statements, broken, before(mini_vendor, "1.2"))
    assert progress.applied is None
    assert any("accounts.encoding" in str(mismatch) for mismatch in progress.mismatches)


def test_invalid_index_does_not_count_as_created(mini_vendor: VendorSchema) -> None:
    done = catalog_after(mini_vendor, "1.0", 5)
    invalid = Catalog(
        tables=done.tables,
        columns=done.columns,
        indexes={"accounts_by_name": IndexInfo(False, BY_NAME.definition)},
        rows=done.rows,
    )
    assert prefix(mini_vendor, "1.0", invalid) == 4
