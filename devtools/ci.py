"""The one rule for a missing test requirement (PostgreSQL, the tool, helm, hadolint): CI fails, elsewhere skips.

Plain functions so both `tests/` and `integration/` use them; CI is recognised by ``CI=true``, as .ci/run sets it.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``, or fail loudly in CI, where every test must run."""
    if in_ci():
        pytest.fail(f"CI=true and a test requirement is missing: {reason}", pytrace=False)
    pytest.skip(reason)
