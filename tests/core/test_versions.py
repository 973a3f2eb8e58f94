"""The project's version is written once (pyproject.toml); everything else reads it."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import yaml

import migrator

ROOT = Path(__file__).resolve().parents[2]


def pyproject_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def test_package_reads_the_installed_version() -> None:
    assert migrator.__version__ == version("temporal-migrator") == pyproject_version()


def test_chart_app_version_is_the_project_version() -> None:
    chart = yaml.safe_load((ROOT / "chart" / "Chart.yaml").read_text())
    assert chart["appVersion"] == pyproject_version()
