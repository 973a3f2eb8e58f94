#!/usr/bin/env bash
# Makes ahead the images that the container stages of .ci/run build on, so that those stages find them in podman's
# store and layer cache: the fresh machine's Debian base with python3 (and so the plain base), the Testcontainers
# PostgreSQL image, and the Dockerfile's build stage (its apt-get and pip layers; scripts/image-test.sh's build
# then reuses them). Mostly downloads and unpacking: .ci/run runs it in the background during the test suite.
#   bash scripts/container-bases.sh      (as root, with podman, runc and debootstrap: setup_podman)
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=podman.sh
source "$REPO_ROOT/scripts/podman.sh"
cd "$REPO_ROOT"
trap finish EXIT

fresh_machine_base() { base_image "${FRESH_MACHINE_SUITE:-bookworm}" python3 >/dev/null; }
testcontainers_image() { postgres_image >/dev/null; }
dockerfile_build_stage() {
    podman_build --quiet --target build --build-arg DEBIAN_BASE="$(base_image bookworm)" . >/dev/null
}

stage "Debian ${FRESH_MACHINE_SUITE:-bookworm} base with python3 (fresh machine)" fresh_machine_base
stage "PostgreSQL $POSTGRES_MAJOR image (Testcontainers)" testcontainers_image
stage "the Dockerfile's build stage (image)" dockerfile_build_stage
