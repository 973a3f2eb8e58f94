#!/usr/bin/env bash
# A throwaway single-node Kubernetes, and the PostgreSQL its pods reach, all inside a network namespace this
# script creates; for the real-cluster tests (clustertests/, stage `kube` of .ci/run).
#   bash scripts/kube.sh up      build (cached), start, load the images; prints each stage's time and the
#                                environment lines (KUBECONFIG=..., KUBE_NETNS=..., ...) the tests read from
#                                $KUBE_STATE_DIR/env
#   bash scripts/kube.sh down    stop everything and remove it: processes, mounts, namespaces, interfaces,
#                                cgroups, state; then checks that nothing is left (exit 1 naming what is)
#   bash scripts/kube.sh exec CMD...   run CMD in the cluster's namespaces (kubectl, helm, psql ...)
# As root. Needs Debian's runc and containernetworking-plugins, podman, openssl, Go; the images are the
# migrator's (scripts/image-test.sh builds localhost/temporal-migrator:test) and a pause image built here.
#
# Where things run, and why:
#   - network: namespace $KUBE_NETNS (`ip netns add`) with loopback and a veth interface at $KUBE_NODE_IP. The
#     API server, the kubelet (--advertise-address and --node-ip must not be loopback), containerd, the pod
#     bridge and PostgreSQL all live there: test traffic never reaches the host's own interfaces.
#   - mounts and processes: every daemon runs in one private mount namespace and one PID namespace held by a
#     small init, with fresh tmpfs on /run, /var/log and /var/lib. Container rootfs, volume and netns mounts and
#     the paths the components use whatever their flags say never reach the host, and killing the init kills
#     every process of the cluster, containers included, whatever state it is in.
#   - cgroups: cgroupfs driver (this host has v1 controllers), kubelet `cgroupsPerQOS: false`; the containers'
#     cgroups sit under one parent, $KUBE_CGROUP, removed on `down`.
# Facts of this machine behind the settings: runc needs `restrict_oom_score_adj` (root lacks CAP_SYS_RESOURCE:
# "can't get final child's PID from pipe" otherwise); no image registry is reachable, so the pause image is
# built here and images are loaded with `podman save | ctr images import`; no kube-proxy nor DNS, so pods reach
# PostgreSQL at $KUBE_NODE_IP.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=kube-build.sh
source "$REPO_ROOT/scripts/kube-build.sh"

KUBE_STATE_DIR="${KUBE_STATE_DIR:-/var/tmp/temporal-migrator-kube}"
KUBE_NETNS=temporal-migrator-kube
KUBE_LINK=tmkube0
KUBE_BRIDGE=tmkubebr0
KUBE_NODE_IP=10.213.0.1
KUBE_POD_CIDR=10.214.0.0/24
KUBE_SERVICE_CIDR=10.215.0.0/24
KUBE_NODE=temporal-migrator-kube
KUBE_CGROUP=temporal-migrator-kube
PAUSE_IMAGE=localhost/temporal-migrator-kube/pause:1
MIGRATOR_IMAGE="${MIGRATOR_IMAGE:-localhost/temporal-migrator:test}"
S="$KUBE_STATE_DIR"

# in_ns CMD...: CMD in the cluster's network, mount and PID namespaces.
in_ns() {
    nsenter -t "$(cat "$S/init.pid")" --net --mount --pid --wd="$REPO_ROOT" -- "$@"
}

# daemon NAME CMD...: start CMD in the namespaces, logging to $S/log/NAME.log.
daemon() {
    local name="$1"
    shift
    in_ns "$@" >"$S/log/$name.log" 2>&1 &
    echo "$!" >"$S/$name.nsenter.pid"
}

# wait_for WHAT SECONDS CMD...: retry CMD until it succeeds.
wait_for() {
    local what="$1" seconds="$2" started
    shift 2
    started="$(now)"
    until "$@" >/dev/null 2>&1; do
        if awk -v a="$started" -v b="$(now)" -v s="$seconds" 'BEGIN { exit !(b - a > s) }'; then
            log "$what: not ready after ${seconds}s; last log lines:"
            tail -n 30 "$S"/log/*.log >&2 || true
            return 1
        fi
        sleep 0.5
    done
}

# The PID namespace's init: the child `unshare --fork` made.
init_pid() {
    local pid
    pid="$(cat "/proc/$(cat "$S/unshare.pid")/task/"*/children 2>/dev/null | awk '{ print $1 }')"
    [[ -n "$pid" ]] && echo "$pid" >"$S/init.pid"
}

build() {
    setup_go
    kube_build
    log "binaries: $(du -sch "$KUBE_BIN" "$ETCD_BIN" "$CONTAINERD_BIN" "$ARGOSYNC_BIN" | tail -n 1 | cut -f1)"
}

namespaces() {
    [[ "$(id -u)" == 0 ]] || die "the cluster needs root"
    [[ ! -e "$S" ]] || die "$S exists: run 'bash scripts/kube.sh down' first"
    command -v runc >/dev/null && [[ -x /usr/lib/cni/bridge ]] ||
        die "needs Debian's runc and containernetworking-plugins: apt-get install -y runc containernetworking-plugins"
    mkdir -p "$S/log" "$S/pki" "$S/cni/net.d"
    # `ip netns add` makes /run/netns a mount point (a bind of itself) the first time: `down` undoes that too.
    [[ -d /run/netns ]] || touch "$S/netns-dir.ours"
    mountpoint -q /run/netns || touch "$S/netns-mount.ours"
    ip netns add "$KUBE_NETNS"
    ip -n "$KUBE_NETNS" link set lo up
    # A veth pair with both ends inside: this kernel has no `dummy` module.
    ip -n "$KUBE_NETNS" link add "$KUBE_LINK" type veth peer name "${KUBE_LINK}p"
    ip -n "$KUBE_NETNS" link set "${KUBE_LINK}p" up
    ip -n "$KUBE_NETNS" addr add "$KUBE_NODE_IP/24" dev "$KUBE_LINK"
    ip -n "$KUBE_NETNS" link set "$KUBE_LINK" up
    # The pods' cgroup parent (kubelet `cgroupRoot`), in every hierarchy: the kubelet checks that it exists.
    local hierarchy
    for hierarchy in /sys/fs/cgroup/*/; do mkdir -p "$hierarchy$KUBE_CGROUP"; done
    # The init reaps the orphans (daemonised shims) and is the PID namespace's pid 1: killing it kills the rest.
    nsenter --net="/run/netns/$KUBE_NETNS" unshare --pid --fork --mount --propagation private --mount-proc \
        bash -c 'while :; do sleep 3600 & wait; done' </dev/null >/dev/null 2>&1 &
    echo "$!" >"$S/unshare.pid"
    wait_for "namespace init" 10 init_pid
    # Paths the components use whatever their flags say (runc's and containerd's /run, the kubelet's
    # /var/log/pods, libcni's /var/lib/cni): private and empty in the mount namespace, gone with it.
    local dir
    for dir in /run /var/log /var/lib; do in_ns mount -t tmpfs -o mode=755 tmpfs "$dir"; done
    log "netns $KUBE_NETNS ($KUBE_LINK $KUBE_NODE_IP), init pid $(cat "$S/init.pid")"
}

# A CA, the API server's serving certificate, one client certificate (system:masters) for every component and
# the tests, and the service-account key pair. Throwaway, like the cluster.
pki() {
    local p="$S/pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=temporal-migrator-kube-ca \
        -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout "$p/apiserver.key" \
        -out "$p/apiserver.csr" 2>/dev/null
    printf 'subjectAltName=IP:%s,IP:127.0.0.1,IP:%s,DNS:kubernetes,DNS:kubernetes.default,DNS:localhost\n' \
        "$KUBE_NODE_IP" "${KUBE_SERVICE_CIDR%.0/24}.1" >"$p/san.ext"
    openssl x509 -req -in "$p/apiserver.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -days 2 \
        -extfile "$p/san.ext" -out "$p/apiserver.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=admin" -keyout "$p/admin.key" \
        -out "$p/admin.csr" 2>/dev/null
    openssl x509 -req -in "$p/admin.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -days 2 \
        -out "$p/admin.crt" 2>/dev/null
    openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
    openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
    cat >"$S/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kube
  cluster: {server: "https://$KUBE_NODE_IP:6443", certificate-authority: "$p/ca.crt"}
users:
- name: admin
  user: {client-certificate: "$p/admin.crt", client-key: "$p/admin.key"}
contexts:
- name: kube
  context: {cluster: kube, user: admin, namespace: default}
current-context: kube
EOF
}

etcd_start() {
    daemon etcd "$ETCD_BIN/etcd" --data-dir "$S/etcd" --unsafe-no-fsync \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster default=http://127.0.0.1:2380
    wait_for etcd 60 in_ns curl -sf http://127.0.0.1:2379/health
}

apiserver_start() {
    local p="$S/pki"
    daemon kube-apiserver "$KUBE_BIN/kube-apiserver" --etcd-servers http://127.0.0.1:2379 \
        --advertise-address "$KUBE_NODE_IP" --secure-port 6443 --service-cluster-ip-range "$KUBE_SERVICE_CIDR" \
        --client-ca-file "$p/ca.crt" --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
        --kubelet-client-certificate "$p/admin.crt" --kubelet-client-key "$p/admin.key" \
        --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
        --service-account-issuer https://kubernetes.default.svc --authorization-mode RBAC
    wait_for kube-apiserver 180 in_ns "$KUBE_BIN/kubectl" --kubeconfig "$S/kubeconfig" get --raw /readyz
}

controllers_start() {
    local p="$S/pki"
    daemon kube-controller-manager "$KUBE_BIN/kube-controller-manager" --kubeconfig "$S/kubeconfig" \
        --authentication-kubeconfig "$S/kubeconfig" --authorization-kubeconfig "$S/kubeconfig" \
        --bind-address 127.0.0.1 --leader-elect=false --service-account-private-key-file "$p/sa.key" \
        --root-ca-file "$p/ca.crt" --cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key" \
        --use-service-account-credentials=false
    daemon kube-scheduler "$KUBE_BIN/kube-scheduler" --kubeconfig "$S/kubeconfig" \
        --authentication-kubeconfig "$S/kubeconfig" --authorization-kubeconfig "$S/kubeconfig" \
        --bind-address 127.0.0.1 --leader-elect=false
    # The service-account controller makes `default` in every namespace; pods cannot be created before.
    wait_for "default service account" 120 in_ns "$KUBE_BIN/kubectl" --kubeconfig "$S/kubeconfig" \
        get serviceaccount default
}

containerd_start() {
    local c="$S/containerd"
    mkdir -p "$c"
    cat >"$S/cni/net.d/10-pods.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "pods", "plugins": [
  {"type": "bridge", "bridge": "$KUBE_BRIDGE", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$KUBE_POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "loopback"}]}
EOF
    cat >"$c/config.toml" <<EOF
version = 3
root = "$c/root"
state = "$c/state"
[grpc]
  address = "$c/containerd.sock"
[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$S/cni/net.d"
[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "$PAUSE_IMAGE"
EOF
    daemon containerd env PATH="$CONTAINERD_BIN:$PATH" "$CONTAINERD_BIN/containerd" --config "$c/config.toml"
    wait_for containerd 60 in_ns "$CONTAINERD_BIN/ctr" --address "$c/containerd.sock" version
}

ctr_() { in_ns "$CONTAINERD_BIN/ctr" --address "$S/containerd/containerd.sock" -n k8s.io "$@"; }

# A pause image from scratch: a static Go program that waits for a signal and reaps orphans.
pause_image() {
    local dir="$GO_CACHE_ROOT/kube-pause" tmp
    if [[ ! -x "$dir/pause" ]]; then
        tmp="$(mktemp -d)"
        cat >"$tmp/main.go" <<'EOF'
// The pod sandbox's process: holds the pod's namespaces, reaps orphans, exits on SIGINT or SIGTERM.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
EOF
        printf 'module pause\n\ngo 1.21\n' >"$tmp/go.mod"
        (cd "$tmp" && go build -ldflags "-s -w" -o pause .)
        mkdir -p "$dir"
        printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$tmp/Containerfile"
        mv "$tmp/pause" "$tmp/Containerfile" "$dir/"
        rm -rf "$tmp"
    fi
    podman image exists "$PAUSE_IMAGE" || podman build --quiet -t "$PAUSE_IMAGE" "$dir" >/dev/null
}

load_images() {
    local image
    podman image exists "$MIGRATOR_IMAGE" ||
        die "no image $MIGRATOR_IMAGE: build it with 'bash scripts/image-test.sh' (as root)"
    for image in "$PAUSE_IMAGE" "$MIGRATOR_IMAGE"; do
        podman save "$image" | ctr_ images import - >/dev/null
        log "loaded $image ($(podman image inspect --format '{{.Id}}' "$image" | cut -c1-12))"
    done
}

kubelet_start() {
    cat >"$S/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
cgroupRoot: /$KUBE_CGROUP
enforceNodeAllocatable: []
address: $KUBE_NODE_IP
readOnlyPort: 0
failSwapOn: false
resolvConf: ""
localStorageCapacityIsolation: false
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%"}
containerRuntimeEndpoint: unix://$S/containerd/containerd.sock
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$S/pki/ca.crt"}
authorization: {mode: AlwaysAllow}
EOF
    daemon kubelet "$KUBE_BIN/kubelet" --kubeconfig "$S/kubeconfig" --config "$S/kubelet.yaml" \
        --root-dir "$S/kubelet" --cert-dir "$S/kubelet/pki" --node-ip "$KUBE_NODE_IP" \
        --hostname-override "$KUBE_NODE"
    wait_for "node Ready" 180 in_ns "$KUBE_BIN/kubectl" --kubeconfig "$S/kubeconfig" wait --timeout 5s \
        --for condition=Ready "node/$KUBE_NODE"
}

postgres_start() {
    setup_python
    in_ns "$PYTHON" -m devtools.pgcluster start --dir "$S/postgres" --listen "$KUBE_NODE_IP" \
        --allow "$KUBE_POD_CIDR" >"$S/postgres.env"
    chmod 600 "$S/postgres.env"
    log "PostgreSQL on $KUBE_NODE_IP:$(sed -n 's/^PGCLUSTER_PORT=//p' "$S/postgres.env") (pods of $KUBE_POD_CIDR)"
}

write_env() {
    local helm
    helm="$(bash "$REPO_ROOT/scripts/build-helm.sh" | tail -n 1)"
    # The tree the image was built from (scripts/image-test.sh copies it): the tests' target versions.
    setup_tool
    cat >"$S/env" <<EOF
KUBE_STATE_DIR=$S
KUBECONFIG=$S/kubeconfig
KUBECTL=$KUBE_BIN/kubectl
HELM=$helm
KUBE_NODE_IP=$KUBE_NODE_IP
KUBE_IMAGE=$MIGRATOR_IMAGE
KUBE_IMAGE_ID=$(podman image inspect --format '{{.Id}}' "$MIGRATOR_IMAGE")
ARGOSYNC=$ARGOSYNC_BIN/argosync
TEMPORAL_SCHEMA_DIR=$TEMPORAL_SCHEMA_DIR
EOF
    cat "$S/env"
}

up() {
    stage "build (cached: kube $KUBE_VERSION, etcd $ETCD_VERSION, containerd $CONTAINERD_VERSION, gitops-engine $GITOPS_ENGINE_VERSION)" build
    stage "pause image" pause_image
    stage "network, mount and PID namespaces" namespaces
    stage "certificates" pki
    stage "etcd" etcd_start
    stage "kube-apiserver" apiserver_start
    stage "controller-manager, scheduler" controllers_start
    stage "containerd" containerd_start
    stage "images (podman save | ctr import)" load_images
    stage "kubelet, node Ready" kubelet_start
    stage "PostgreSQL in the namespace" postgres_start
    stage "environment for the tests" write_env
}

# Everything `up` made, whatever state it is in; each step tolerates its part being gone already.
teardown() {
    local pid cg
    if [[ -s "$S/postgres.env" ]]; then
        setup_python
        in_ns "$PYTHON" -m devtools.pgcluster stop --dir "$S/postgres" || log "could not stop PostgreSQL cleanly"
    fi
    # Killing the PID namespace's init kills every process in it: daemons, shims, containers.
    if [[ -s "$S/init.pid" ]] && kill -0 "$(cat "$S/init.pid")" 2>/dev/null; then
        kill -KILL "$(cat "$S/init.pid")"
    fi
    for pid in "$S"/*.pid; do
        [[ -s "$pid" ]] || continue
        while kill -0 "$(cat "$pid")" 2>/dev/null; do sleep 0.2; done
    done
    for cg in /sys/fs/cgroup/*/"$KUBE_CGROUP"; do
        [[ -d "$cg" ]] || continue
        find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || find "$cg" -depth -type d -exec rmdir {} \;
    done
    ip netns del "$KUBE_NETNS" 2>/dev/null || true
    if [[ -e "$S/netns-mount.ours" ]] && [[ -z "$(ls -A /run/netns)" ]] && mountpoint -q /run/netns; then
        umount /run/netns
    fi
    [[ ! -e "$S/netns-dir.ours" ]] || rmdir /run/netns 2>/dev/null || true
    rm -rf "$S"
}

# What would betray a leftover: a process of ours, a mount, the namespace, a cgroup, the state directory.
leftovers() {
    local found=() pid
    for pid in /proc/[0-9]*; do
        if [[ "$(readlink "$pid/ns/net" 2>/dev/null)" == "$NETNS_INODE" && -n "$NETNS_INODE" ]]; then
            found+=("process ${pid#/proc/} ($(cat "$pid/comm" 2>/dev/null))")
        fi
    done
    grep -q "$S\|$KUBE_NETNS" /proc/mounts && found+=("mounts: $(grep -c "$S\|$KUBE_NETNS" /proc/mounts)")
    [[ -e "/run/netns/$KUBE_NETNS" ]] && found+=("netns $KUBE_NETNS")
    [[ -n "$NETNS_MOUNT_OURS" ]] && mountpoint -q /run/netns && found+=("the /run/netns mount 'up' made")
    compgen -G "/sys/fs/cgroup/*/$KUBE_CGROUP" >/dev/null && found+=("cgroups $(echo /sys/fs/cgroup/*/"$KUBE_CGROUP")")
    pgrep -f "$S" >/dev/null && found+=("processes naming $S: $(pgrep -f "$S" | tr '\n' ' ')")
    [[ -e "$S" ]] && found+=("$S")
    ((${#found[@]} == 0)) || die "left behind: ${found[*]}"
    log "nothing left: no process in or naming the cluster, no mount, netns, cgroup nor $S"
}

down() {
    NETNS_MOUNT_OURS=""
    [[ -e "$S/netns-mount.ours" ]] && NETNS_MOUNT_OURS=1
    NETNS_INODE=""
    [[ -e "/run/netns/$KUBE_NETNS" ]] && NETNS_INODE="net:[$(stat -L -c %i "/run/netns/$KUBE_NETNS")]"
    stage "stop and remove the cluster" teardown
    stage "check the host is as it was" leftovers
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    trap finish EXIT
    case "${1:-}" in
        up) up ;;
        down) down ;;
        exec)
            shift
            in_ns "$@"
            ;;
        *) die "usage: bash scripts/kube.sh up|down|exec CMD..." ;;
    esac
fi
