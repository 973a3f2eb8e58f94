"""The program's entry point loads the command line with the cyclic collector off and runs it with it on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# In a fresh interpreter: count the collections that start while `migrator.cli.main` is still loading (the module
# defines `main_exit` last), then run `--version` through ENTRY, and print the count, whether the collector is on
# once the command ran, and the exit code.
PROBE = """
import gc, sys
loading = []

def during_load(phase, info):
    module = sys.modules.get("migrator.cli.main")
    if phase == "start" and module is not None and not hasattr(module, "main_exit"):
        loading.append(info["generation"])

gc.callbacks.append(during_load)
sys.argv = ["temporal-migrator", "--version"]
try:
    ENTRY
except SystemExit as exit:
    code = exit.code
print(len(loading), gc.isenabled(), gc.get_freeze_count() > 0, code)
"""
ROOT = Path(__file__).parents[2]


def probe(entry: str) -> list[str]:
    script = PROBE.replace("ENTRY", entry)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.splitlines()[-1].split()  # after the version line


def test_the_console_script_loads_with_no_collection_and_runs_with_the_collector_on() -> None:
    assert probe("__import__('migrator.__main__').__main__.run()") == ["0", "True", "True", "0"]


def test_a_plain_import_collects_while_loading() -> None:
    """The control: the probe sees the collections a load without the entry point makes."""
    collections, *_ = probe("import migrator.cli.main; migrator.cli.main.main_exit()")
    assert int(collections) > 10
