"""chart/README.md's guide from Temporal's chart: its example values render, and they say what the Temporal
values next to them say (same Secrets, databases, roles, server, TLS and createDatabase), store by store."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from .chart_helpers import CHART, Manifest, env_of, env_value, migrate_containers, one, pod_spec, render

OURS = "# temporal-migrator values migrated from Temporal's chart"
STORE_OF_CONTAINER = {"migrate-default": "default", "migrate-visibility": "visibility"}


def yaml_blocks() -> list[str]:
    readme = (CHART / "README.md").read_text()
    guide = readme[readme.index("## Coming from Temporal's Helm chart") :]
    return re.findall(r"^```yaml\n(.*?)^```$", guide, flags=re.MULTILINE | re.DOTALL)


def temporal_datastores() -> dict[str, Any]:
    [theirs] = [block for block in yaml_blocks() if block.startswith("server:")]
    datastores: dict[str, Any] = yaml.safe_load(theirs)["server"]["config"]["persistence"]["datastores"]
    return datastores


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    [ours] = [block for block in yaml_blocks() if block.startswith(OURS)]
    values: Path = tmp_path_factory.mktemp("guide") / "values.yaml"
    values.write_text(ours)
    return render(str(values))


def test_the_guide_has_both_examples() -> None:
    assert sorted(temporal_datastores()) == ["default", "visibility"]


def test_the_example_renders_valid_objects(rendered: list[Manifest]) -> None:
    for manifest in rendered:
        kubernetes_validate.validate(manifest, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("container_name", sorted(STORE_OF_CONTAINER))
def test_each_store_says_what_temporals_datastore_says(rendered: list[Manifest], container_name: str) -> None:
    sql = temporal_datastores()[STORE_OF_CONTAINER[container_name]]["sql"]
    [container] = [c for c in migrate_containers(one(rendered, "Job")) if c["name"] == container_name]
    env = env_of(container)
    assert env["SQL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": sql["existingSecret"], "key": sql["secretKey"]}
    assert env_value(container, "SQL_DATABASE") == sql["databaseName"]
    assert env_value(container, "SQL_USER") == sql["user"]
    assert f"{env_value(container, 'SQL_HOST')}:{env_value(container, 'SQL_PORT')}" == sql["connectAddr"]
    assert env_value(container, "SQL_PLUGIN") == sql["pluginName"]
    assert (env_value(container, "MIGRATOR_CREATE_DATABASE") == "true") is sql["createDatabase"]
    assert env_value(container, "SQL_TLS") == str(sql["tls"]["enabled"]).lower()
    disable = env_value(container, "SQL_TLS_DISABLE_HOST_VERIFICATION")
    assert disable == str(not sql["tls"]["enableHostVerification"]).lower()
    assert Path(env_value(container, "SQL_TLS_CA_FILE")).name == Path(sql["tls"]["caFile"]).name


def test_the_certificates_come_from_the_same_secret(rendered: list[Manifest]) -> None:
    volumes = pod_spec(one(rendered, "Job"))["volumes"]
    assert {"temporal-db-ca"} == {v["secret"]["secretName"] for v in volumes if "secret" in v}
