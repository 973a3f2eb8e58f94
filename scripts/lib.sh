# Shared set-up for scripts/test.sh and scripts/demo.sh. Source it; it defines functions and variables only.
#   stage NAME FUNC...   run FUNC with a header and its duration; a failure stops the caller (set -e)
#   finish               EXIT trap: names a failed stage, prints the total duration
#   setup_python         pip install -e '.[test]' (quiet)
#   setup_postgres       PostgreSQL >= 15 server binaries (apt-get install postgresql when root)
#   setup_tool [VERSION PREFIX]
#                        scripts/build-tool.sh VERSION (default TEMPORAL_VERSION); exports PREFIX_SQL_TOOL and
#                        PREFIX_SCHEMA_DIR (default prefix TEMPORAL)
# Every pinned version comes from pins.env (exported).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
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

TOTAL_STARTED="$(now)"
# finish: for `trap finish EXIT` in the scripts; reports a failed stage and the total duration.
finish() {
    local rc=$?
    if [[ -n "$CURRENT_STAGE" ]]; then
        log "<== $CURRENT_STAGE FAILED (exit $rc) after $(elapsed "$STAGE_STARTED")"
    fi
    log "total $(elapsed "$TOTAL_STARTED") (exit $rc)"
    return "$rc"
}

setup_python() {
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        -e "$REPO_ROOT[test]"
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
