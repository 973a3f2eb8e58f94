#!/usr/bin/env bash
# The chart in a real single-node Kubernetes: `scripts/kube.sh up`, the tests of clustertests/ inside the
# cluster's network namespace, then `scripts/kube.sh down` (always), which checks that nothing is left behind.
#   bash scripts/kube-test.sh [PYTEST ARGS...]      (as root; CI=true makes a cluster that cannot come up fail)
# Needs the image scripts/image-test.sh builds (localhost/temporal-migrator:test); run that first.
# Prints each stage's time: a cold build of the cluster's binaries takes 5 to 15 minutes on 2 cores, by what else
# runs (scripts/kube-build.sh); cached, the whole run about 2 minutes (20 s up, 10 s down).
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

cleanup() {
    local rc=$?
    bash scripts/kube.sh down || rc=1
    finish "$rc"
}

run_tests() {
    nsenter --net=/run/netns/temporal-migrator-kube "$PYTHON" -m pytest -p no:xdist -p no:cacheprovider \
        clustertests "$@"
}

stage "python virtualenv and locked deps" setup_python
trap cleanup EXIT
stage "cluster up (bash scripts/kube.sh up)" bash scripts/kube.sh up
stage "tests in the cluster (pytest clustertests)" run_tests "$@"
