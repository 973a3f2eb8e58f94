"""The program: ``temporal-migrator`` (the console script calls `run`) and ``python -m migrator``."""

import gc
from typing import NoReturn


def run() -> NoReturn:
    """Load the command line with the cyclic collector off, then run it with the collector on.

    Loading psycopg, structlog and the migrator creates tens of thousands of objects, none of them garbage, and
    the collector would walk them some 90 times while they load. Frozen once loaded, they are left out of every
    later collection, the one at exit included. A no-op costs about a quarter less CPU so (`scripts/bench.sh`);
    a long run collects as usual.
    """
    gc.disable()
    from migrator.cli.main import main_exit  # noqa: PLC0415 - loaded with the collector off, see above

    gc.freeze()
    gc.enable()
    main_exit()


if __name__ == "__main__":
    run()
