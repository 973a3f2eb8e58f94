"""The chart synced by ArgoCD's own sync engine (gitops-engine's sync package, driven by clustertests/argosync as
the application controller drives it) from the rendered chart, as an ArgoCD Application would: the PreSync Job
runs and completes before the Sync resources are applied, and a new revision that changes the run key re-runs the
hook (`BeforeHookCreation` replaces the previous Job) and converges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from clustertests.cluster import CHART, Cluster, Store
from clustertests.conftest import chart_values, store_secrets

JOB = "app-temporal-migrator"
RUN_RECORD = "app-temporal-migrator-run"


def render(cluster: Cluster, path: Path, namespace: str, values: dict[str, Any]) -> Path:
    """`helm template` of the chart: what ArgoCD's repo server would hand the engine."""
    values_file = path.with_suffix(".values.json")
    values_file.write_text(json.dumps(values))
    path.write_text(cluster.helm("template", "app", str(CHART), "-n", namespace, "-f", str(values_file)).stdout)
    return path


def rendered_run_key(manifests: Path) -> str:
    docs = [d for d in yaml.safe_load_all(manifests.read_text()) if d]
    [record] = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == RUN_RECORD]
    return str(record["data"]["runKey"])


def argo_sync(cluster: Cluster, namespace: str, manifests: Path, revision: str) -> dict[str, Any]:
    """One sync operation to its end; its phase and per-resource results."""
    proc = cluster.run(
        cluster.env["ARGOSYNC"],
        "--kubeconfig",
        cluster.env["KUBECONFIG"],
        "--namespace",
        namespace,
        "--app",
        "app",
        "--revision",
        revision,
        "--timeout",
        "8m",
        str(manifests),
        check=False,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    operation: dict[str, Any] = json.loads(proc.stdout)
    return operation


def by_kind(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["kind"]: r for r in operation["results"]}


def test_presync_hook_runs_before_sync_and_a_new_revision_reruns_it(
    cluster: Cluster, namespace: str, stores: dict[str, Store], tmp_path: Path
) -> None:
    applied = cluster.apply(namespace, *store_secrets(stores))
    assert applied.returncode == 0, applied.stderr
    values = chart_values(cluster, stores)
    first = render(cluster, tmp_path / "first.yaml", namespace, values)

    operation = argo_sync(cluster, namespace, first, "first")
    assert operation["phase"] == "Succeeded", operation
    results = by_kind(operation)
    hook, record_result = results["Job"], results["ConfigMap"]
    assert (hook.get("hookType"), hook["syncPhase"], hook.get("hookPhase")) == ("PreSync", "PreSync", "Succeeded"), hook
    assert (record_result["syncPhase"], record_result["status"]) == ("Sync", "Synced"), record_result
    assert hook["order"] < record_result["order"], operation
    job = cluster.get("job", JOB, "-n", namespace)
    assert job["status"].get("succeeded") == 1, job["status"]
    record = cluster.get("configmap", RUN_RECORD, "-n", namespace)
    # PreSync before Sync: the run record (a Sync resource) was created after the hook Job completed.
    assert job["status"]["completionTime"] <= record["metadata"]["creationTimestamp"], (job["status"], record)
    for store in stores.values():
        assert cluster.schema_version(store) == cluster.newest_version(store.schema)
    first_key = record["data"]["runKey"]
    assert first_key == rendered_run_key(first)

    # A new revision that changes the run key (ArgoCD sees the Application OutOfSync and syncs): the hook runs
    # again, in a new Job (BeforeHookCreation deleted the first one).
    values["hook"] = {"rerunToken": "second"}
    second = render(cluster, tmp_path / "second.yaml", namespace, values)
    operation = argo_sync(cluster, namespace, second, "second")
    assert operation["phase"] == "Succeeded", operation
    assert by_kind(operation)["Job"]["hookPhase"] == "Succeeded", operation
    rerun = cluster.get("job", JOB, "-n", namespace)
    assert rerun["metadata"]["uid"] != job["metadata"]["uid"], "the second sync did not re-run the hook"
    assert rerun["status"].get("succeeded") == 1, rerun["status"]
    pods = cluster.get("pods", "-n", namespace, "-l", "app.kubernetes.io/instance=app")["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]  # the first Job's pod went with it
    for status in (*pods[0]["status"]["initContainerStatuses"], *pods[0]["status"]["containerStatuses"]):
        summary = json.loads(status["state"]["terminated"]["message"])
        assert summary["result"] == "ok", summary
        assert not summary.get("steps"), summary  # converged: the second run had nothing to do
    record = cluster.get("configmap", RUN_RECORD, "-n", namespace)
    assert record["data"]["runKey"] == rendered_run_key(second) != first_key
