"""``--create-database``: create the store's database when it does not exist, as ``temporal-sql-tool
create-database`` does, before `migrate` connects to it.

The tool connects to the maintenance database ``postgres``, runs ``CREATE DATABASE "<name>"`` (so the role
that runs it owns the new database, and with it schema ``public`` on PostgreSQL 15+) and treats SQLSTATE 42P04
(duplicate_database) as success. We do the same, but ask the server first: whether the database exists
(``pg_database``) and whether the role may create one (``rolcreatedb`` or ``rolsuper``), so a role without
CREATEDB gets exit 4 naming the fix instead of the server's message, and an existing database is never touched.
The same question lets `status` and `plan` report a database that is still to be created.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import structlog
from psycopg import sql

from migrator.core.planner import SETUP_VERSION, Action, Plan, Situation, Step
from migrator.core.settings import Settings
from migrator.core.vendor import VendorSchema, VendorVersion
from migrator.db.driver import Driver
from migrator.errors import AccessError

MAINTENANCE_DATABASE = "postgres"
log = structlog.get_logger("migrator")


def refusal(database: str, user: str) -> str:
    """Exit 4's message: the statements an administrator can run, identifiers quoted as the server wants."""
    create = sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(user))
    grant = sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(user))
    return (
        f"database {database!r} does not exist and role {user!r} may not create databases (no CREATEDB): "
        f"have an administrator run {create.as_string()} (CloudNativePG: a Database resource with owner {user}), "
        f"or {grant.as_string()}"
    )


@dataclass(frozen=True)
class Presence:
    """What the maintenance database says: does the store's database exist, and may we create it."""

    exists: bool
    user: str
    may_create: bool


def _presence(driver: Driver, database: str) -> Presence:
    return Presence(*driver.database_presence(database))


def _maintenance(settings: Settings) -> Settings:
    return replace(settings, database=MAINTENANCE_DATABASE)


def ensure_database(settings: Settings) -> bool:
    """Create ``settings.database`` when it is missing; True when this run created it."""
    with Driver.open(_maintenance(settings)) as driver:
        presence = _presence(driver, settings.database)
        if presence.exists:
            log.debug("database.exists", database=settings.database)
            return False
        if not presence.may_create:
            raise AccessError(refusal(settings.database, presence.user))
        try:
            created = driver.create_database(settings.database)
        except AccessError:  # CREATEDB revoked since we looked
            raise AccessError(refusal(settings.database, presence.user)) from None
    if not created:  # another migrator created it since we looked: what we wanted
        log.info("database.exists", database=settings.database, created_by="another session")
        return False
    log.info("database.created", database=settings.database, owner=presence.user)
    return True


def absent_document(settings: Settings, vendor: VendorSchema, target: VendorVersion) -> dict[str, Any] | None:
    """`status`/`plan` with --create-database for a database that does not exist yet (None when it does):
    what `migrate` would do, creating the database first, so the plan shows every action migrate takes."""
    with Driver.open(_maintenance(settings)) as driver:
        presence = _presence(driver, settings.database)
    if presence.exists:
        return None
    planned = Plan(
        Situation.ABSENT,
        settings.database,
        vendor.store,
        None,
        target.name,
        pending=tuple(vendor.between(SETUP_VERSION, target.version)),
        steps=(Step(Action.SETUP, str(SETUP_VERSION)), Step(Action.UPDATE, target.name)),
    )
    problem = None if presence.may_create else refusal(settings.database, presence.user)
    document = {**planned.to_dict(), "invalid_indexes": []}
    if settings.command != "plan":
        return {**document, "warnings": [problem] if problem else []}
    steps = [{"action": "create-database", "database": settings.database}, *(s.to_dict() for s in planned.steps)]
    return {**document, "steps": steps, "blocked": problem}
