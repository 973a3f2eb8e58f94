"""``--create-database``: create the store's database when it does not exist, as ``temporal-sql-tool
create-database`` does, before `migrate` connects to it.

The tool connects to the maintenance database ``postgres``, runs ``CREATE DATABASE "<name>"`` (so the role
that runs it owns the new database, and with it schema ``public`` on PostgreSQL 15+) and treats SQLSTATE 42P04
(duplicate_database) as success. We do the same, but ask the server first: whether the database exists
(``pg_database``) and whether the role may create one (``rolcreatedb`` or ``rolsuper``), so a role without
CREATEDB gets exit 4 naming the fix instead of the server's message, and an existing database is never touched.
"""

from __future__ import annotations

import dataclasses

import psycopg
import structlog
from psycopg import errors, sql

from migrator.db import connect
from migrator.errors import AccessError, DDLError, UnreachableError
from migrator.settings import Settings

MAINTENANCE_DATABASE = "postgres"
log = structlog.get_logger("migrator")

_PROBE = """
SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = %(db)s),
       current_user,
       (SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user)
"""


def refusal(database: str, user: str) -> str:
    """Exit 4's message: the statements an administrator can run, identifiers quoted as the server wants."""
    create = sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(user))
    grant = sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(user))
    return (
        f"database {database!r} does not exist and role {user!r} may not create databases (no CREATEDB): "
        f"have an administrator run {create.as_string()} (CloudNativePG: a Database resource with owner {user}), "
        f"or {grant.as_string()}"
    )


def ensure_database(settings: Settings) -> bool:
    """Create ``settings.database`` when it is missing; True when this run created it."""
    maintenance = dataclasses.replace(settings, database=MAINTENANCE_DATABASE)
    with connect(maintenance) as conn:
        row = conn.execute(_PROBE, {"db": settings.database}).fetchone()
        assert row is not None, "a SELECT without FROM returns one row"
        exists, user, may_create = row
        if exists:
            log.debug("database.exists", database=settings.database)
            return False
        if not may_create:
            raise AccessError(refusal(settings.database, user))
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.database)))
        except errors.DuplicateDatabase:  # another migrator created it since we looked: what we wanted
            log.info("database.exists", database=settings.database, created_by="another session")
            return False
        except errors.InsufficientPrivilege:  # CREATEDB revoked since we looked
            raise AccessError(refusal(settings.database, user)) from None
        except psycopg.Error as error:
            if (error.sqlstate or "").startswith("08"):
                raise UnreachableError(
                    f"connection lost while creating database {settings.database!r}: {error}"
                ) from None
            raise DDLError(
                f"CREATE DATABASE {settings.database!r} failed (SQLSTATE {error.sqlstate}): {error}"
            ) from None
    log.info("database.created", database=settings.database, owner=user)
    return True
