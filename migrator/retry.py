"""Retries with tenacity, loaded only once a first attempt has failed.

Nearly every call succeeds at once (a connection, a migrate attempt, every run that finds nothing to do), and
importing tenacity is a noticeable share of such a run; so the first attempt runs without it, and when that
attempt fails with a retryable error tenacity takes over as though it had made the attempt itself: the same
attempt numbers, pauses, deadline (counted from the first attempt) and ``before_sleep`` fields.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from tenacity import RetryCallState

T = TypeVar("T")


def retried(
    attempt: Callable[[], T],
    *,
    on: type[Exception],
    first_pause: float,
    max_pause: float,
    budget: float,
    before_sleep: Callable[[RetryCallState], None],
) -> T:
    """``attempt()`` again after each ``on`` error, with full-jitter exponential pauses (up to ``first_pause``
    doubling, capped at ``max_pause``), until it succeeds, raises anything else, or ``budget`` seconds have passed
    since the first attempt began (then the last ``on`` error is raised)."""
    started = time.monotonic()
    try:
        return attempt()
    except on as error:
        first: Exception | None = error
    from tenacity import (  # noqa: PLC0415 - see the module docstring
        Retrying,
        retry_if_exception_type,
        stop_after_delay,
        wait_random_exponential,
    )

    retrying = Retrying(
        retry=retry_if_exception_type(on),
        wait=wait_random_exponential(multiplier=first_pause, max=max_pause),
        stop=stop_after_delay(budget),
        before_sleep=before_sleep,
        reraise=True,
    )
    results: list[T] = []
    for each in retrying:
        with each:
            if first is not None:  # tenacity's first attempt is the one already made
                each.retry_state.start_time = started
                failed, first = first, None
                raise failed
            results.append(attempt())
    return results[-1]
