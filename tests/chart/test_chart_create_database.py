"""`stores.<store>.createDatabase`: off by default, per store, only on the migrate containers, a boolean."""

from __future__ import annotations

import pytest
import yaml

from .chart_helpers import env_of, job, migrate_containers, one, render, render_error

FLAG = "MIGRATOR_CREATE_DATABASE"


def flags(*sets: str) -> dict[str, str | None]:
    containers = migrate_containers(job(sets=tuple(sets)))
    return {c["name"]: env_of(c).get(FLAG, {}).get("value") for c in containers}


def test_off_by_default() -> None:
    assert flags() == {"migrate-default": None, "migrate-visibility": None}


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        ("default", {"migrate-default": "true", "migrate-visibility": None}),
        ("visibility", {"migrate-default": None, "migrate-visibility": "true"}),
    ],
)
def test_per_store(store: str, expected: dict[str, str | None]) -> None:
    assert flags(f"stores.{store}.createDatabase=true") == expected


def test_the_wait_snippet_never_creates_a_database() -> None:
    sets = ("stores.default.createDatabase=true", "stores.visibility.createDatabase=true", "wait.configMap=true")
    config_maps = [m for m in render(sets=sets) if m["kind"] == "ConfigMap"]
    snippet = one([m for m in config_maps if m["metadata"]["name"].endswith("-wait-snippet")], "ConfigMap")
    containers = yaml.safe_load(snippet["data"]["initContainers.yaml"])
    assert [FLAG in env_of(c) for c in containers] == [False, False]


def test_a_value_that_is_not_a_boolean_is_refused() -> None:
    stderr = render_error(sets=("stores.default.createDatabase=maybe",))
    assert "at '/stores/default/createDatabase': got string, want boolean" in stderr
