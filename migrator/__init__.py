"""temporal-migrator: brings Temporal's PostgreSQL schemas to a target version, safely and repeatably."""

from typing import Any


def __getattr__(name: str) -> Any:
    """``__version__``: written once, in pyproject.toml (the chart's appVersion is checked against it); read from
    the installed metadata only when asked, as importlib.metadata costs a no-op a noticeable share of its time."""
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415 - see above

        return version("temporal-migrator")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
