"""Run in a fresh interpreter by test_noop_imports.py: the CLI's ``migrate`` on a store recorded at the version
in argv (a session that observes it there, in place of PostgreSQL; it refuses anything a no-op does not do, and so
does the tool), then print as JSON its exit code and which of the modules named in argv it loaded.

Only the migrator is imported here, so what is loaded is what that run loads."""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Self

from migrator.cli import commands
from migrator.cli.main import main
from migrator.core.settings import Settings
from migrator.core.state import Catalog, State
from migrator.core.vendor import VendorSchema
from migrator.errors import DDLError
from migrator.run.migrate import migrate


class AtTarget:
    """A session on a database whose store is recorded at ``version``; it answers what a no-op asks, no more."""

    server_version = 150000
    backend_pid = 4242

    def __init__(self, database: str, version: str) -> None:
        self.database = database
        self.version = version

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def try_lock(self, key: int) -> bool:
        return True

    def unlock(self, key: int) -> None:
        pass

    def holds_lock(self, key: int) -> bool:
        return True

    def observe(self, vendor: VendorSchema, **_: Any) -> State:
        return State(self.database, self.version, catalog=Catalog(tables=frozenset({"schema_version"})))

    def __getattr__(self, name: str) -> Any:
        raise DDLError(f"the probe's session refuses {name}: a no-op does not call it")


def connect(version: str, settings: Settings, **_: Any) -> AtTarget:
    return AtTarget(settings.database, version)


def no_tool(*_: Any, **__: Any) -> float:
    raise DDLError("the probe runs no tool")


def probe(version: str, watched: list[str]) -> dict[str, Any]:
    run = functools.partial(migrate, connect=functools.partial(connect, version), tool_runner=no_tool)
    setattr(commands, "migrate", run)  # noqa: B010 - the run in place of the real one, as a test double
    status = main(["migrate"])
    return {"exit_code": status, "loaded": [name for name in watched if name in sys.modules]}


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1], sys.argv[2:])))
