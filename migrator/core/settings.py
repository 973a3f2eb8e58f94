"""The settings of one run, validated: connection, store, target and policy (built by `migrator.cli.options`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import Version


@dataclass(frozen=True)
class Settings:
    command: str
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    plugin: str
    connect_attributes: tuple[tuple[str, str], ...]
    tls: bool
    tls_cert_file: str | None
    tls_key_file: str | None
    tls_ca_file: str | None
    tls_disable_host_verification: bool
    store: str
    schema_dir: Path
    target: Version | None
    tool: str
    lock_timeout: float
    connect_timeout: float
    tool_timeout: float
    wait_timeout: float
    log_format: str
    log_level: str
    termination_log: Path
    ddl_lock_timeout: float
    ddl_retry_timeout: float
    max_rewrite_size: int | None
    progress_interval: float
    output: str | None = None
    create_database: bool = False
    rewrite_mode: str = "auto"  # auto, online or plain (`migrator.core.rewrite.RewriteMode`)
    max_stall: float = 1.0  # seconds of plain-rewrite stall auto tolerates before going online
    online_allow_all_tables_publication: bool = False
    abort_online: bool = False
