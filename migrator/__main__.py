"""The program: ``temporal-migrator`` (the console script calls `run`) and ``python -m migrator``."""

import gc
from typing import NoReturn


def run() -> NoReturn:
    """Load the command line with the cyclic collector off, then run it with the collector on.

    Loading psycopg, structlog and the migrator creates some 200,000 objects, none of them garbage, and the
    collector would walk them again and again while they load: about a tenth of a no-op's CPU time. Once loaded
    they are frozen (left out of every later collection); a long run collects as usual.
    """
    gc.disable()
    from migrator.cli.main import main_exit  # noqa: PLC0415 - loaded with the collector off, see above

    gc.freeze()
    gc.enable()
    main_exit()


if __name__ == "__main__":
    run()
