"""The README's ArgoCD values render into the hook the README says they make: a PreSync Job, both stores from their
Secrets, the role name read from the Secret, the pinned target, and the tolerations on the pod."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from .chart_helpers import ROOT, Manifest, env_of, migrate_containers, one, pod_spec, render

FIRST_LINE = "# chart values for the temporal-migrator Application"


def readme_values() -> str:
    readme = (ROOT / "README.md").read_text()
    blocks: list[str] = re.findall(r"^```yaml\n(.*?)^```$", readme, flags=re.M | re.S)
    [block] = [b for b in blocks if b.startswith(FIRST_LINE)]
    return block


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    values: Path = tmp_path_factory.mktemp("readme") / "values.yaml"
    values.write_text(readme_values())
    return render(str(values))


def test_the_readme_values_render_valid_objects(rendered: list[Manifest]) -> None:
    for manifest in rendered:
        kubernetes_validate.validate(manifest, kubernetes_validate.latest_version(), strict=True)


def test_they_make_an_argocd_presync_hook(rendered: list[Manifest]) -> None:
    annotations = one(rendered, "Job")["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "PreSync"
    assert annotations["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    assert one(rendered, "ConfigMap")  # the run record that makes ArgoCD re-run the hook


def test_each_store_reads_its_secret(rendered: list[Manifest]) -> None:
    values = yaml.safe_load(readme_values())
    job = one(rendered, "Job")
    for container in migrate_containers(job):
        store = values["stores"]["default" if container["name"] == "migrate-default" else "visibility"]
        env = env_of(container)
        assert env["SQL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == store["existingSecret"]
        assert env["SQL_USER"]["valueFrom"]["secretKeyRef"] == {"name": store["existingSecret"], "key": "username"}
        target = [e.get("value") for e in container["env"] if e["name"] == "MIGRATOR_TARGET_VERSION"]
        assert target == ([store["targetVersion"]] if "targetVersion" in store else [])
    assert pod_spec(job)["tolerations"] == values["tolerations"]
