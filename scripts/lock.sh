#!/usr/bin/env bash
# Regenerate the hashed lock files in requirements/ from pyproject.toml (run after changing a dependency):
#   bash scripts/lock.sh [UV ARGS...]        e.g. --upgrade-package structlog
#   runtime.txt  what the image installs (the [project] dependencies)
#   test.txt     what scripts/test.sh and CI install (runtime + the test extra: pytest, ruff, mypy, ...)
#   build.txt    the build backend ([build-system] requires), installed so the package builds without fetching
#   bench.txt    the benchmark plot's matplotlib (requirements/bench.in), in its own virtualenv (scripts/bench.sh)
# Universal (every platform and Python >= requires-python), resolved for Python 3.11: Debian 12's python3, which
# the image ships and CI tests. Needs uv (pip install uv, into a virtualenv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
compile() { "$PYTHON" -m uv pip compile --quiet --universal --python-version 3.11 --generate-hashes "$@"; }
compile "$@" pyproject.toml -o requirements/runtime.txt
compile "$@" pyproject.toml --extra test -o requirements/test.txt
"$PYTHON" -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' |
    compile "$@" - -o requirements/build.txt
compile "$@" requirements/bench.in -o requirements/bench.txt
