"""`status` and `plan` through `main([...])` on the fake server: `plan` exits with the code `migrate` would exit
with before any DDL, after printing its document; `status` always exits 0. The expected code is read from the
README's exit-code table (the documented contract), not from the code under test."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from migrator.cli import commands
from migrator.cli import main as cli
from migrator.core.sizes import TableSize
from migrator.core.state import Access
from migrator.core.vendor import VendorSchema
from migrator.run.inspect import inspect
from tests.run.fakes import MAINTENANCE, FakeServer, statements_through

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
EXIT_ROWS = {int(code): text for code, text in re.findall(r"^\| (\d+) \| (.*) \|$", README, re.MULTILINE)}


def documented_code(phrase: str) -> int:
    """The exit code whose row of the README's table names ``phrase``."""
    [code] = [code for code, text in EXIT_ROWS.items() if phrase in text]
    return code


@pytest.fixture
def serve(cli_env: pytest.MonkeyPatch) -> Any:
    def use(server: FakeServer) -> FakeServer:
        cli_env.setattr(commands, "inspect", functools.partial(inspect, connect=server.connect))
        return server

    return use


def printed(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def behind(vendor: VendorSchema, **fields: Any) -> FakeServer:
    """A store recorded at 1.1 of the mini tree (1.2 and 1.10 pending), changed by ``fields``."""
    return FakeServer(vendor, set_up=True, **{"recorded": "1.1", "applied": statements_through("1.1"), **fields})


def test_plan_exits_as_migrate_would_when_the_guard_refuses(
    serve: Any, mini_vendor: VendorSchema, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(behind(mini_vendor, sizes={"accounts": TableSize(10_000, 5 * 1024**2)}))
    assert cli.main(["plan", "--max-rewrite-size", "1MB"]) == documented_code("larger than `--max-rewrite-size`")
    document = printed(capsys)  # the document is printed first, whole
    assert "larger than --max-rewrite-size 1 MB" in document["blocked"]
    assert [step["action"] for step in document["steps"]] == ["update-schema"]
    assert cli.main(["plan", "--max-rewrite-size", "100MB"]) == 0
    assert printed(capsys)["blocked"] is None


def test_status_exits_0_whatever_blocks_migrate(
    serve: Any, mini_vendor: VendorSchema, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(behind(mini_vendor, sizes={"accounts": TableSize(10_000, 5 * 1024**2)}))
    assert cli.main(["status", "--max-rewrite-size", "1MB"]) == 0
    document = printed(capsys)
    assert (document["state"], "blocked" in document, "steps" in document) == ("behind", False, False)
    assert [item["version"] for item in document["impact"]] == ["1.2", "1.10"]


def test_plan_exits_as_migrate_would_when_the_preflight_blocks(
    serve: Any, mini_vendor: VendorSchema, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(FakeServer(mini_vendor, access=Access(user="temporal", can_create_in_schema=False)))
    assert cli.main(["plan"]) == documented_code("no CREATE on schema `public`")
    assert 'GRANT CREATE ON SCHEMA "public" TO "temporal"' in printed(capsys)["blocked"]


def test_plan_exits_as_migrate_would_for_a_refused_state(
    serve: Any, mini_vendor: VendorSchema, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(behind(mini_vendor, recorded="one point one"))
    assert cli.main(["plan"]) == documented_code("a stored version that does not parse")
    document = printed(capsys)
    assert (document["state"], document["steps"]) == ("refused", [])
    assert "not a version" in document["refusal"]


def test_plan_of_an_absent_database_lists_its_creation_first(
    serve: Any, mini_vendor: VendorSchema, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(FakeServer(mini_vendor, exists=False))
    assert cli.main(["plan", "--create-database"]) == 0
    document = printed(capsys)
    assert document["state"] == "absent"
    assert document["steps"][0] == {"action": "create-database", "database": "temporal"}
    assert [step["action"] for step in document["steps"][1:]] == ["setup-schema", "update-schema"]
    assert server.named("create_database") == []  # plan changes nothing


def test_without_createdb_plan_exits_4_and_status_warns(
    serve: Any, mini_vendor: VendorSchema, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(FakeServer(mini_vendor, exists=False, may_create_databases=False))
    assert cli.main(["plan", "--create-database"]) == documented_code("missing database without CREATEDB")
    assert 'ALTER ROLE "temporal" CREATEDB' in printed(capsys)["blocked"]
    assert cli.main(["status", "--create-database"]) == 0
    [warning] = printed(capsys)["warnings"]
    assert 'ALTER ROLE "temporal" CREATEDB' in warning


def test_an_existing_database_is_observed_without_the_maintenance_database(
    serve: Any, mini_vendor: VendorSchema, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(behind(mini_vendor, postgres_refused=True))
    assert cli.main(["plan", "--create-database"]) == 0
    assert printed(capsys)["state"] == "behind"
    assert MAINTENANCE not in server.named("connect")


def test_a_database_created_between_the_two_looks_is_observed_itself(
    serve: Any, mini_vendor: VendorSchema, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(FakeServer(mini_vendor, exists=False))

    def created_meanwhile() -> None:
        server.exists = True

    server.on("connect", lambda: None, created_meanwhile)  # 3D000 on the target, then found in pg_database
    assert cli.main(["status", "--create-database"]) == 0
    assert printed(capsys)["state"] == "empty"
    assert server.named("connect") == ["temporal", MAINTENANCE, "temporal"]
