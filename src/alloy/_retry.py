"""When and how long to wait before trying a failed model call again."""

from __future__ import annotations

import random
from typing import Any

import attrs
import trio

from ._errors import ConfigError, ProviderError

__all__ = ["RetryPolicy"]


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ConfigError(f"RetryPolicy.{attribute.name} must not be negative, got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """Retries with exponential backoff and full jitter.

    Retried: errors marked ``retryable`` (408, 409, 429, 500, 502, 503, 504, 529, connection
    failures and timeouts), never once any delta of the call was delivered. The wait before
    retry ``n`` (from 0) is uniform in ``[0, min(max_delay, base_delay * 2**n)]``, or the
    provider's ``retry-after`` when it gave one (up to ``max_retry_after``; longer → no retry).
    A wait that would pass the caller's deadline (``trio.fail_after`` around the run) is not
    started: the error is raised at once instead::

        Anthropic(model="claude-sonnet-4-6", retry=RetryPolicy(max_retries=5, base_delay=1.0))
    """

    max_retries: int = attrs.field(default=3, validator=_non_negative)
    base_delay: float = attrs.field(default=0.5, validator=_non_negative)
    max_delay: float = attrs.field(default=30.0, validator=_non_negative)
    max_retry_after: float = attrs.field(default=60.0, validator=_non_negative)
    random: random.Random = attrs.field(factory=random.Random, eq=False, repr=False)

    def delay(self, attempt: int, error: ProviderError) -> float | None:
        """Seconds to wait before retry ``attempt`` (0-based), or None: do not retry."""
        if not error.retryable or attempt >= self.max_retries:
            return None
        if error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.max_retry_after else None
        return self.random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))

    def wait_before(self, attempt: int, error: ProviderError, *, delivered: bool) -> float | None:
        """Seconds to wait before retry ``attempt`` of a call that failed with ``error``, or
        None: raise it. Never after output was ``delivered``, nor when the wait would pass the
        caller's Trio deadline (so it is called inside ``trio.run``)::

            wait = policy.wait_before(tries, error, delivered=False)
            if wait is None:
                raise error
            await trio.sleep(wait)
        """
        wait = None if delivered else self.delay(attempt, error)
        if wait is None or trio.current_time() + wait >= trio.current_effective_deadline():
            return None
        return wait
