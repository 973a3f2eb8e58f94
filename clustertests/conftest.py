"""Fixtures of the real-cluster tests: the cluster, a PodSecurity-`restricted` namespace and two fresh stores
per test, and the chart installed into it with the values a user gives."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clustertests.cluster import CHART, Cluster, Store


def _unavailable(reason: str) -> None:
    """With CI=true a missing cluster fails the run; elsewhere the tests skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the cluster is required)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    try:
        found = Cluster.load()
    except OSError as exc:
        _unavailable(f"no cluster ({exc}): run 'bash scripts/kube-test.sh'")
        raise
    probe = found.kubectl("get", "--raw", "/readyz", check=False)
    if probe.returncode != 0:
        _unavailable(f"the cluster does not answer: {probe.stderr.strip()}")
    return found


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace where PodSecurity enforces `restricted` (and warns, so helm prints any warning)."""
    # A DNS label: a test name cut at 40 characters may end in "_", which a label may not.
    short = request.node.name.removeprefix("test_")[:40].rstrip("_")
    name = f"t{secrets.token_hex(3)}-{short}".replace("_", "-").lower()
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}
    created = cluster.apply(
        "default", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    )
    assert created.returncode == 0, created.stderr
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def stores(cluster: Cluster) -> dict[str, Store]:
    """Each store in its own new database, owned by its own role (CloudNativePG style)."""
    suffix = secrets.token_hex(4)
    return {
        "default": cluster.new_store("temporal", f"temporal_{suffix}"),
        "visibility": cluster.new_store("visibility", f"visibility_{suffix}"),
    }


def store_secrets(stores: dict[str, Store], wrong: str = "") -> list[dict[str, Any]]:
    """One Secret per store; the store named ``wrong`` gets a password that is not its role's."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{key}-db"},
            "stringData": {"password": "not-the-password" if key == wrong else store.password},
        }
        for key, store in stores.items()
    ]


def chart_values(cluster: Cluster, stores: dict[str, Store], **overrides: Any) -> dict[str, Any]:
    """The chart's values for this cluster: the image loaded by scripts/kube.sh (never pulled), PostgreSQL at
    the namespace's address, the stores' secrets."""
    image, _, tag = cluster.env["KUBE_IMAGE"].rpartition(":")
    values: dict[str, Any] = {
        "image": {"repository": image, "tag": tag, "pullPolicy": "Never"},
        "database": {"host": cluster.node_ip, "port": cluster.pg_port},
        "stores": {
            key: {"database": store.database, "user": store.role, "existingSecret": f"{key}-db"}
            for key, store in stores.items()
        },
        "connectTimeout": 20,
    }
    for key, value in overrides.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return values


def helm_release(
    cluster: Cluster,
    namespace: str,
    values: dict[str, Any],
    tmp_path: Path,
    *,
    command: str = "install",
    timeout: str = "5m",
    check: bool = True,
) -> Any:
    """`helm install|upgrade` of the chart (its hook mode: the Job is a pre-install/pre-upgrade hook)."""
    values_file = tmp_path / f"values-{secrets.token_hex(3)}.json"
    values_file.write_text(json.dumps(values))
    return cluster.helm(
        command, "rel", str(CHART), "-n", namespace, "-f", str(values_file), "--timeout", timeout, check=check
    )
