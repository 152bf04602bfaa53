"""Retry policy: exponential backoff with full jitter, retry-after, deadlines, delivered output.

Waits are checked in Trio's virtual time (MockClock with autojump), never on the wall clock.
"""

from __future__ import annotations

import itertools
import random

import pytest
import trio

import alloy
from alloy._retry import RetryPolicy, call_with_retries


def failing(errors: list[alloy.ProviderError], result: str = "ok"):  # type: ignore[no-untyped-def]
    calls: list[float] = []

    async def attempt() -> str:
        calls.append(trio.current_time())
        if errors:
            raise errors.pop(0)
        return result

    return attempt, calls


def retryable(message: str = "overloaded", **kw: object) -> alloy.ProviderError:
    return alloy.OverloadedError(message, provider="test", retryable=True, **kw)  # type: ignore[arg-type]


async def test_retries_until_success(autojump_clock: trio.testing.MockClock) -> None:
    attempt, calls = failing([retryable(), retryable()])
    policy = RetryPolicy(max_retries=3, base_delay=1.0, random=random.Random(7))
    assert await call_with_retries(attempt, policy, lambda: False) == "ok"
    assert len(calls) == 3


async def test_gives_up_after_max_retries(autojump_clock: trio.testing.MockClock) -> None:
    attempt, calls = failing([retryable(str(i)) for i in range(10)])
    with pytest.raises(alloy.OverloadedError, match="3"):
        await call_with_retries(attempt, RetryPolicy(max_retries=3), lambda: False)
    assert len(calls) == 4


async def test_non_retryable_fails_at_once(autojump_clock: trio.testing.MockClock) -> None:
    error = alloy.AuthenticationError("bad key", provider="test")
    attempt, calls = failing([error])
    with pytest.raises(alloy.AuthenticationError):
        await call_with_retries(attempt, RetryPolicy(), lambda: False)
    assert len(calls) == 1


async def test_max_retries_zero_disables_retry(autojump_clock: trio.testing.MockClock) -> None:
    attempt, calls = failing([retryable()])
    with pytest.raises(alloy.OverloadedError):
        await call_with_retries(attempt, RetryPolicy(max_retries=0), lambda: False)
    assert len(calls) == 1


async def test_backoff_is_exponential_with_full_jitter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempt, calls = failing([retryable() for _ in range(4)])
    rng = random.Random(42)
    expected = random.Random(42)
    policy = RetryPolicy(max_retries=4, base_delay=1.0, max_delay=100.0, random=rng)
    await call_with_retries(attempt, policy, lambda: False)
    waits = [b - a for a, b in itertools.pairwise(calls)]
    bounds = [1.0, 2.0, 4.0, 8.0]
    assert waits == pytest.approx([expected.uniform(0, bound) for bound in bounds])
    assert all(0 <= wait <= bound for wait, bound in zip(waits, bounds, strict=True))


def test_jitter_varies() -> None:
    policy = RetryPolicy(base_delay=1.0)
    delays = {policy.delay(2, retryable()) for _ in range(20)}
    assert len(delays) > 1
    assert all(d is not None and 0 <= d <= 4.0 for d in delays)


def test_delay_is_capped_by_max_delay() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0, max_retries=50)
    assert all((policy.delay(30, retryable()) or 0) <= 5.0 for _ in range(50))


async def test_retry_after_is_honoured(autojump_clock: trio.testing.MockClock) -> None:
    attempt, calls = failing([retryable(retry_after=7.5)])
    await call_with_retries(attempt, RetryPolicy(), lambda: False)
    assert calls[1] - calls[0] == pytest.approx(7.5)


async def test_too_long_retry_after_is_not_waited(autojump_clock: trio.testing.MockClock) -> None:
    attempt, calls = failing([retryable(retry_after=3600)])
    with pytest.raises(alloy.OverloadedError):
        await call_with_retries(attempt, RetryPolicy(max_retry_after=60), lambda: False)
    assert len(calls) == 1


async def test_a_wait_past_the_callers_deadline_is_not_started(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempt, calls = failing([retryable(retry_after=10), retryable()])
    with trio.move_on_after(5):
        with pytest.raises(alloy.OverloadedError):
            await call_with_retries(attempt, RetryPolicy(), lambda: False)
        assert len(calls) == 1
        assert trio.current_time() - calls[0] < 5  # raised at once, not cancelled mid-wait


async def test_never_retried_once_output_was_delivered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempt, calls = failing([retryable()])
    with pytest.raises(alloy.OverloadedError):
        await call_with_retries(attempt, RetryPolicy(), lambda: True)
    assert len(calls) == 1


def test_bad_policy_values() -> None:
    with pytest.raises(alloy.ConfigError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(alloy.ConfigError, match="base_delay"):
        RetryPolicy(base_delay=-0.1)
    assert RetryPolicy(base_delay=0).delay(0, retryable()) == 0
