"""The chart synced by ArgoCD's own sync engine (gitops-engine's agent, built by scripts/kube-build.sh) from a git
repository holding the rendered chart, as an ArgoCD Application would: the PreSync Job runs and completes before
the Sync resources are applied, and a new revision that changes the run key re-runs the hook
(`BeforeHookCreation` replaces the previous Job) and converges."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from clustertests.cluster import CHART, Cluster, Store, wait_until
from clustertests.conftest import chart_values, store_secrets

JOB = "app-temporal-migrator"
RUN_RECORD = "app-temporal-migrator-run"


def render_into(cluster: Cluster, repo: Path, namespace: str, values: dict[str, Any], message: str) -> None:
    """`helm template` of the chart committed to ``repo``: what ArgoCD's repo server would hand the engine."""
    values_file = repo.parent / "values.json"
    values_file.write_text(json.dumps(values))
    out = cluster.helm("template", "app", str(CHART), "-n", namespace, "-f", str(values_file)).stdout
    (repo / "manifests.yaml").write_text(out)
    for argv in (["add", "manifests.yaml"], ["commit", "-q", "-m", message]):
        subprocess.run(["git", "-C", str(repo), *argv], check=True, capture_output=True)


def rendered_run_key(repo: Path) -> str:
    """The run key of the run record in the repository's current revision."""
    docs = [d for d in yaml.safe_load_all((repo / "manifests.yaml").read_text()) if d]
    [record] = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == RUN_RECORD]
    return str(record["data"]["runKey"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def agent_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for key, value in (("user.name", "test"), ("user.email", "test@example.invalid")):
        subprocess.run(["git", "-C", str(repo), "config", key, value], check=True)
    return repo


@pytest.fixture
def agent(cluster: Cluster, agent_repo: Path, namespace: str, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """The agent, syncing ``agent_repo`` into ``namespace``; yields its API port and its log file."""
    if "GITOPS" not in cluster.env:
        pytest.fail("scripts/kube.sh did not build gitops-engine's agent (GITOPS missing from its env file)")
    port = free_port()
    log = tmp_path / "agent.log"
    yield port, log
    # Started lazily by start_agent (the repository needs a first commit); stopped here.
    pid_file = tmp_path / "agent.pid"
    if pid_file.exists():
        os.kill(int(pid_file.read_text()), 15)


def start_agent(cluster: Cluster, repo: Path, namespace: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    process = subprocess.Popen(
        [
            cluster.env["GITOPS"],
            str(repo),
            "--namespaced",
            "--default-namespace",
            namespace,
            "--resync-seconds",
            "3600",
            "--port",
            str(port),
            "--prune=true",
        ],
        env={**os.environ, "KUBECONFIG": cluster.env["KUBECONFIG"]},
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    (log.parent / "agent.pid").write_text(str(process.pid))
    return process


def synced_results(log: Path) -> int:
    """How many syncs the agent finished (it prints a RESOURCE/RESULT table after each)."""
    return log.read_text(errors="replace").count("RESOURCE  ") if log.exists() else 0


def test_presync_hook_runs_before_sync_and_a_new_revision_reruns_it(
    cluster: Cluster, namespace: str, stores: dict[str, Store], agent_repo: Path, agent: tuple[int, Path]
) -> None:
    port, log = agent
    applied = cluster.apply(namespace, *store_secrets(stores))
    assert applied.returncode == 0, applied.stderr
    values = chart_values(cluster, stores)
    render_into(cluster, agent_repo, namespace, values, "first revision")
    start_agent(cluster, agent_repo, namespace, port, log)

    wait_until("the first sync", lambda: synced_results(log) >= 1, timeout=400)
    job = cluster.get("job", JOB, "-n", namespace)
    assert job["status"].get("succeeded") == 1, (job["status"], log.read_text())
    record = cluster.get("configmap", RUN_RECORD, "-n", namespace)
    # PreSync before Sync: the run record (a Sync resource) was created after the hook Job completed.
    assert job["status"]["completionTime"] <= record["metadata"]["creationTimestamp"], (job["status"], record)
    for store in stores.values():
        assert cluster.schema_version(store) == cluster.newest_version(store.schema)
    first_key = record["data"]["runKey"]
    assert first_key == rendered_run_key(agent_repo)

    # A new revision that changes the run key: the hook runs again, in a new Job (BeforeHookCreation).
    values["hook"] = {"rerunToken": "second"}
    render_into(cluster, agent_repo, namespace, values, "second revision")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/sync", timeout=10) as answer:
        assert answer.status == 200
    wait_until("the second sync", lambda: synced_results(log) >= 2, timeout=400)
    rerun = cluster.get("job", JOB, "-n", namespace)
    assert rerun["metadata"]["uid"] != job["metadata"]["uid"], log.read_text()
    assert rerun["status"].get("succeeded") == 1, rerun["status"]
    pods = cluster.get("pods", "-n", namespace, "-l", "app.kubernetes.io/instance=app")["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]  # the first Job's pod went with it
    for status in (*pods[0]["status"]["initContainerStatuses"], *pods[0]["status"]["containerStatuses"]):
        summary = json.loads(status["state"]["terminated"]["message"])
        assert summary["result"] == "ok", summary
        assert not summary.get("steps"), summary  # converged: the second run had nothing to do
    record = cluster.get("configmap", RUN_RECORD, "-n", namespace)
    assert record["data"]["runKey"] == rendered_run_key(agent_repo) != first_key
