"""`migrator.retry`: the first attempt runs without tenacity; after it fails, tenacity's retries behave as though
tenacity had made it (attempt numbers, the deadline counted from the first attempt, what is raised)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from migrator.logs import retry_fields
from migrator.retry import retried


class Flaky:
    """Fails with ``error`` the first ``failures`` times it is called, each call taking ``seconds``."""

    def __init__(self, failures: int, error: Exception, seconds: float = 0.0) -> None:
        self.failures = failures
        self.error = error
        self.seconds = seconds
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        time.sleep(self.seconds)
        if self.calls <= self.failures:
            raise self.error
        return f"done after {self.calls}"


def run(attempt: Flaky, budget: float = 5.0) -> tuple[str, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    result = retried(
        attempt, on=LookupError, first_pause=0.001, max_pause=0.002, budget=budget,
        before_sleep=lambda state: seen.append(retry_fields(state)),
    )  # fmt: skip
    return result, seen


def test_a_first_attempt_that_succeeds_is_the_result() -> None:
    assert run(Flaky(0, KeyError("x"))) == ("done after 1", [])


def test_attempts_after_a_failure_are_numbered_from_the_first() -> None:
    result, seen = run(Flaky(2, KeyError("busy")))
    assert result == "done after 3"
    assert [(fields["attempt"], fields["cause"]) for fields in seen] == [(1, "'busy'"), (2, "'busy'")]


def test_the_deadline_counts_the_first_attempt() -> None:
    """A first attempt that alone outlasts the budget is not retried: its error is raised."""
    attempt = Flaky(5, KeyError("slow"), seconds=0.05)
    with pytest.raises(KeyError, match="slow"):
        run(attempt, budget=0.04)
    assert attempt.calls == 1


def test_the_last_error_is_raised_when_the_budget_is_spent() -> None:
    attempt = Flaky(1000, KeyError("still"))
    with pytest.raises(KeyError, match="still"):
        run(attempt, budget=0.05)
    assert attempt.calls > 1


@pytest.mark.parametrize("failures", [0, 1], ids=["first attempt", "a retry"])
def test_another_error_is_raised_at_once(failures: int) -> None:
    outcomes: list[Exception] = [*(KeyError("busy") for _ in range(failures)), ValueError("bad")]

    def attempt() -> str:
        raise outcomes.pop(0)

    with pytest.raises(ValueError, match="bad"):
        retried(attempt, on=LookupError, first_pause=0.001, max_pause=0.002, budget=5, before_sleep=lambda _: None)
    assert outcomes == []
