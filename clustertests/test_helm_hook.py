"""The chart's Job as a Helm hook in a real cluster: order, re-run, the image, failure, a killed pod, the wait
snippet and PodSecurity `restricted` (scripts/kube.sh starts the cluster; scripts/kube-test.sh runs these)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from clustertests.cluster import CHART, Cluster, Store, holding_lock, wait_until
from clustertests.conftest import chart_values, helm_release, store_secrets

JOB = "rel-temporal-migrator"
POD_SELECTOR = "app.kubernetes.io/instance=rel,app.kubernetes.io/name=temporal-migrator"


def job_pods(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = cluster.get("pods", "-n", namespace, "-l", POD_SELECTOR)["items"]
    return sorted(pods, key=lambda pod: str(pod["metadata"]["creationTimestamp"]))


def terminated(status: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = status["state"].get("terminated") or {}
    return state


def summary_of(status: dict[str, Any]) -> dict[str, Any]:
    """The migrator's summary, which it writes to the container's termination message."""
    summary: dict[str, Any] = json.loads(terminated(status)["message"])
    return summary


def install(cluster: Cluster, namespace: str, stores: dict[str, Store], tmp_path: Path, **overrides: Any) -> Any:
    applied = cluster.apply(namespace, *store_secrets(stores))
    assert applied.returncode == 0, applied.stderr
    return helm_release(cluster, namespace, chart_values(cluster, stores, **overrides), tmp_path)


def test_install_migrates_both_stores_in_order_then_upgrade_reruns_as_noop(
    cluster: Cluster, namespace: str, stores: dict[str, Store], tmp_path: Path
) -> None:
    install(cluster, namespace, stores, tmp_path)

    job = cluster.get("job", JOB, "-n", namespace)
    assert job["status"].get("succeeded") == 1, job["status"]
    [pod] = job_pods(cluster, namespace)
    [first] = pod["status"]["initContainerStatuses"]
    [second] = pod["status"]["containerStatuses"]
    assert (first["name"], second["name"]) == ("migrate-default", "migrate-visibility")
    assert terminated(first)["exitCode"] == 0
    assert terminated(second)["exitCode"] == 0
    # In order: the visibility store's container started only after the default store's finished.
    assert terminated(first)["finishedAt"] <= terminated(second)["startedAt"]
    for status in (first, second):
        assert summary_of(status)["result"] == "ok"
        # The image scripts/image-test.sh built, loaded by scripts/kube.sh, is the one that ran.
        assert status["image"].endswith(cluster.env["KUBE_IMAGE"]), status["image"]
        assert cluster.env["KUBE_IMAGE_ID"] in status["imageID"], (status["imageID"], cluster.env["KUBE_IMAGE_ID"])
    for key, store in stores.items():
        assert cluster.schema_version(store) == cluster.newest_version(store.schema), key

    # Rows the next run must leave alone.
    with cluster.admin(stores["default"].database) as conn:
        conn.execute(
            "INSERT INTO namespaces (partition_id, id, name, notification_version, data, data_encoding,"
            " is_global) VALUES (54321, '\\x01', 'kept', 1, '\\x02', 'Proto3', false)"
        )
    first_uid = job["metadata"]["uid"]
    helm_release(cluster, namespace, chart_values(cluster, stores), tmp_path, command="upgrade")

    rerun = cluster.get("job", JOB, "-n", namespace)
    assert rerun["metadata"]["uid"] != first_uid, "helm upgrade did not re-run the hook (same Job)"
    assert rerun["status"].get("succeeded") == 1, rerun["status"]
    [pod] = job_pods(cluster, namespace)  # before-hook-creation deleted the first Job and its pod
    for status in (*pod["status"]["initContainerStatuses"], *pod["status"]["containerStatuses"]):
        summary = summary_of(status)
        assert summary["result"] == "ok", summary
        assert not summary.get("steps"), summary
    for store in stores.values():
        assert cluster.schema_version(store) == cluster.newest_version(store.schema)
    with cluster.admin(stores["default"].database) as conn:
        assert conn.execute("SELECT name FROM namespaces WHERE partition_id = 54321").fetchall() == [("kept",)]


def test_wrong_password_fails_the_job_at_once_with_the_summary(
    cluster: Cluster, namespace: str, stores: dict[str, Store], tmp_path: Path
) -> None:
    applied = cluster.apply(namespace, *store_secrets(stores, wrong="default"))
    assert applied.returncode == 0, applied.stderr
    failed = helm_release(cluster, namespace, chart_values(cluster, stores), tmp_path, timeout="4m", check=False)
    assert failed.returncode != 0, failed.stdout

    job = cluster.get("job", JOB, "-n", namespace)
    conditions = {c["type"]: c for c in job["status"].get("conditions", [])}
    assert conditions["Failed"]["status"] == "True", conditions
    assert conditions["Failed"]["reason"] == "PodFailurePolicy", conditions
    # No retry storm: one pod, despite backoffLimit 2.
    [pod] = job_pods(cluster, namespace)
    [first] = pod["status"]["initContainerStatuses"]
    assert terminated(first)["exitCode"] == 4
    summary = summary_of(first)
    assert summary["result"] == "failed", summary
    assert summary["exit_code"] == 4, summary
    assert "password" in summary["error"], summary
    assert "not-the-password" not in json.dumps(pod), summary
    assert cluster.schema_version(stores["default"]) is None


def waiting_on_a_lock(cluster: Cluster, store: Store) -> bool:
    """A session of ``store``'s database waits for a lock (the migrator's DDL behind a held lock)."""
    with cluster.admin(store.database) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            (store.database,),
        ).fetchone()
    return bool(row and row[0])


def test_pod_deleted_mid_migration_is_replaced_and_the_next_attempt_converges(
    cluster: Cluster, namespace: str, stores: dict[str, Store], tmp_path: Path
) -> None:
    older = "1.9"
    values = chart_values(cluster, stores)
    values["stores"]["visibility"]["targetVersion"] = older
    applied = cluster.apply(namespace, *store_secrets(stores))
    assert applied.returncode == 0, applied.stderr
    helm_release(cluster, namespace, values, tmp_path)
    visibility = stores["visibility"]
    assert cluster.schema_version(visibility) == older
    # Rows in the table the next versions alter.
    with cluster.admin(visibility.database) as conn:
        conn.execute(
            "INSERT INTO executions_visibility (namespace_id, run_id, start_time, execution_time, workflow_id,"
            " workflow_type_name, status, encoding, history_length, task_queue) SELECT 'ns', 'run-' || i, now(),"
            " now(), 'wf-' || i, 'type', 1, 'Proto3', 0, 'q' FROM generate_series(1, 1000) AS i"
        )

    values["stores"]["visibility"]["targetVersion"] = ""
    values_file = tmp_path / "values-upgrade.json"
    values_file.write_text(json.dumps(values))
    with holding_lock(cluster, visibility, "executions_visibility"):
        upgrade = subprocess.Popen(
            [
                cluster.env["HELM"],
                "upgrade",
                "rel",
                str(CHART),
                "-n",
                namespace,
                "-f",
                str(values_file),
                "--timeout",
                "10m",
            ],
            env={**os.environ, "KUBECONFIG": cluster.env["KUBECONFIG"]},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        try:
            wait_until(
                "the migrator's DDL waiting on the held lock",
                lambda: waiting_on_a_lock(cluster, visibility),
                timeout=240,
            )
            [victim] = job_pods(cluster, namespace)
            cluster.kubectl("delete", "pod", "-n", namespace, victim["metadata"]["name"], "--wait=false")
            wait_until(
                "a replacement pod",
                lambda: [p for p in job_pods(cluster, namespace) if p["metadata"]["uid"] != victim["metadata"]["uid"]],
                timeout=120,
            )
        except BaseException:
            upgrade.kill()
            raise
    output, _ = upgrade.communicate(timeout=600)
    assert upgrade.returncode == 0, output
    job = cluster.get("job", JOB, "-n", namespace)
    assert job["status"].get("succeeded") == 1, job["status"]
    # The replacement did the migration the deleted pod had started.
    [replacement] = job_pods(cluster, namespace)
    assert replacement["metadata"]["uid"] != victim["metadata"]["uid"]
    [visibility_status] = replacement["status"]["containerStatuses"]
    summary = summary_of(visibility_status)
    assert summary["result"] == "ok", summary
    assert summary["steps"], summary
    assert cluster.schema_version(visibility) == cluster.newest_version("visibility")
    with cluster.admin(visibility.database) as conn:
        assert conn.execute("SELECT count(*) FROM executions_visibility").fetchone() == (1000,)


def rendered(cluster: Cluster, namespace: str, values: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    values_file = tmp_path / "values-template.json"
    values_file.write_text(json.dumps(values))
    out = cluster.helm(
        "template", "rel", str(CHART), "-n", namespace, "-f", str(values_file), "--set", "wait.configMap=true"
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_wait_snippet_holds_a_deployment_until_the_schema_is_at_target(
    cluster: Cluster, namespace: str, stores: dict[str, Store], tmp_path: Path
) -> None:
    values = chart_values(cluster, stores)
    [snippet] = [
        d
        for d in rendered(cluster, namespace, values, tmp_path)
        if d["kind"] == "ConfigMap" and "initContainers.yaml" in d["data"]
    ]
    image = f"{values['image']['repository']}:{values['image']['tag']}"
    app = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "temporal"},
        "spec": {
            "selector": {"matchLabels": {"app": "temporal"}},
            "template": {
                "metadata": {"labels": {"app": "temporal"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "initContainers": yaml.safe_load(snippet["data"]["initContainers.yaml"]),
                    "containers": [
                        {
                            "name": "server",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "command": ["sleep", "infinity"],
                            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                        }
                    ],
                    "volumes": yaml.safe_load(snippet["data"]["volumes.yaml"]),
                },
            },
        },
    }
    applied = cluster.apply(namespace, *store_secrets(stores), app)
    assert applied.returncode == 0, applied.stderr

    def app_pod() -> dict[str, Any] | None:
        pods = cluster.get("pods", "-n", namespace, "-l", "app=temporal")["items"]
        return pods[0] if pods else None

    def waiting_in_init() -> bool:
        pod = app_pod()
        statuses = (pod or {}).get("status", {}).get("initContainerStatuses", [])
        return any("running" in s["state"] for s in statuses)

    wait_until("the wait init container running", waiting_in_init, timeout=180)
    time.sleep(20)  # held while the schema is not at target: still initialising well after it started
    pod = app_pod()
    assert pod is not None, pod and pod["status"]
    assert pod["status"]["phase"] == "Pending", pod and pod["status"]
    assert not any(s.get("ready") for s in pod["status"].get("containerStatuses", []))

    helm_release(cluster, namespace, values, tmp_path)
    wait_until(
        "the deployment's pod Ready after the migration",
        lambda: any(s.get("ready") for s in ((app_pod() or {}).get("status", {}).get("containerStatuses", []))),
        timeout=240,
    )


def pod_of(template_owner: dict[str, Any], name: str) -> dict[str, Any]:
    template = template_owner["spec"]["template"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": template["spec"]}


def test_rendered_pods_pass_podsecurity_restricted_on_a_pod_dry_run(
    cluster: Cluster, namespace: str, stores: dict[str, Store], tmp_path: Path
) -> None:
    docs = rendered(cluster, namespace, chart_values(cluster, stores), tmp_path)
    [job] = [d for d in docs if d["kind"] == "Job"]
    [snippet] = [d for d in docs if d["kind"] == "ConfigMap" and "initContainers.yaml" in d["data"]]
    migrate = pod_of(job, "migrate")
    wait = pod_of(job, "wait")
    wait["spec"]["initContainers"] = yaml.safe_load(snippet["data"]["initContainers.yaml"])
    wait["spec"]["volumes"] = yaml.safe_load(snippet["data"]["volumes.yaml"])
    for pod in (migrate, wait):
        result = cluster.apply(namespace, pod, dry_run=True)
        assert result.returncode == 0, result.stderr
        assert "Warning" not in result.stderr, result.stderr
    # The control: the same pod without its security context is refused, so enforcement is on.
    loose = json.loads(json.dumps(migrate))
    loose["spec"].pop("securityContext")
    for container in loose["spec"]["containers"]:
        container.pop("securityContext")
    refused = cluster.apply(namespace, loose, dry_run=True)
    assert refused.returncode != 0, refused.stderr
    assert 'violates PodSecurity "restricted' in refused.stderr, refused.stderr
