"""Schema version strings, compared numerically ("1.18" > "1.9"), never as text."""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

from migrator.errors import UsageError


def parse_version(text: str) -> Version:
    """Parse a schema version such as ``1.18`` (a leading ``v`` is allowed, as the tool allows it).

    Raises ValueError for anything that is not a plain dotted number.
    """
    raw = text.strip()
    if raw[:1] in ("v", "V"):
        raw = raw[1:]
    if not raw or not all(part.isdigit() for part in raw.split(".")):
        raise ValueError(f"not a schema version: {text!r}")
    try:
        return Version(raw)
    except InvalidVersion as exc:  # pragma: no cover - guarded by the digit check above
        raise ValueError(f"not a schema version: {text!r}") from exc


def parse_target(text: str) -> Version:
    """Parse a user-supplied target version, as a usage error when malformed."""
    try:
        return parse_version(text)
    except ValueError:
        raise UsageError(
            f"--target-version {text!r} is not a schema version; use a dotted number such as 1.18"
        ) from None
