"""Retry waits, backoff, deadlines and the overall timeout of the real provider classes, on
Trio's MockClock (pytest-trio's ``autojump_clock``): no sockets, an in-memory
``httpx2.MockTransport`` answering in each wire format, and virtual time that jumps ahead
whenever every task sleeps, so the waits are checked exactly and cost nothing.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
import pytest
import trio
import trio.testing

import alloy
from alloy.providers import Anthropic, OpenAI, OpenAICompat, RetryPolicy
from alloy.testing import Reply, ScriptedProvider, text
from alloy.testing._wire_encode import encode, encode_error
from support import MODELS

FORMATS = ("anthropic", "openai", "chat")
URL = "http://llm.invalid"  # never resolved: the MockTransport answers
OVERLOADED = {"anthropic": 529, "openai": 503, "chat": 503}

Handler = Callable[[httpx2.Request], Awaitable[httpx2.Response]]
Item = Reply | tuple[int, dict[str, str]] | Handler


class Wire:
    """An in-memory provider endpoint: answers each request with the next item of its script,
    in ``format``, and notes the (virtual) time each request arrived.

    Items: a ``Reply`` (JSON, or SSE when the request streams); ``(status, headers)`` for an
    error reply in the format's shape; or an async function of the request.
    """

    def __init__(self, format: str, script: list[Item]) -> None:
        self.format = format
        self.script = list(script)
        self.times: list[float] = []
        self.bodies: list[dict[str, Any]] = []
        self.client = httpx2.AsyncClient(transport=httpx2.MockTransport(self), trust_env=False)

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.times.append(trio.current_time())
        body = json.loads(request.content)
        self.bodies.append(body)
        if not self.script:
            raise AssertionError(f"unexpected request {len(self.times)}")
        item = self.script.pop(0)
        if isinstance(item, Reply):
            stream = body.get("stream") is True
            content = encode(
                self.format,  # type: ignore[arg-type]
                item,
                model=body["model"],
                stream=stream,
                include_usage=bool(body.get("stream_options")),
            )
            kind = "text/event-stream" if stream else "application/json"
            return httpx2.Response(200, headers={"content-type": kind}, content=content)
        if isinstance(item, tuple):
            status, headers = item
            _, base, payload = encode_error(self.format, status, f"HTTP {status} from the mock")  # type: ignore[arg-type]
            merged = {**dict(base), "x-request-id": f"req_{len(self.times)}", **headers}
            return httpx2.Response(status, headers=merged, content=payload)
        return await item(request)

    def gaps(self) -> list[float]:
        return [later - earlier for earlier, later in zip(self.times, self.times[1:], strict=False)]


def provider_for(wire: Wire, **options: Any) -> Any:
    options.setdefault("api_key", "sk-test")
    kind = {"anthropic": Anthropic, "openai": OpenAI, "chat": OpenAICompat}[wire.format]
    provider = kind(api_url=URL, model=MODELS[wire.format], client=wire.client, **options)
    provider.wire = wire
    return provider


async def call(provider: Any, streaming: bool, **options: Any) -> alloy.Result:
    async with provider, provider.wire.client:
        if not streaming:
            return await alloy.run("hi", provider=provider, **options)
        async with alloy.stream("hi", provider=provider, **options) as run:
            async for _ in run:
                pass
        assert run.result is not None
        return run.result


async def fails(provider: Any, streaming: bool, **options: Any) -> alloy.AlloyError:
    with pytest.raises(alloy.AlloyError) as caught:
        await call(provider, streaming, **options)
    return caught.value


class Highest(random.Random):
    """Full jitter that always picks the top of its range: backoff waits become exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


def rate_limited(seconds: str, header: str = "retry-after") -> tuple[int, dict[str, str]]:
    return 429, {header: seconds}


both = pytest.mark.parametrize("streaming", [False, True], ids=["run", "stream"])
formats = pytest.mark.parametrize("format", FORMATS)


# -- retry-after ---------------------------------------------------------------------------------


@both
@formats
async def test_retry_after_is_waited_exactly(
    format: str, streaming: bool, autojump_clock: trio.testing.MockClock
) -> None:
    wire = Wire(format, [rate_limited("7"), rate_limited("1500", "retry-after-ms"), text("ok")])
    start = trio.current_time()
    result = await call(provider_for(wire), streaming)
    assert result.text == "ok"
    assert wire.times[0] == start
    assert wire.gaps() == pytest.approx([7.0, 1.5])
    assert wire.bodies[0] == wire.bodies[1] == wire.bodies[2]


@both
async def test_retry_after_longer_than_allowed_is_not_waited(
    streaming: bool, autojump_clock: trio.testing.MockClock
) -> None:
    wire = Wire("anthropic", [rate_limited("120"), text("never")])
    start = trio.current_time()
    exc = await fails(provider_for(wire, retry=RetryPolicy(max_retry_after=60)), streaming)
    assert type(exc) is alloy.RateLimitError
    assert exc.retry_after == 120
    assert len(wire.times) == 1
    assert trio.current_time() == start  # raised at once


@formats
async def test_overloaded_with_retry_after_waits_it(
    format: str, autojump_clock: trio.testing.MockClock
) -> None:
    wire = Wire(format, [(OVERLOADED[format], {"retry-after": "3"}), text("ok")])
    assert (await call(provider_for(wire), False)).text == "ok"
    assert wire.gaps() == pytest.approx([3.0])


# -- backoff -------------------------------------------------------------------------------------


@both
@formats
async def test_exponential_backoff_is_capped(
    format: str, streaming: bool, autojump_clock: trio.testing.MockClock
) -> None:
    wire = Wire(format, [(503, {})] * 4 + [text("ok")])
    retry = RetryPolicy(max_retries=4, base_delay=1.0, max_delay=3.0, random=Highest())
    assert (await call(provider_for(wire, retry=retry), streaming)).text == "ok"
    assert wire.gaps() == pytest.approx([1.0, 2.0, 3.0, 3.0])


async def test_full_jitter_stays_in_range(autojump_clock: trio.testing.MockClock) -> None:
    wire = Wire("chat", [(500, {})] * 6 + [text("ok")])
    retry = RetryPolicy(max_retries=6, base_delay=0.5, max_delay=4.0, random=random.Random(7))
    assert (await call(provider_for(wire, retry=retry), False)).text == "ok"
    gaps = wire.gaps()
    assert len(gaps) == 6
    for attempt, gap in enumerate(gaps):
        assert 0 <= gap <= min(4.0, 0.5 * 2**attempt) + 1e-9
    assert len(set(gaps)) > 1  # jittered, not constant


@both
async def test_retries_exhausted_after_max_retries(
    streaming: bool, autojump_clock: trio.testing.MockClock
) -> None:
    wire = Wire("openai", [(503, {})] * 3 + [text("never")])
    retry = RetryPolicy(max_retries=2, base_delay=1.0, random=Highest())
    exc = await fails(provider_for(wire, retry=retry), streaming)
    assert isinstance(exc, alloy.ProviderError) and exc.status == 503
    assert exc.request_id == "req_3"
    assert wire.gaps() == pytest.approx([1.0, 2.0])


@pytest.mark.parametrize("status", [401, 403, 404, 400, 422])
async def test_refusals_are_never_retried(
    status: int, autojump_clock: trio.testing.MockClock
) -> None:
    wire = Wire("anthropic", [(status, {"retry-after": "1"}), text("never")])
    start = trio.current_time()
    exc = await fails(provider_for(wire), False)
    assert isinstance(exc, alloy.ProviderError) and exc.status == status
    assert len(wire.times) == 1 and trio.current_time() == start


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
async def test_every_retryable_status_is_retried(
    status: int, autojump_clock: trio.testing.MockClock
) -> None:
    wire = Wire("anthropic", [(status, {}), text("ok")])
    assert (await call(provider_for(wire), False)).text == "ok"
    assert len(wire.times) == 2


async def test_connection_errors_are_retried(autojump_clock: trio.testing.MockClock) -> None:
    async def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    wire = Wire("chat", [refuse, refuse, text("ok")])
    retry = RetryPolicy(base_delay=1.0, random=Highest())
    assert (await call(provider_for(wire, retry=retry), True)).text == "ok"
    assert wire.gaps() == pytest.approx([1.0, 2.0])


# -- deadlines -----------------------------------------------------------------------------------


@both
@formats
async def test_a_wait_past_the_callers_deadline_raises_at_once(
    format: str, streaming: bool, autojump_clock: trio.testing.MockClock
) -> None:
    wire = Wire(format, [rate_limited("10"), text("never")])
    start = trio.current_time()
    with trio.move_on_after(5) as scope:
        exc = await fails(provider_for(wire), streaming)
    assert not scope.cancelled_caught  # the error came out, not a cancellation mid-wait
    assert type(exc) is alloy.RateLimitError and exc.retry_after == 10
    assert trio.current_time() == start
    assert len(wire.times) == 1
    assert exc.result is not None and exc.result.status == "error"


async def test_a_wait_within_the_deadline_is_taken(autojump_clock: trio.testing.MockClock) -> None:
    wire = Wire("anthropic", [rate_limited("4"), text("ok")])
    with trio.fail_after(5):
        assert (await call(provider_for(wire), False)).text == "ok"
    assert wire.gaps() == pytest.approx([4.0])


async def test_backoff_stops_at_the_deadline(autojump_clock: trio.testing.MockClock) -> None:
    # Waits of 4, then 8: the second would end past the deadline at 10.
    wire = Wire("chat", [(503, {})] * 5)
    retry = RetryPolicy(max_retries=4, base_delay=4.0, max_delay=100, random=Highest())
    start = trio.current_time()
    with trio.move_on_after(10) as scope:
        exc = await fails(provider_for(wire, retry=retry), False)
    assert not scope.cancelled_caught
    assert isinstance(exc, alloy.ServerError) and exc.status == 503
    assert [t - start for t in wire.times] == pytest.approx([0.0, 4.0])
    assert trio.current_time() - start == pytest.approx(4.0)


async def test_the_provider_timeout_is_a_deadline_for_retry_waits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    wire = Wire("anthropic", [rate_limited("20")] * 4)
    start = trio.current_time()
    exc = await fails(provider_for(wire, timeout=50), False)
    # Attempts at 0, 20 and 40; a wait to 60 would pass the 50 s timeout: the 429 comes out.
    assert type(exc) is alloy.RateLimitError
    assert [t - start for t in wire.times] == pytest.approx([0.0, 20.0, 40.0])


@both
@formats
async def test_the_overall_timeout_ends_a_call_that_never_answers(
    format: str, streaming: bool, autojump_clock: trio.testing.MockClock
) -> None:
    async def never(request: httpx2.Request) -> httpx2.Response:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    wire = Wire(format, [never])
    start = trio.current_time()
    exc = await fails(provider_for(wire, timeout=30), streaming)
    assert type(exc) is alloy.ProviderTimeout
    assert trio.current_time() - start == pytest.approx(30.0)
    assert "30" in str(exc)


async def test_the_overall_timeout_covers_every_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def slow_failure(request: httpx2.Request) -> httpx2.Response:
        await trio.sleep(15)
        _, headers, body = encode_error("openai", 503, "down")
        return httpx2.Response(503, headers=headers, content=body)

    wire = Wire("openai", [slow_failure] * 5)
    start = trio.current_time()
    exc = await fails(provider_for(wire, timeout=40, retry=RetryPolicy(base_delay=0)), False)
    assert type(exc) is alloy.ProviderTimeout
    assert trio.current_time() - start == pytest.approx(40.0)
    assert len(wire.times) == 3  # at 0, 15, 30; the third is cut off at 40


async def test_no_overall_timeout_when_none(autojump_clock: trio.testing.MockClock) -> None:
    async def very_slow(request: httpx2.Request) -> httpx2.Response:
        await trio.sleep(10_000)
        return httpx2.Response(
            200, headers={"content-type": "application/json"}, content=encode("chat", text("late"))
        )

    wire = Wire("chat", [very_slow])
    assert (await call(provider_for(wire, timeout=None), False)).text == "late"


async def test_cancelling_during_a_retry_wait_cancels_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    wire = Wire("anthropic", [rate_limited("30"), text("never")])
    provider = provider_for(wire)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:

        async def cancel_soon(scope: trio.CancelScope) -> None:
            await trio.sleep(3)
            scope.cancel()

        with trio.CancelScope() as scope:
            nursery.start_soon(cancel_soon, scope)
            await call(provider, False)
    assert scope.cancelled_caught
    assert trio.current_time() - start == pytest.approx(3.0)
    assert len(wire.times) == 1


# -- fallbacks, on the mock clock ----------------------------------------------------------------


@both
async def test_fallback_comes_right_after_the_last_retry(
    streaming: bool, autojump_clock: trio.testing.MockClock
) -> None:
    backup = ScriptedProvider([text("from backup")])
    wire = Wire("anthropic", [(529, {})] * 3)
    retry = RetryPolicy(max_retries=2, base_delay=1.0, random=Highest())
    start = trio.current_time()
    result = await call(provider_for(wire, retry=retry, fallbacks=[backup]), streaming)
    assert result.text == "from backup"
    assert trio.current_time() - start == pytest.approx(3.0)  # 1 + 2, then no wait
    assert len(backup.requests) == 1


@both
async def test_a_timed_out_primary_falls_back(
    streaming: bool, autojump_clock: trio.testing.MockClock
) -> None:
    async def never(request: httpx2.Request) -> httpx2.Response:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    backup = ScriptedProvider([text("from backup")])
    wire = Wire("openai", [never])
    start = trio.current_time()
    result = await call(provider_for(wire, timeout=30, fallbacks=[backup]), streaming)
    assert result.text == "from backup"
    assert trio.current_time() - start == pytest.approx(30.0)


async def test_policy_rejects_nonsense() -> None:
    with pytest.raises(alloy.ConfigError):
        RetryPolicy(max_retries=-1)
    with pytest.raises(alloy.ConfigError):
        Anthropic(model="m", api_key="k", timeout=0)
    with pytest.raises(alloy.ConfigError):
        OpenAI(model="m", api_key="k", read_timeout=-1)
    with pytest.raises(alloy.ConfigError):
        OpenAICompat(api_url=URL, model="m", timeout=math.nan)
