"""Helpers for the chart tests: find helm, render the chart, pick objects out of the result.

helm is found through env HELM, else the binary scripts/build-helm.sh leaves in the cache, else `helm` on PATH.
In CI (CI=true) a missing helm fails the test; elsewhere it skips with a reason.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from devtools.ci import unavailable
from devtools.pins import cache_dir, read_pins

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "chart"
VALUES_DIR = Path(__file__).resolve().parent / "values"
RELEASE = "tm"
NAMESPACE = "temporal"

Manifest = dict[str, Any]


def cached_helm_path() -> Path:
    return cache_dir() / f"helm-{read_pins()['HELM_VERSION']}" / "bin" / "helm"


@functools.cache
def _find_helm() -> str | None:
    from_env = os.environ.get("HELM")
    if from_env:
        return from_env if os.access(from_env, os.X_OK) else None
    cached = cached_helm_path()
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    return shutil.which("helm")


def helm() -> str:
    found = _find_helm()
    if not found:
        unavailable("helm not found (or HELM is not executable): run scripts/build-helm.sh, or set HELM")
    return found


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(), *args], capture_output=True, text=True, check=False, timeout=120)


def _template_args(values: tuple[str, ...], sets: tuple[str, ...]) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for name in values:
        args += ["--values", str(VALUES_DIR / name)]
    for item in sets:
        args += ["--set", item]
    return args


@functools.cache
def _render(values: tuple[str, ...], sets: tuple[str, ...]) -> str:
    proc = run_helm(*_template_args(values, sets))
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    return proc.stdout


def render_text(*values: str, sets: tuple[str, ...] = ()) -> str:
    return _render(tuple(values), sets)


def render(*values: str, sets: tuple[str, ...] = ()) -> list[Manifest]:
    docs = yaml.safe_load_all(render_text(*values, sets=sets))
    return [d for d in docs if d]


def render_error(*values: str, sets: tuple[str, ...] = ()) -> str:
    """Render expecting failure; returns helm's stderr."""
    proc = run_helm(*_template_args(tuple(values), sets))
    assert proc.returncode != 0, f"helm template unexpectedly succeeded:\n{proc.stdout}"
    return proc.stderr


def one(manifests: list[Manifest], kind: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def job(*values: str, sets: tuple[str, ...] = ()) -> Manifest:
    return one(render(*values, sets=sets), "Job")


def pod_spec(job_manifest: Manifest) -> Manifest:
    spec: Manifest = job_manifest["spec"]["template"]["spec"]
    return spec


def migrate_containers(job_manifest: Manifest) -> list[Manifest]:
    """The store containers in the order they run: init containers, then containers."""
    spec = pod_spec(job_manifest)
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {e["name"]: e for e in container["env"]}


def env_value(container: Manifest, name: str) -> str:
    value: str = env_of(container)[name]["value"]
    return value
