"""``--create-database``: observe a store's database that does not exist yet, and create it.

The target database is always tried first; only when the server answers 3D000 (it does not exist) do we go
to the maintenance database ``postgres``, so a role without CONNECT there migrates an existing database as
well with the flag as without it. From ``postgres`` we ask whether the database exists (``pg_database``) and
whether the role may create one (``rolcreatedb`` or ``rolsuper``): that is the observed "absent" state, from
which the planner makes the plan (create-database, setup-schema, update-schema) and its verdict (exit 4
naming the fix without CREATEDB). The creation runs ``CREATE DATABASE "<name>"`` as temporal-sql-tool's
create-database does, so the role that runs it owns the new database (and with it schema ``public`` on
PostgreSQL 15+); another session creating it first (42P04) counts as success.
"""

from __future__ import annotations

from dataclasses import replace

import structlog

from migrator.core.planner import createdb_problem
from migrator.core.settings import Settings
from migrator.core.state import Access, State
from migrator.db.interface import Connect, Database
from migrator.errors import AccessError

MAINTENANCE_DATABASE = "postgres"
log = structlog.get_logger("migrator")


def maintenance(settings: Settings) -> Settings:
    """The same connection settings on the maintenance database, where CREATE DATABASE runs."""
    return replace(settings, database=MAINTENANCE_DATABASE)


def absent_state(session: Database, database: str) -> State | None:
    """``database`` as the maintenance database sees it: absent (with who we are and whether we may create
    it), or None when it exists after all (another session created it since we tried to connect)."""
    exists, user, may_create = session.database_presence(database)
    if exists:
        return None
    access = Access(
        user=user, database_owner=user, server_version_num=session.server_version, can_create_database=may_create
    )
    return State(database, access=access, exists=False)


def observe_absent(settings: Settings, connect: Connect) -> State | None:
    """After 3D000 on the target: the absent state, read on the maintenance database."""
    with connect(maintenance(settings)) as session:
        return absent_state(session, settings.database)


def create_database(session: Database, database: str, user: str) -> None:
    """The create-database step, on a maintenance session."""
    try:
        created = session.create_database(database)
    except AccessError:  # CREATEDB revoked since we looked
        raise AccessError(createdb_problem(database, user)) from None
    if created:
        log.info("database.created", database=database, owner=user)
    else:  # another migrator created it since we looked: what we wanted
        log.info("database.exists", database=database, created_by="another session")
