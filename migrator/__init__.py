"""temporal-migrator: brings Temporal's PostgreSQL schemas to a target version, safely and repeatably."""

__version__ = "0.1.0"
