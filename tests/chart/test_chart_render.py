"""helm lint and helm template over several values files, with assertions on the rendered objects and
validation against the Kubernetes API schemas (kubernetes-validate, offline)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from .chart_helpers import (
    CHART,
    NAMESPACE,
    RELEASE,
    VALUES_DIR,
    Manifest,
    env_of,
    env_value,
    job,
    migrate_containers,
    one,
    pod_spec,
    render,
    render_text,
    run_helm,
)

VALUES_FILES = sorted(p.name for p in VALUES_DIR.glob("*.yaml"))
# Oldest supported (podFailurePolicy rules without onPodConditions need 1.29) and newest known.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
RUN_KEY = "temporal-migrator/run-key"
ARGO_HOOK = "argocd.argoproj.io/hook"
ARGO_DELETE = "argocd.argoproj.io/hook-delete-policy"
ARGO_WAVE = "argocd.argoproj.io/sync-wave"
HELM_HOOK = "helm.sh/hook"
HELM_DELETE = "helm.sh/hook-delete-policy"
HELM_WEIGHT = "helm.sh/hook-weight"


def run_key(*values: str, sets: tuple[str, ...] = ()) -> str:
    key: str = job(*values, sets=sets)["metadata"]["annotations"][RUN_KEY]
    return key


def test_values_files_exist() -> None:
    assert {"defaults.yaml", "argocd.yaml", "plain-helm.yaml", "scheduling.yaml", "tls.yaml"} <= set(VALUES_FILES)


def test_helm_lint_defaults() -> None:
    proc = run_helm("lint", "--strict", str(CHART))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("values", VALUES_FILES)
def test_helm_lint_with_values(values: str) -> None:
    proc = run_helm("lint", "--strict", str(CHART), "--values", str(VALUES_DIR / values))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("values", VALUES_FILES)
@pytest.mark.parametrize("kube", KUBERNETES_VERSIONS)
def test_rendered_objects_validate_against_kubernetes_schemas(values: str, kube: str) -> None:
    manifests = render(values)
    assert manifests
    for manifest in manifests:
        try:
            kubernetes_validate.validate(manifest, kube, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{values}: {manifest['kind']} {manifest['metadata']['name']} invalid for {kube}: {exc}")


def test_wait_snippet_validates_as_pod_spec() -> None:
    config_maps = [m for m in render("tls.yaml") if m["kind"] == "ConfigMap"]
    wait_cm = next(m for m in config_maps if m["metadata"]["name"].endswith("-wait-snippet"))
    init_containers: list[Manifest] = yaml.safe_load(wait_cm["data"]["initContainers.yaml"])
    volumes: list[Manifest] = yaml.safe_load(wait_cm["data"]["volumes.yaml"])
    assert [c["name"] for c in init_containers] == ["wait-default", "wait-visibility"]
    assert [c["args"] for c in init_containers] == [
        ["wait", "--schema", "temporal"],
        ["wait", "--schema", "visibility"],
    ]
    for container in init_containers:
        assert env_value(container, "MIGRATOR_WAIT_TIMEOUT") == "1800"
        assert "MIGRATOR_LOCK_TIMEOUT" not in env_of(container)
        assert "secretKeyRef" in env_of(container)["SQL_PASSWORD"]["valueFrom"]
    pod: Manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "temporal-frontend"},
        "spec": {
            "initContainers": init_containers,
            "containers": [{"name": "frontend", "image": "temporalio/server:1.29.1"}],
            "volumes": volumes,
        },
    }
    for kube in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(pod, kube, strict=True)


# --- hook behaviour ---------------------------------------------------------------------------------------------


def test_defaults_are_argocd_presync_and_helm_hooks() -> None:
    annotations = job("defaults.yaml")["metadata"]["annotations"]
    assert annotations[ARGO_HOOK] == "PreSync"
    assert annotations[ARGO_DELETE] == "BeforeHookCreation"
    assert annotations[ARGO_WAVE] == "0"
    assert annotations[HELM_HOOK] == "pre-install,pre-upgrade"
    assert annotations[HELM_DELETE] == "before-hook-creation"
    assert annotations[HELM_WEIGHT] == "0"
    assert len(annotations[RUN_KEY]) == 64


def test_argocd_mode_has_no_helm_hook() -> None:
    manifest = job("argocd.yaml")
    annotations = manifest["metadata"]["annotations"]
    assert annotations[ARGO_HOOK] == "PreSync"
    assert annotations[ARGO_DELETE] == "BeforeHookCreation"
    assert annotations[ARGO_WAVE] == "-5"
    assert not any(k.startswith("helm.sh/") for k in annotations)
    assert pod_spec(manifest)["imagePullSecrets"] == [{"name": "registry-pull"}]
    for container in migrate_containers(manifest):
        assert container["image"] == "registry.example.test/platform/temporal-migrator:0.1.0"


def test_plain_helm_mode_has_no_argocd_hook() -> None:
    annotations = job("plain-helm.yaml")["metadata"]["annotations"]
    assert annotations[HELM_HOOK] == "pre-install,pre-upgrade"
    assert annotations[HELM_WEIGHT] == "-10"
    assert ARGO_HOOK not in annotations
    assert ARGO_DELETE not in annotations


def test_plain_job_mode_has_no_hooks_and_a_run_key_name() -> None:
    manifest = job("plain-job.yaml")
    annotations = manifest["metadata"]["annotations"]
    assert not {ARGO_HOOK, ARGO_DELETE, HELM_HOOK, HELM_DELETE} & set(annotations)
    assert annotations[ARGO_WAVE] == "-1"
    assert manifest["metadata"]["name"] == f"{RELEASE}-temporal-migrator-{annotations[RUN_KEY][:8]}"
    assert manifest["spec"]["ttlSecondsAfterFinished"] == 86400
    assert "podFailurePolicy" not in manifest["spec"]
    assert "activeDeadlineSeconds" not in manifest["spec"]


def test_no_ttl_by_default() -> None:
    for values in ("defaults.yaml", "argocd.yaml", "plain-helm.yaml"):
        assert "ttlSecondsAfterFinished" not in job(values)["spec"]


def test_job_spec_defaults() -> None:
    manifest = job("defaults.yaml")
    spec = manifest["spec"]
    assert manifest["metadata"]["namespace"] == NAMESPACE
    assert spec["backoffLimit"] == 2
    assert spec["activeDeadlineSeconds"] == 9000
    assert pod_spec(manifest)["restartPolicy"] == "Never"
    fail_job = spec["podFailurePolicy"]["rules"][0]
    assert fail_job["action"] == "FailJob"
    assert fail_job["onExitCodes"] == {"operator": "In", "values": [2, 4, 6]}


# --- run key ----------------------------------------------------------------------------------------------------


def test_run_key_is_stable_and_shared_with_the_run_record() -> None:
    manifests = render("defaults.yaml")
    key = one(manifests, "Job")["metadata"]["annotations"][RUN_KEY]
    record = one(manifests, "ConfigMap")
    assert record["metadata"]["annotations"][RUN_KEY] == key
    assert record["data"]["runKey"] == key
    assert ARGO_HOOK not in record["metadata"]["annotations"]
    assert one(manifests, "Job")["spec"]["template"]["metadata"]["annotations"][RUN_KEY] == key
    assert render_text("defaults.yaml") == render_text("defaults.yaml", sets=("hook.rerunToken=",))
    assert key == run_key("defaults.yaml", sets=("resources.limits.memory=1Gi", "lockTimeout=900"))


@pytest.mark.parametrize(
    "change",
    [
        "stores.default.targetVersion=1.17",
        "stores.visibility.targetVersion=1.8",
        "image.tag=0.2.0",
        "image.repository=mirror.example.test/temporal-migrator",
        "image.digest=sha256:" + "a" * 64,
        "hook.rerunToken=2026-11-27-incident",
    ],
)
def test_run_key_changes_with_what_should_rerun_the_hook(change: str) -> None:
    before = render("argocd.yaml")
    after = render("argocd.yaml", sets=(change,))
    key_before = one(before, "Job")["metadata"]["annotations"][RUN_KEY]
    assert key_before != one(after, "Job")["metadata"]["annotations"][RUN_KEY]
    assert one(before, "ConfigMap")["data"] != one(after, "ConfigMap")["data"]


def test_run_key_changes_with_chart_version(tmp_path: Path) -> None:
    copy = tmp_path / "chart"
    shutil.copytree(CHART, copy)
    chart_yaml = copy / "Chart.yaml"
    meta: dict[str, Any] = yaml.safe_load(chart_yaml.read_text())
    meta["version"] = meta["version"] + "-next"
    chart_yaml.write_text(yaml.safe_dump(meta))
    proc = run_helm("template", RELEASE, str(copy), "--namespace", NAMESPACE, "--set", "image.tag=0.1.0")
    assert proc.returncode == 0, proc.stderr
    bumped = next(m for m in yaml.safe_load_all(proc.stdout) if m and m["kind"] == "Job")
    assert bumped["metadata"]["annotations"][RUN_KEY] != run_key("defaults.yaml", sets=("image.tag=0.1.0",))


# --- stores, order, credentials ---------------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUES_FILES)
def test_default_store_runs_first_then_visibility(values: str) -> None:
    manifest = job(values)
    spec = pod_spec(manifest)
    assert [c["name"] for c in spec["initContainers"]] == ["migrate-default"]
    assert [c["name"] for c in spec["containers"]] == ["migrate-visibility"]
    first, second = migrate_containers(manifest)
    assert first["args"] == ["migrate", "--schema", "temporal"]
    assert second["args"] == ["migrate", "--schema", "visibility"]
    assert env_value(first, "MIGRATOR_SCHEMA") == "temporal"
    assert env_value(second, "MIGRATOR_SCHEMA") == "visibility"
    assert env_value(first, "SQL_DATABASE") == "temporal"
    assert env_value(second, "SQL_DATABASE") == "temporal_visibility"


@pytest.mark.parametrize("values", VALUES_FILES)
def test_password_only_from_secrets(values: str) -> None:
    text = render_text(values)
    manifests = render(values)
    assert all(m["kind"] != "Secret" for m in manifests)
    containers = migrate_containers(one(manifests, "Job"))
    secrets = []
    for container in containers:
        password = env_of(container)["SQL_PASSWORD"]
        assert set(password) == {"name", "valueFrom"}, "SQL_PASSWORD must never carry a literal value"
        secrets.append(password["valueFrom"]["secretKeyRef"]["name"])
        for arg in container["args"]:
            assert not arg.startswith(("--password", "--pw")), "the password never goes on the command line"
    assert len(set(secrets)) == 2, "each store has its own Secret"
    assert "--password" not in text
    assert "--pw" not in text


def test_each_store_has_its_own_user_and_secret() -> None:
    first, second = migrate_containers(job("defaults.yaml"))
    assert env_value(first, "SQL_USER") == "temporal"
    assert env_value(second, "SQL_USER") == "temporal_visibility"
    assert env_of(first)["SQL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "temporal-db", "key": "password"}
    assert env_of(second)["SQL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "temporal-visibility-db",
        "key": "password",
    }


def test_username_from_the_same_secret_and_host_override() -> None:
    first, second = migrate_containers(job("plain-helm.yaml"))
    assert env_of(first)["SQL_USER"]["valueFrom"]["secretKeyRef"] == {"name": "temporal-app", "key": "username"}
    assert env_of(second)["SQL_USER"]["valueFrom"]["secretKeyRef"] == {
        "name": "temporal-visibility-app",
        "key": "username",
    }
    assert env_value(first, "SQL_HOST") == "postgres-rw"
    assert env_value(second, "SQL_HOST") == "visibility-rw"


def test_target_versions_and_timeouts_reach_the_containers() -> None:
    first, second = migrate_containers(job("argocd.yaml"))
    assert env_value(first, "MIGRATOR_TARGET_VERSION") == "1.18"
    assert env_value(second, "MIGRATOR_TARGET_VERSION") == "1.9"
    for container in (first, second):
        assert env_value(container, "MIGRATOR_LOCK_TIMEOUT") == "600"
        assert env_value(container, "MIGRATOR_CONNECT_TIMEOUT") == "120"
        assert env_value(container, "MIGRATOR_TOOL_TIMEOUT") == "3600"
        assert env_value(container, "MIGRATOR_DDL_LOCK_TIMEOUT") == "5"
        assert env_value(container, "MIGRATOR_DDL_RETRY_TIMEOUT") == "600"
        assert "MIGRATOR_MAX_REWRITE_SIZE" not in env_of(container)
        assert env_value(container, "MIGRATOR_SCHEMA_DIR") == "/etc/temporal/schema"
        assert env_value(container, "SQL_PORT") == "5432"
        assert env_value(container, "SQL_PLUGIN") == "postgres12"
        assert env_value(container, "SQL_TLS") == "false"
    for container in migrate_containers(job("defaults.yaml")):
        assert "MIGRATOR_TARGET_VERSION" not in env_of(container), "empty target means newest in the image"


# --- security and container hygiene -----------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUES_FILES)
def test_security_context(values: str) -> None:
    manifest = job(values)
    spec = pod_spec(manifest)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    tmp_volumes = [v["name"] for v in spec["volumes"] if "emptyDir" in v]
    for container in migrate_containers(manifest):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["runAsNonRoot"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        assert "add" not in context["capabilities"]
        assert context.get("privileged") in (None, False)
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts["/tmp"] in tmp_volumes, "a read-only root needs a writable /tmp"
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
        assert env_value(container, "MIGRATOR_LOG_FORMAT") == "json"


# --- scheduling and TLS -----------------------------------------------------------------------------------------


def test_scheduling_and_pod_metadata() -> None:
    manifest = job("scheduling.yaml")
    spec = pod_spec(manifest)
    values: dict[str, Any] = yaml.safe_load((VALUES_DIR / "scheduling.yaml").read_text())
    assert spec["nodeSelector"] == values["nodeSelector"]
    assert spec["tolerations"] == values["tolerations"]
    assert spec["affinity"] == values["affinity"]
    assert spec["serviceAccountName"] == "temporal-migrator"
    assert spec["priorityClassName"] == "system-cluster-critical"
    template_meta = manifest["spec"]["template"]["metadata"]
    assert template_meta["annotations"]["example.test/team"] == "platform"
    assert RUN_KEY in template_meta["annotations"]
    assert template_meta["labels"]["example.test/cost-center"] == "data"
    for container in migrate_containers(manifest):
        assert container["resources"] == values["resources"]
        assert env_value(container, "PGAPPNAME") == "temporal-migrator"
        assert env_value(container, "PGCONNECT_TIMEOUT") == "10"


def test_defaults_have_no_scheduling_constraints() -> None:
    spec = pod_spec(job("defaults.yaml"))
    assert not {"nodeSelector", "tolerations", "affinity", "serviceAccountName"} & set(spec)


def test_tls_on() -> None:
    manifest = job("tls.yaml")
    spec = pod_spec(manifest)
    tls_volume = next(v for v in spec["volumes"] if v["name"] == "tls")
    assert tls_volume["secret"]["secretName"] == "postgres-client-tls"
    for container in migrate_containers(manifest):
        assert env_value(container, "SQL_TLS") == "true"
        assert env_value(container, "SQL_TLS_CA_FILE") == "/etc/temporal-migrator/tls/ca.crt"
        assert env_value(container, "SQL_TLS_CERT_FILE") == "/etc/temporal-migrator/tls/tls.crt"
        assert env_value(container, "SQL_TLS_KEY_FILE") == "/etc/temporal-migrator/tls/tls.key"
        assert env_value(container, "SQL_TLS_SERVER_NAME") == "db.example.test"
        assert env_value(container, "SQL_TLS_DISABLE_HOST_VERIFICATION") == "false"
        assert env_value(container, "SQL_HOST") == "db.example.test"
        assert env_value(container, "SQL_PORT") == "6432"
        assert env_value(container, "SQL_PLUGIN") == "postgres12_pgx"
        assert env_value(container, "MIGRATOR_LOCK_TIMEOUT") == "1200"
        assert env_value(container, "MIGRATOR_CONNECT_TIMEOUT") == "300"
        mount = next(m for m in container["volumeMounts"] if m["name"] == "tls")
        assert mount == {"name": "tls", "mountPath": "/etc/temporal-migrator/tls", "readOnly": True}


def test_online_safety_values_reach_both_stores() -> None:
    sets = ("ddlLockTimeout=0", "ddlRetryTimeout=120", "maxRewriteSize=2GB")
    for container in migrate_containers(job("argocd.yaml", sets=sets)):
        assert env_value(container, "MIGRATOR_DDL_LOCK_TIMEOUT") == "0"
        assert env_value(container, "MIGRATOR_DDL_RETRY_TIMEOUT") == "120"
        assert env_value(container, "MIGRATOR_MAX_REWRITE_SIZE") == "2GB"


def test_rewrite_values_reach_both_stores_and_abort_only_when_asked() -> None:
    defaults = migrate_containers(job("argocd.yaml"))
    for container in defaults:
        assert env_value(container, "MIGRATOR_REWRITE_MODE") == "auto"
        assert env_value(container, "MIGRATOR_MAX_STALL") == "1"
        assert env_value(container, "MIGRATOR_ONLINE_ALLOW_ALL_TABLES_PUBLICATION") == "false"
        assert "MIGRATOR_ABORT_ONLINE" not in env_of(container)
    sets = ("rewriteMode=online", "maxStall=0.5", "onlineAllowAllTablesPublication=true", "abortOnline=true")
    for container in migrate_containers(job("argocd.yaml", sets=sets)):
        assert env_value(container, "MIGRATOR_REWRITE_MODE") == "online"
        assert env_value(container, "MIGRATOR_MAX_STALL") == "0.5"
        assert env_value(container, "MIGRATOR_ONLINE_ALLOW_ALL_TABLES_PUBLICATION") == "true"
        assert env_value(container, "MIGRATOR_ABORT_ONLINE") == "true"


def test_tls_absolute_paths_without_secret() -> None:
    sets = ("database.tls.enabled=true", "database.tls.caFile=/etc/ssl/certs/ca-certificates.crt")
    manifest = job("defaults.yaml", sets=sets)
    assert all(v["name"] != "tls" for v in pod_spec(manifest)["volumes"])
    for container in migrate_containers(manifest):
        assert env_value(container, "SQL_TLS_CA_FILE") == "/etc/ssl/certs/ca-certificates.crt"
        assert "SQL_TLS_CERT_FILE" not in env_of(container)
