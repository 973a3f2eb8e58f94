"""temporal-migrator: brings Temporal's PostgreSQL schemas to a target version, safely and repeatably."""

from importlib.metadata import version

# Written once, in pyproject.toml; the chart's appVersion is checked against it (tests/test_version.py).
__version__ = version("temporal-migrator")
