# Containers on this kind of machine, for scripts/fresh-machine-test.sh and scripts/image-test.sh. Source it
# after lib.sh; it defines functions and variables only.
#   setup_podman             apt-get install podman, runc and debootstrap when missing (needs root)
#   base_image SUITE [PKGS]  prints the name of a local Debian SUITE image (debootstrap --variant=minbase, the
#                            machine's CA certificates and the apt/dpkg settings of Debian's official images; with
#                            the comma-separated PKGS, that image plus them, installed by apt-get without
#                            recommends, so one debootstrap per suite serves every base); made once per version of
#                            this file, then reused
#   postgres_image           prints the name of the Testcontainers PostgreSQL image (containers/postgres on the
#                            plain bookworm base, Debian's POSTGRES_MAJOR), built unless podman's layers hold it
#   podman_run ARGS...       podman run with the runtime and limits this machine needs, on the host network
#   podman_build ARGS...     podman build, the same way
# Facts behind them: crun fails here ("cgroups in hybrid mode not supported") so the runtime is runc; rootful
# runc needs explicit rlimits ("setrlimit ... Operation not permitted" without them); no image registry is
# reachable, so bases are made locally; the package registries are reached through a proxy whose certificate
# only the machine's CA bundle holds.

CONTAINER_ULIMITS=(--ulimit nofile=1024:4096 --ulimit nproc=1024:4096)
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

setup_podman() {
    [[ "$(id -u)" == 0 ]] || die "containers here need root: run 'sudo bash $0'"
    local missing=() cmd
    for cmd in podman runc debootstrap; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]} (apt-get)"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >&2
    fi
    log "$(podman --version), $(runc --version | head -n 1)"
}

podman_run() {
    podman --runtime runc run "${CONTAINER_ULIMITS[@]}" --network host "$@"
}

# The machine's CA bundle, whole (trusted before Debian's ca-certificates is installed) and one certificate per
# file under /usr/local/share/ca-certificates (kept when ca-certificates later rebuilds the bundle).
_install_ca_bundle() {
    local root="$1" local_dir="$1/usr/local/share/ca-certificates/build-machine"
    mkdir -p "$root/etc/ssl/certs" "$local_dir"
    cp "$HOST_CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
    awk -v dir="$local_dir" '/BEGIN CERTIFICATE/ { n++ } n { print > (dir "/" n ".crt") }' "$HOST_CA_BUNDLE"
}

# What Debian's official slim images configure: apt keeps no package caches, dpkg installs no documentation,
# manual pages or translations (copyright files stay). Without it a local base grows each image by ~120 MB.
_slim_like_debian_images() {
    local root="$1" clean='rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true'
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<APT
DPkg::Post-Invoke { "$clean"; };
APT::Update::Post-Invoke { "$clean"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
    mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' \
        'path-include /usr/share/locale/locale.alias' >"$root/etc/dpkg/dpkg.cfg.d/docker"
}

base_image() {
    local suite="$1" include="${2:-}" name root started recipe plain context
    # The tag names this file's version, so a changed recipe makes new bases instead of reusing stale ones.
    recipe="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-8)"
    name="localhost/temporal-migrator-base/debian:$suite${include:+-${include//,/-}}-$recipe"
    if podman image exists "$name"; then
        log "reusing $name (podman rmi it to make it again)"
    elif [[ -n "$include" ]]; then
        plain="$(base_image "$suite")"
        started="$(now)"
        context="$(mktemp -d)"
        printf '%s\n' "FROM $plain" "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
--no-install-recommends ${include//,/ } >/dev/null && rm -rf /var/lib/apt/lists/*" >"$context/Containerfile"
        podman_build --quiet -t "$name" "$context" >/dev/null
        rm -rf "$context"
        log "made $name from $plain in $(elapsed "$started")"
    else
        started="$(now)"
        root="$(mktemp -d /var/tmp/debootstrap.XXXXXX)"
        debootstrap --variant=minbase "$suite" "$root" >/dev/null ||
            die "debootstrap $suite failed (log: $root/debootstrap/debootstrap.log)"
        _install_ca_bundle "$root"
        _slim_like_debian_images "$root"
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/*
        tar -C "$root" -c . | podman import --quiet --change 'CMD ["bash"]' - "$name" >/dev/null
        rm -rf "$root"
        log "made $name in $(elapsed "$started")"
    fi
    echo "$name"
}

podman_build() {
    podman --runtime runc build "${CONTAINER_ULIMITS[@]}" --network host "$@"
}

postgres_image() {
    local name="localhost/temporal-migrator-test/postgres:$POSTGRES_MAJOR"
    podman_build --quiet --build-arg DEBIAN_BASE="$(base_image bookworm)" --build-arg PG_MAJOR="$POSTGRES_MAJOR" \
        -t "$name" "$REPO_ROOT/containers/postgres" >/dev/null
    echo "$name"
}
