"""Retry policy: exponential backoff with full jitter, retry-after, deadlines, delivered output.

The retry loop itself is the HTTP provider's; tests/test_providers_timing.py and
tests/test_providers_errors.py drive it over loopback HTTP in Trio's virtual time.
"""

from __future__ import annotations

import random

import pytest
import trio

import alloy
from alloy._retry import RetryPolicy


def retryable(message: str = "overloaded", **kw: object) -> alloy.ProviderError:
    return alloy.OverloadedError(message, provider="test", retryable=True, **kw)  # type: ignore[arg-type]


async def test_retryable_errors_wait_until_the_retries_run_out() -> None:
    policy = RetryPolicy(max_retries=3, base_delay=1.0, random=random.Random(7))
    waits = [policy.wait_before(n, retryable(), delivered=False) for n in range(5)]
    assert all(wait is not None for wait in waits[:3])
    assert waits[3:] == [None, None]


async def test_non_retryable_errors_are_not_waited_for() -> None:
    error = alloy.AuthenticationError("bad key", provider="test")
    assert RetryPolicy().wait_before(0, error, delivered=False) is None


async def test_max_retries_zero_disables_retry() -> None:
    assert RetryPolicy(max_retries=0).wait_before(0, retryable(), delivered=False) is None


async def test_backoff_is_exponential_with_full_jitter() -> None:
    expected = random.Random(42)
    policy = RetryPolicy(max_retries=4, base_delay=1.0, max_delay=100.0, random=random.Random(42))
    waits = [policy.wait_before(n, retryable(), delivered=False) for n in range(4)]
    bounds = [1.0, 2.0, 4.0, 8.0]
    assert waits == pytest.approx([expected.uniform(0, bound) for bound in bounds])
    assert all(0 <= (wait or 0) <= bound for wait, bound in zip(waits, bounds, strict=True))


def test_jitter_varies() -> None:
    policy = RetryPolicy(base_delay=1.0)
    delays = {policy.delay(2, retryable()) for _ in range(20)}
    assert len(delays) > 1
    assert all(d is not None and 0 <= d <= 4.0 for d in delays)


def test_delay_is_capped_by_max_delay() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0, max_retries=50)
    assert all((policy.delay(30, retryable()) or 0) <= 5.0 for _ in range(50))


async def test_retry_after_is_honoured() -> None:
    assert RetryPolicy().wait_before(0, retryable(retry_after=7.5), delivered=False) == 7.5


async def test_too_long_retry_after_is_not_waited() -> None:
    policy = RetryPolicy(max_retry_after=60)
    assert policy.wait_before(0, retryable(retry_after=3600), delivered=False) is None


async def test_a_wait_past_the_callers_deadline_is_not_started(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.move_on_after(5):  # noqa: ASYNC100 - the deadline wait_before reads
        policy = RetryPolicy()
        assert policy.wait_before(0, retryable(retry_after=10), delivered=False) is None
        assert policy.wait_before(0, retryable(retry_after=2), delivered=False) == 2


async def test_never_retried_once_output_was_delivered() -> None:
    assert RetryPolicy().wait_before(0, retryable(), delivered=True) is None


def test_bad_policy_values() -> None:
    with pytest.raises(alloy.ConfigError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(alloy.ConfigError, match="base_delay"):
        RetryPolicy(base_delay=-0.1)
    assert RetryPolicy(base_delay=0).delay(0, retryable()) == 0
