"""`--create-database` without a server: the exit-4 message quotes identifiers, the switch parses strictly."""

from __future__ import annotations

import pytest

from migrator.cli.options import build_settings
from migrator.core.planner import createdb_problem
from migrator.errors import UsageError


def test_refusal_quotes_identifiers_as_the_server_wants_them() -> None:
    message = createdb_problem('Temporal "dev"', "App-Role")
    assert 'CREATE DATABASE "Temporal ""dev""" OWNER "App-Role"' in message
    assert 'ALTER ROLE "App-Role" CREATEDB' in message
    assert "\n" not in message


@pytest.mark.parametrize(("env", "expected"), [({}, False), ({"MIGRATOR_CREATE_DATABASE": "true"}, True)])
def test_off_by_default(env: dict[str, str], expected: bool) -> None:
    settings = build_settings("migrate", {}, {"SQL_USER": "temporal", **env})
    assert settings.create_database is expected


def test_a_value_that_is_not_a_boolean_is_refused() -> None:
    with pytest.raises(UsageError, match="--create-database/MIGRATOR_CREATE_DATABASE 'sometimes' is not a boolean"):
        build_settings("migrate", {}, {"SQL_USER": "temporal", "MIGRATOR_CREATE_DATABASE": "sometimes"})
