"""Run settings from flags and environment, validated before anything touches the database.

Connection flags and variables are temporal-sql-tool's own (SQL_HOST, SQL_PORT, ...), so a hook that called the
tool can call the migrator with the same environment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from migrator.cli.render import OUTPUTS
from migrator.core.rewrite import RewriteMode
from migrator.core.settings import Settings
from migrator.core.sizes import parse_size
from migrator.core.vendor import STORES
from migrator.core.versions import parse_target
from migrator.db.session import MAX_TIMEOUT_MS
from migrator.errors import UsageError

PLUGINS = ("postgres12", "postgres12_pgx")
COMMANDS = ("status", "plan", "migrate", "wait")
LOG_FORMATS = ("json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")
# Durations bound what we wait for; a year is past any real wait (and within every timer Python has).
MAX_SECONDS = 365 * 24 * 3600.0
# --ddl-lock-timeout becomes lock_timeout, an int of milliseconds in PostgreSQL (at most INT_MAX).
MAX_LOCK_TIMEOUT_SECONDS = MAX_TIMEOUT_MS // 1000
# --connect-attributes keys other flags own: the flag to use instead (application_name tags our sessions).
RESERVED_ATTRIBUTES = {
    "host": "--endpoint/SQL_HOST",
    "hostaddr": "--endpoint/SQL_HOST",
    "port": "--port/SQL_PORT",
    "user": "--user/SQL_USER",
    "password": "SQL_PASSWORD",
    "dbname": "--database/SQL_DATABASE",
    "sslmode": "--tls and --tls-disable-host-verification",
    "application_name": "nothing: the migrator names its own and the tool's sessions, by which it finds them",
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Option:
    """One setting: its flags, environment variable, default and help (the README table is made from these)."""

    dest: str
    flags: tuple[str, ...]
    env: str
    default: str | None
    help: str
    is_flag: bool = False


OPTIONS: tuple[Option, ...] = (
    Option("host", ("--endpoint", "--ep"), "SQL_HOST", "127.0.0.1", "PostgreSQL host"),
    Option("port", ("--port", "-p"), "SQL_PORT", "5432", "PostgreSQL port"),
    Option("user", ("--user", "-u"), "SQL_USER", None, "role to connect as (required)"),
    Option("password", ("--password", "--pw"), "SQL_PASSWORD", "", "password; prefer the environment variable"),
    Option("database", ("--database", "--db"), "SQL_DATABASE", "temporal", "database, also schema_version's db_name"),
    Option("plugin", ("--plugin", "--pl"), "SQL_PLUGIN", "postgres12", "postgres12 or postgres12_pgx"),
    Option(
        "connect_attributes",
        ("--connect-attributes", "--ca"),
        "SQL_CONNECT_ATTRIBUTES",
        None,
        "DSN parameters as the tool takes them, k=v&k2=v2 (search_path=<schema> moves the whole run there)",
    ),
    Option(
        "tls",
        ("--tls",),
        "SQL_TLS",
        "false",
        "connect with TLS (verify-full; system CAs without a CA file)",
        is_flag=True,
    ),
    Option("tls_cert_file", ("--tls-cert-file",), "SQL_TLS_CERT_FILE", None, "client certificate file"),
    Option("tls_key_file", ("--tls-key-file",), "SQL_TLS_KEY_FILE", None, "client key file"),
    Option("tls_ca_file", ("--tls-ca-file",), "SQL_TLS_CA_FILE", None, "CA certificate file"),
    Option(
        "tls_server_name",
        ("--tls-server-name",),
        "SQL_TLS_SERVER_NAME",
        None,
        "accepted for compatibility; the postgres plugin ignores it",
    ),
    Option(
        "tls_disable_host_verification",
        ("--tls-disable-host-verification",),
        "SQL_TLS_DISABLE_HOST_VERIFICATION",
        "false",
        "TLS without host verification (require)",
        is_flag=True,
    ),
    Option("store", ("--schema",), "MIGRATOR_SCHEMA", "temporal", "store: temporal (default store) or visibility"),
    Option(
        "schema_dir",
        ("--schema-dir",),
        "MIGRATOR_SCHEMA_DIR",
        "/etc/temporal/schema",
        "root of the vendor tree (holds postgresql/v12/<store>/versioned)",
    ),
    Option(
        "target",
        ("--target-version",),
        "MIGRATOR_TARGET_VERSION",
        None,
        "target schema version (default: newest in the vendor tree)",
    ),
    Option("tool", ("--tool",), "TEMPORAL_SQL_TOOL", "temporal-sql-tool", "temporal-sql-tool binary"),
    Option("lock_timeout", ("--lock-timeout",), "MIGRATOR_LOCK_TIMEOUT", "600", "seconds to wait for the lock"),
    Option(
        "connect_timeout",
        ("--connect-timeout",),
        "MIGRATOR_CONNECT_TIMEOUT",
        "120",
        "seconds to wait for the database to accept connections",
    ),
    Option(
        "tool_timeout",
        ("--tool-timeout",),
        "MIGRATOR_TOOL_TIMEOUT",
        "3600",
        "seconds one tool run may take (0: no limit)",
    ),
    Option("wait_timeout", ("--wait-timeout",), "MIGRATOR_WAIT_TIMEOUT", "900", "seconds `wait` waits"),
    Option(
        "ddl_lock_timeout",
        ("--ddl-lock-timeout",),
        "MIGRATOR_DDL_LOCK_TIMEOUT",
        "5",
        "seconds one DDL statement (ours or the tool's) may wait for its table lock; 0 = no limit",
    ),
    Option(
        "ddl_retry_timeout",
        ("--ddl-retry-timeout",),
        "MIGRATOR_DDL_RETRY_TIMEOUT",
        "600",
        "seconds to keep retrying a version whose statement gave up on its lock (then exit 7)",
    ),
    Option(
        "max_rewrite_size",
        ("--max-rewrite-size",),
        "MIGRATOR_MAX_REWRITE_SIZE",
        None,
        "refuse (exit 6) a pending rewrite or locked scan of a larger table, e.g. 2GB (default: report only)",
    ),
    Option(
        "rewrite_mode",
        ("--rewrite-mode",),
        "MIGRATOR_REWRITE_MODE",
        "auto",
        "auto: rewrite a table online (on a shadow table, swapped in) when a plain rewrite would stall it longer "
        "than --max-stall; online: always; plain: never (the vendor's statements as they are)",
    ),
    Option(
        "max_stall",
        ("--max-stall",),
        "MIGRATOR_MAX_STALL",
        "1",
        "seconds a plain rewrite may stall a table's queries (estimated from its size) before auto goes online",
    ),
    Option(
        "online_allow_all_tables_publication",
        ("--online-allow-all-tables-publication",),
        "MIGRATOR_ONLINE_ALLOW_ALL_TABLES_PUBLICATION",
        "false",
        "rewrite online despite a FOR ALL TABLES publication (its subscribers need the rewrite's two schemas)",
        is_flag=True,
    ),
    Option(
        "abort_online",
        ("--abort-online",),
        "MIGRATOR_ABORT_ONLINE",
        "false",
        "migrate removes the online rewrite a run left in progress (the table stays as it was) and does nothing else",
        is_flag=True,
    ),
    Option(
        "progress_interval",
        ("--progress-interval",),
        "MIGRATOR_PROGRESS_INTERVAL",
        "10",
        "seconds between ddl.progress events while a statement runs",
    ),
    Option("log_format", ("--log-format",), "MIGRATOR_LOG_FORMAT", "json", "json or console"),
    Option("log_level", ("--log-level",), "MIGRATOR_LOG_LEVEL", "info", "debug, info, warning or error"),
    Option(
        "termination_log",
        ("--termination-log",),
        "MIGRATOR_TERMINATION_LOG",
        "/dev/termination-log",
        "existing file that receives the run summary (Kubernetes termination message); never created",
    ),
    Option(
        "output",
        ("--output", "-o"),
        "MIGRATOR_OUTPUT",
        None,
        "status/plan output: json or table (unset: table when stdout is a terminal, else json)",
    ),
    Option(
        "create_database",
        ("--create-database",),
        "MIGRATOR_CREATE_DATABASE",
        "false",
        "migrate creates the database when it does not exist (needs CREATEDB); status/plan report it as absent",
        is_flag=True,
    ),
)


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise UsageError(f"{name} {value!r} is not supported; use one of: {', '.join(choices)}")
    return value


def _seconds(name: str, value: str, limit: float = MAX_SECONDS) -> float:
    """A finite, non-negative number of seconds up to ``limit`` (``inf`` and ``nan`` are not durations)."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not (seconds >= 0 and math.isfinite(seconds)):
        raise UsageError(f"{name} {value!r} is not a number of seconds; give a value such as 60")
    if seconds > limit:
        raise UsageError(f"{name} {value!r} is more than {limit:g} seconds, the most it can be; give a smaller value")
    return seconds


def _size(name: str, value: str | None) -> int | None:
    if not value:
        return None
    try:
        return parse_size(value)
    except ValueError:
        raise UsageError(f"{name} {value!r} is not a size; write it as PostgreSQL does, e.g. 500MB or 2GB") from None


def _interval(name: str, value: str) -> float:
    seconds = _seconds(name, value)
    if seconds <= 0:
        raise UsageError(f"{name} {value!r} must be more than 0 seconds; give a value such as 10")
    return seconds


def _flag(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise UsageError(f"{name} {value!r} is not a boolean; use true or false")


def raw_values(parsed: Mapping[str, str | bool | None], environ: Mapping[str, str]) -> dict[str, str | None]:
    """Flag if given, else environment variable, else default."""
    values: dict[str, str | None] = {}
    for option in OPTIONS:
        given = parsed.get(option.dest)
        if option.is_flag and given:
            values[option.dest] = "true"
        elif given is not None and given is not False:
            values[option.dest] = str(given)
        else:
            values[option.dest] = environ.get(option.env, option.default)
    return values


def _host(value: str) -> str:
    """The host as libpq takes it: an IPv6 address without the brackets the tool needs (``[::1]`` → ``::1``)."""
    host = value.strip()
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _attributes(label: str, text: str) -> tuple[tuple[str, str], ...]:
    """``k=v&k2=v2`` parsed as the tool parses it (url.ParseQuery); a key given twice makes the tool panic."""
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True) if text.strip() else []
    except ValueError:  # the text is not echoed: it may hold a secret
        raise UsageError(f"{label} is not k=v&k2=v2; give it as search_path=temporal&k=v") from None
    keys = [key.strip() for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise UsageError(f"{label} gives {', '.join(repeated)} more than once; give each key once")
    reserved = next((key for key in keys if key.lower() in RESERVED_ATTRIBUTES), None)
    if reserved is not None:
        raise UsageError(f"{label} may not set {reserved!r}; use {RESERVED_ATTRIBUTES[reserved.lower()]}")
    return tuple((key.strip(), value.strip()) for key, value in pairs)


def _label(dest: str) -> str:
    option = next(item for item in OPTIONS if item.dest == dest)
    return f"{option.flags[0]}/{option.env}"


def build_settings(command: str, parsed: Mapping[str, str | bool | None], environ: Mapping[str, str]) -> Settings:
    """Validate everything that can be checked without the database (all failures are exit 2)."""
    raw = raw_values(parsed, environ)

    def get(dest: str) -> str:
        return raw[dest] or ""

    port_text = get("port")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"{_label('port')} {port_text!r} is not a TCP port; give a number such as 5432")
    if not get("user"):
        raise UsageError(f"no user: set {_label('user')} to the Temporal role")
    if not get("database").strip():
        raise UsageError(f"{_label('database')} is empty; name the store's database")
    target_text = raw["target"]
    abort_online = _flag(_label("abort_online"), get("abort_online"))
    if abort_online and command not in ("migrate", "plan"):
        raise UsageError(f"{_label('abort_online')} is for migrate (and plan, to show it); leave it out of {command}")
    return Settings(
        command=command,
        host=_host(get("host")),
        port=int(port_text),
        user=get("user"),
        password=get("password"),
        database=get("database"),
        plugin=_choice(_label("plugin"), get("plugin"), PLUGINS),
        connect_attributes=_attributes(_label("connect_attributes"), get("connect_attributes")),
        tls=_flag(_label("tls"), get("tls")),
        tls_cert_file=raw["tls_cert_file"] or None,
        tls_key_file=raw["tls_key_file"] or None,
        tls_ca_file=raw["tls_ca_file"] or None,
        tls_disable_host_verification=_flag(
            _label("tls_disable_host_verification"), get("tls_disable_host_verification")
        ),
        store=_choice(_label("store"), get("store"), STORES),
        schema_dir=Path(get("schema_dir")),
        target=parse_target(target_text) if target_text else None,
        tool=get("tool"),
        lock_timeout=_seconds(_label("lock_timeout"), get("lock_timeout")),
        connect_timeout=_seconds(_label("connect_timeout"), get("connect_timeout")),
        tool_timeout=_seconds(_label("tool_timeout"), get("tool_timeout")),
        wait_timeout=_seconds(_label("wait_timeout"), get("wait_timeout")),
        log_format=_choice(_label("log_format"), get("log_format").lower(), LOG_FORMATS),
        log_level=_choice(_label("log_level"), get("log_level").lower(), LOG_LEVELS),
        termination_log=Path(get("termination_log")),
        ddl_lock_timeout=_seconds(_label("ddl_lock_timeout"), get("ddl_lock_timeout"), MAX_LOCK_TIMEOUT_SECONDS),
        ddl_retry_timeout=_seconds(_label("ddl_retry_timeout"), get("ddl_retry_timeout")),
        max_rewrite_size=_size(_label("max_rewrite_size"), raw["max_rewrite_size"]),
        progress_interval=_interval(_label("progress_interval"), get("progress_interval")),
        output=_choice(_label("output"), get("output").lower(), OUTPUTS) if raw["output"] else None,
        create_database=_flag(_label("create_database"), get("create_database")),
        rewrite_mode=_choice(_label("rewrite_mode"), get("rewrite_mode").lower(), tuple(RewriteMode)),
        max_stall=_seconds(_label("max_stall"), get("max_stall")),
        online_allow_all_tables_publication=_flag(
            _label("online_allow_all_tables_publication"), get("online_allow_all_tables_publication")
        ),
        abort_online=abort_online,
    )
