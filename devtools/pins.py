"""Where the tests' inputs are: the pins, and the real tool and vendor tree of each release.

Databases and servers are in ``devtools/databases.py``; the integration suite's child processes and fixtures
in ``integration/support/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Literal

REPO_ROOT = Path(__file__).resolve().parent.parent
PINS_FILE = REPO_ROOT / "pins.env"
Store = Literal["temporal", "visibility"]
STORES: tuple[Store, ...] = ("temporal", "visibility")


# -- pins ---------------------------------------------------------------------------------------------


def read_pins(path: Path = PINS_FILE) -> dict[str, str]:
    """Parse ``pins.env`` (shell ``KEY=VALUE`` lines, ``#`` comments, optional quotes)."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: not KEY=VALUE: {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        pins[key.strip().removeprefix("export ").strip()] = value
    return pins


# -- where the real tool and the vendor tree are ---------------------------------------------------------


def cache_dir() -> Path:
    """``${XDG_CACHE_HOME:-$HOME/.cache}/temporal-migrator`` (same rule as scripts/build-tool.sh)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "temporal-migrator"


def default_tool_path(temporal_version: str) -> Path:
    return cache_dir() / f"temporal-{temporal_version}" / "bin" / "sql"


def _go_binary() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    fallback = Path("/usr/local/go/bin/go")
    return str(fallback) if fallback.is_file() else None


def gomodcache() -> Path | None:
    if os.environ.get("GOMODCACHE"):
        return Path(os.environ["GOMODCACHE"])
    go = _go_binary()
    if go is not None:
        proc = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=False, timeout=60)
        if proc.returncode == 0 and proc.stdout.strip():
            return Path(proc.stdout.strip())
    return None


def default_schema_dir(temporal_version: str) -> Path | None:
    modcache = gomodcache()
    if modcache is None:
        return None
    return modcache / "go.temporal.io" / f"server@{temporal_version}" / "schema"


# Which release: the pinned one (TEMPORAL_VERSION; overridable by TEMPORAL_SQL_TOOL and TEMPORAL_SCHEMA_DIR) or one
# of the older releases the upgrade tests start from (TEMPORAL_UPGRADE_FROM; always from the build cache). An older
# release's tree is installed by its own tool only when it is one of TEMPORAL_UPGRADE_OWN_TOOL; the others by the
# pinned tool, which installs their trees exactly as their own tools do (integration/tool_equivalence.py).


def upgrade_sources() -> list[str]:
    """The older releases pinned as upgrade sources (TEMPORAL_UPGRADE_FROM), oldest first."""
    return read_pins()["TEMPORAL_UPGRADE_FROM"].split()


def own_tool_sources() -> list[str]:
    """The upgrade sources whose own tool the suite builds and installs their tree with (TEMPORAL_UPGRADE_OWN_TOOL)."""
    own = read_pins()["TEMPORAL_UPGRADE_OWN_TOOL"].split()
    if unknown := sorted(set(own) - set(upgrade_sources())):
        raise ValueError(f"pins.env: TEMPORAL_UPGRADE_OWN_TOOL names {unknown}, not in TEMPORAL_UPGRADE_FROM")
    return own


def resolve_tool(release: str | None = None, *, own: bool = False) -> tuple[Path | None, str]:
    """``(path, how it was found)`` of the tool that installs ``release``'s tree (None: the pinned release): the
    release's own when it is one of TEMPORAL_UPGRADE_OWN_TOOL or ``own`` is set, else the pinned one. The path is
    None (with the reason) when the tool is missing."""
    if release is not None and not own and release not in own_tool_sources():
        release = None
    env = os.environ.get("TEMPORAL_SQL_TOOL") if release is None else None
    version = release or read_pins()["TEMPORAL_VERSION"]
    path = Path(env) if env else default_tool_path(version)
    origin = "TEMPORAL_SQL_TOOL" if env else "scripts/build-tool.sh cache"
    if path.is_file() and os.access(path, os.X_OK):
        return path, origin
    return None, f"temporal-sql-tool {version} not found at {path} ({origin}); run scripts/build-tool.sh {version}"


def resolve_schema_dir(release: str | None = None) -> tuple[Path | None, str]:
    """``(root of the vendor tree, how it was found)`` of ``release`` (None: the pinned one), as resolve_tool."""
    env = os.environ.get("TEMPORAL_SCHEMA_DIR") if release is None else None
    version = release or read_pins()["TEMPORAL_VERSION"]
    path = Path(env) if env else default_schema_dir(version)
    origin = "TEMPORAL_SCHEMA_DIR" if env else "GOMODCACHE"
    if path is not None and (path / "postgresql" / "v12").is_dir():
        return path, origin
    return None, f"Temporal {version} schema tree not found at {path} ({origin}); run scripts/build-tool.sh {version}"


def versioned_dir(schema_dir: Path, store: Store) -> Path:
    """``<schema_dir>/postgresql/v12/<store>/versioned`` (the directory ``update-schema -d`` takes)."""
    if store not in STORES:
        raise ValueError(f"store must be one of {STORES}, not {store!r}")
    return schema_dir / "postgresql" / "v12" / store / "versioned"
