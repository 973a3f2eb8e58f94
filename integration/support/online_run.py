"""The executor carrying out an online rewrite's steps alone, in a process of its own, so a test can kill it -9.

``python -m integration.support.online_run <table> <old version> <version>... [--abort] [--batch N]``, settings
from the environment (``AppDb.env``): under the real advisory lock and stopper, the steps the plan would give:
online-rewrite of the versions, then each version's statements skipped and the version recorded (or
abort-online). ``--batch`` makes the copy's keyset batches small, so a kill can land in the middle of the copy;
``--round`` and ``--patience`` make the catch-up slow and impatient, so live writes outpace it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from migrator import logs
from migrator.cli.options import build_settings
from migrator.core.planner import AbortOnline, OnlineRewrite, RecordVersion, SkipStatement, Step
from migrator.core.versions import parse_version
from migrator.db.driver import Driver
from migrator.run import migrate, online
from migrator.run.lock import advisory_lock
from migrator.run.stopper import Stopper
from migrator.source.tree import load_vendor_schema


def steps(args: argparse.Namespace, schema_dir: str, store: str) -> list[Step]:
    if args.abort:
        return [AbortOnline(args.table)]
    vendor = load_vendor_schema(Path(schema_dir), store)
    versions = [vendor.find(parse_version(name)) for name in args.versions]
    assert all(versions), args.versions
    statements = tuple(statement.text for version in versions if version for statement in version.statements)
    planned: list[Step] = [OnlineRewrite(args.table, tuple(args.versions), statements, "test")]
    old = args.old
    for version in versions:
        assert version is not None
        total = len(version.statements)
        planned += [SkipStatement(version.name, n, total, s.text) for n, s in enumerate(version.statements, 1)]
        planned.append(RecordVersion(version.name, old))
        old = version.name
    return planned


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("table")
    parser.add_argument("old")
    parser.add_argument("versions", nargs="*")
    parser.add_argument("--abort", action="store_true")
    parser.add_argument("--batch", type=int, default=online.COPY_BATCH_ROWS)
    parser.add_argument("--round", type=int, default=online.REPLAY_ROUND_KEYS)
    parser.add_argument("--patience", type=int, default=online.BACKLOG_PATIENCE)
    args = parser.parse_args()
    online.COPY_BATCH_ROWS, online.REPLAY_ROUND_KEYS, online.BACKLOG_PATIENCE = args.batch, args.round, args.patience
    settings = build_settings("migrate", {}, os.environ)
    logs.configure("json", "info", [settings.password])
    planned = steps(args, str(settings.schema_dir), settings.store)
    vendor = load_vendor_schema(settings.schema_dir, settings.store)
    shell = migrate.Shell(settings, "unused", vendor)
    report = migrate.Report()
    with (
        Driver.open(settings, primary=True) as driver,
        advisory_lock(driver, settings.database, settings.lock_timeout) as lock,
        Stopper(settings, driver, lock) as stopper,
    ):
        stopper.start()
        migrate._run_plan(driver, lock, shell, planned, report, stopper=stopper)
    return 0


if __name__ == "__main__":
    sys.exit(main())
