"""values.schema.json and template guards reject bad input with a message; the chart README documents every
value; the chart agrees with the Dockerfile; NOTES.txt carries the wait snippet."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart_helpers import CHART, NAMESPACE, RELEASE, ROOT, render_error, run_helm


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        # A missing Secret name.
        ("stores.default.existingSecret=", "at '/stores/default/existingSecret': minLength"),
        ("stores.visibility.existingSecret=null", "at '/stores/visibility'"),
        ("stores.default.existingSecret=Not_A_Name", "does not match pattern"),
        ("stores.default.passwordKey=", "at '/stores/default/passwordKey'"),
        # An unknown plugin.
        ("database.plugin=mysql8", "at '/database/plugin': value must be one of 'postgres12', 'postgres12_pgx'"),
        # Non-numeric timeouts.
        ("lockTimeout=ten", "at '/lockTimeout': got string, want integer"),
        ("connectTimeout=2m", "at '/connectTimeout': got string, want integer"),
        ("toolTimeout=forever", "at '/toolTimeout': got string, want integer"),
        ("wait.timeout=soon", "at '/wait/timeout': got string, want integer"),
        ("lockTimeout=0", "at '/lockTimeout': minimum"),
        ("ddlLockTimeout=-1", "at '/ddlLockTimeout': minimum"),
        ("ddlRetryTimeout=later", "at '/ddlRetryTimeout': got string, want integer"),
        ("maxRewriteSize=2 GiB", "at '/maxRewriteSize'"),
        ("rewriteMode=fast", "at '/rewriteMode'"),
        ("maxStall=-1", "at '/maxStall': minimum"),
        ("maxStall=soon", "at '/maxStall'"),
        ("abortOnline=yes please", "at '/abortOnline'"),
        # Malformed target versions.
        ("stores.default.targetVersion=1.x", "at '/stores/default/targetVersion'"),
        ("stores.default.targetVersion=v1.18", "at '/stores/default/targetVersion'"),
        ("stores.visibility.targetVersion=1.9.0", "at '/stores/visibility/targetVersion'"),
        ("stores.visibility.targetVersion=1", "at '/stores/visibility/targetVersion'"),
        # No way to put a password into values.
        ("stores.default.password=hunter2", "additional properties 'password' not allowed"),
        ("password=hunter2", "additional properties 'password' not allowed"),
        ("extraEnv[0].name=SQL_PASSWORD,extraEnv[0].value=hunter2", "at '/extraEnv/0'"),
        # Other knobs.
        ("database.port=five", "at '/database/port'"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy'"),
        ("hook.argocd.hook=PreSink", "at '/hook/argocd/hook'"),
        ("logLevel=verbose", "at '/logLevel'"),
    ],
)
def test_bad_values_fail_with_the_schema_message(setting: str, message: str) -> None:
    stderr = render_error(sets=(setting,))
    assert "values don't meet the specifications of the schema" in stderr
    assert message in stderr
    assert "hunter2" not in stderr or "password" in setting


def test_unquoted_target_version_in_a_values_file_is_refused(tmp_path: Path) -> None:
    """YAML reads 1.10 as the float 1.1: the schema wants a string, so the mistake cannot pass silently."""
    values = tmp_path / "values.yaml"
    values.write_text("stores:\n  default:\n    targetVersion: 1.10\n")
    proc = run_helm("template", RELEASE, str(CHART), "--values", str(values))
    assert proc.returncode != 0
    assert "at '/stores/default/targetVersion': got number, want string" in proc.stderr


def test_relative_tls_file_without_secret_fails_with_a_message() -> None:
    stderr = render_error(sets=("database.tls.enabled=true", "database.tls.caFile=ca.crt"))
    expected = "database.tls.caFile must be an absolute path, or a file name inside database.tls.existingSecret"
    assert expected in stderr


def test_default_values_validate() -> None:
    proc = run_helm("template", RELEASE, str(CHART))
    assert proc.returncode == 0, proc.stderr


# --- documentation ----------------------------------------------------------------------------------------------


def leaf_paths(node: Any, prefix: str = "") -> list[str]:
    """Dotted paths of values.yaml; maps that are empty or whose content is free-form count as leaves."""
    if isinstance(node, dict) and node and prefix not in FREE_FORM:
        paths: list[str] = []
        for key, value in node.items():
            paths += leaf_paths(value, f"{prefix}.{key}" if prefix else str(key))
        return paths
    return [prefix]


FREE_FORM = {"podSecurityContext", "securityContext", "resources"}


def test_chart_readme_documents_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, flags=re.MULTILINE))
    missing = [p for p in leaf_paths(values) if p not in documented]
    assert not missing, f"chart/README.md does not document: {missing}"
    unknown = sorted(documented - set(leaf_paths(values)))
    assert not unknown, f"chart/README.md documents values that do not exist: {unknown}"


# --- consistency with the image ---------------------------------------------------------------------------------


def test_chart_agrees_with_dockerfile() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"COPY --from=admin-tools {values['schemaDir']} {values['schemaDir']}" in dockerfile
    user = re.findall(r"^USER (\d+):(\d+)$", dockerfile, flags=re.MULTILINE)
    assert user == [(str(values["podSecurityContext"]["runAsUser"]), str(values["podSecurityContext"]["runAsGroup"]))]


# --- NOTES.txt --------------------------------------------------------------------------------------------------


def test_notes_show_the_order_and_the_wait_snippet(tmp_path: Path) -> None:
    """helm template does not render NOTES.txt; render it through a ConfigMap in a copy of the chart."""
    copy = tmp_path / "chart"
    shutil.copytree(CHART, copy)
    (copy / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
        '  notes: {{ include "temporal-migrator/templates/NOTES.txt" . | toJson }}\n'
    )
    show = ("--show-only", "templates/zz-notes.yaml")
    proc = run_helm("template", RELEASE, str(copy), "--namespace", NAMESPACE, *show)
    assert proc.returncode == 0, proc.stderr
    notes: str = yaml.safe_load(proc.stdout)["data"]["notes"]
    assert "ArgoCD: PreSync, delete policy BeforeHookCreation" in notes
    assert notes.index("1. default store    temporal") < notes.index("2. visibility store temporal_visibility")
    snippet_start = notes.index("server.additionalInitContainers):\n") + len("server.additionalInitContainers):\n")
    snippet_end = notes.index("and this volume")
    containers: list[dict[str, Any]] = yaml.safe_load(notes[snippet_start:snippet_end])
    assert [c["args"][0] for c in containers] == ["wait", "wait"]
    assert f"logs job/{RELEASE}-temporal-migrator -c migrate-default" in notes
