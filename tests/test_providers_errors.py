"""The real provider classes failing over real loopback HTTP, against ``WireServer``.

HTTP errors mapped to typed errors (with status, request id, body and rate-limit headers),
retries of what may be retried and nothing else, in-stream errors after partial text, streams
cut, stalled or malformed, the idle and overall timeouts, fallback providers, and cancelling a
run in the middle of a stream. Real sockets, so the real clock: retries here wait 0 seconds
(``RetryPolicy(base_delay=0)``, ``retry-after: 0``); the waits themselves are tested with Trio's
MockClock in ``test_providers_timing.py``. Nothing here asserts on wall-clock time.
"""

from __future__ import annotations

import gc
import warnings
from typing import Any

import httpx2
import pytest
import trio

import alloy
from alloy.providers import OpenAICompat, RetryPolicy
from alloy.testing import (
    ScriptedProvider,
    WireServer,
    cut,
    error,
    http_error,
    raw,
    stall,
    stream_error,
    text,
    tool_call,
)
from alloy.testing._wire_encode import encode_stream
from support import MODELS, count_tasks, make_provider, provider_at

FORMATS = ("anthropic", "openai", "chat")
NAMES = {"anthropic": "anthropic", "openai": "openai", "chat": "chat"}
# The status each format uses when it is overloaded.
OVERLOADED = {"anthropic": 529, "openai": 503, "chat": 503}
NO_WAIT = RetryPolicy(base_delay=0)
NO_RETRY = RetryPolicy(max_retries=0)
LIMIT = 10  # seconds: generous, only there so that a hang fails instead of blocking the suite
LONG = "The quick brown fox jumps over the lazy dog. " * 3


async def drive(streaming: bool, **options: Any) -> tuple[alloy.Result, list[alloy.Event]]:
    """``alloy.stream`` (events collected, even when it fails) or ``alloy.run``."""
    if not streaming:
        return await alloy.run("hi", **options), []
    events: list[alloy.Event] = []
    async with alloy.stream("hi", **options) as run:
        async for event in run:
            events.append(event)
    assert run.result is not None
    return run.result, events


async def failure(
    streaming: bool, **options: Any
) -> tuple[alloy.AlloyError, list[alloy.Event], alloy.Run | None]:
    """The error a run raises, the events it streamed first, and the streamed ``Run``."""
    events: list[alloy.Event] = []
    handle: alloy.Run | None = None
    try:
        if streaming:
            async with alloy.stream("hi", **options) as handle:
                async for event in handle:
                    events.append(event)
        else:
            await alloy.run("hi", **options)
    except alloy.AlloyError as exc:
        return exc, events, handle
    raise AssertionError("the run did not fail")


def streamed_text(events: list[alloy.Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, alloy.TextDelta))


both = pytest.mark.parametrize("streaming", [False, True], ids=["run", "stream"])
formats = pytest.mark.parametrize("format", FORMATS)


# -- HTTP errors ---------------------------------------------------------------------------------


@both
@formats
async def test_401_is_an_authentication_error_not_retried(format: str, streaming: bool) -> None:
    script = [http_error(401, "invalid x-api-key"), text("never")]
    with trio.fail_after(LIMIT):
        async with WireServer(script, format=format) as server:
            async with provider_at(format, server.url, retry=NO_WAIT) as provider:
                exc, events, _ = await failure(streaming, provider=provider)
            assert len(server.requests) == 1
            assert server.remaining == 1
    assert type(exc) is alloy.AuthenticationError
    assert exc.status == 401
    assert exc.provider == NAMES[format]
    assert exc.retryable is False
    assert exc.request_id == "req_wire_1"
    assert exc.body is not None and "invalid x-api-key" in exc.body
    assert "invalid x-api-key" in str(exc)
    assert exc.result is not None and exc.result.status == "error"
    assert [m.role for m in exc.result.messages] == ["user"]
    assert streamed_text(events) == ""


@both
@formats
async def test_context_length_exceeded(format: str, streaming: bool) -> None:
    if format == "anthropic":
        item = http_error(400, "prompt is too long: 210000 tokens > 200000 maximum")
    else:
        item = http_error(
            400,
            "This model's maximum context length is 128000 tokens.",
            error_type="invalid_request_error",
            code="context_length_exceeded",
        )
    with trio.fail_after(LIMIT):
        async with WireServer([item, text("never")], format=format) as server:
            async with provider_at(format, server.url, retry=NO_WAIT) as provider:
                exc, _, _ = await failure(streaming, provider=provider)
            assert len(server.requests) == 1
    assert isinstance(exc, alloy.ContextLengthExceeded)
    assert isinstance(exc, alloy.InvalidRequestError)
    assert exc.status == 400 and not exc.retryable


@both
@formats
async def test_plain_400_is_an_invalid_request(format: str, streaming: bool) -> None:
    with trio.fail_after(LIMIT):
        async with WireServer([http_error(400, "tools[0]: bad schema"), "x"], format=format) as s:
            async with provider_at(format, s.url, retry=NO_WAIT) as provider:
                exc, _, _ = await failure(streaming, provider=provider)
            assert len(s.requests) == 1
    assert type(exc) is alloy.InvalidRequestError
    assert "tools[0]: bad schema" in str(exc)


async def test_wrong_path_is_not_found() -> None:
    with trio.fail_after(LIMIT):
        async with WireServer(["never"], format="chat") as server:
            async with httpx2.AsyncClient(trust_env=False) as client:
                provider = OpenAICompat(
                    api_url=server.url, chat_path="/v1/chat", model="m", client=client
                )
                exc, _, _ = await failure(False, provider=provider)
            assert server.remaining == 1
    assert type(exc) is alloy.NotFoundError and exc.status == 404


@both
@formats
async def test_429_with_retry_after_is_retried(format: str, streaming: bool) -> None:
    script = [http_error(429, "Slow down", headers={"retry-after": "0"}), text("made it")]
    with trio.fail_after(LIMIT):
        async with WireServer(script, format=format) as server:
            # No base_delay override: the 0 s retry-after is what makes it quick.
            async with provider_at(format, server.url) as provider:
                result, events = await drive(streaming, provider=provider)
            assert len(server.requests) == 2
            assert server.requests[0].body == server.requests[1].body
    assert result.text == "made it"
    assert result.turns == 1
    if streaming:
        assert streamed_text(events) == "made it"


@both
@formats
async def test_overloaded_then_server_error_are_retried(format: str, streaming: bool) -> None:
    script = [
        http_error(OVERLOADED[format], "Overloaded"),
        http_error(500, "Internal error"),
        http_error(502, "Bad gateway"),
        text("finally"),
    ]
    with trio.fail_after(LIMIT):
        async with WireServer(script, format=format) as server:
            async with provider_at(format, server.url, retry=NO_WAIT) as provider:
                result, events = await drive(streaming, provider=provider)
            assert len(server.requests) == 4
            assert server.connections == 1  # error bodies were read: the connection was reused
    assert result.text == "finally"
    if streaming:
        assert streamed_text(events) == "finally"


@both
@formats
async def test_retries_exhausted_raise_the_last_typed_error(format: str, streaming: bool) -> None:
    status = OVERLOADED[format]
    script = [http_error(status, f"Overloaded, try {n}") for n in range(1, 4)] + ["never"]
    retry = RetryPolicy(max_retries=2, base_delay=0)
    with trio.fail_after(LIMIT):
        async with WireServer(script, format=format) as server:
            async with provider_at(format, server.url, retry=retry) as provider:
                exc, events, _ = await failure(streaming, provider=provider)
            assert len(server.requests) == 3
            assert server.remaining == 1
    assert isinstance(exc, alloy.OverloadedError | alloy.ServerError)
    assert exc.retryable
    assert exc.status == status
    assert exc.request_id == "req_wire_3"  # the server's header of the last attempt
    assert exc.body is not None and "Overloaded, try 3" in exc.body
    assert exc.provider == NAMES[format]
    assert streamed_text(events) == ""


@both
@formats
async def test_rate_limit_headers_are_on_the_error(format: str, streaming: bool) -> None:
    if format == "anthropic":
        limits = {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:30Z",
            "anthropic-ratelimit-tokens-remaining": "1200",
        }
    else:
        limits = {
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "120ms",
            "x-ratelimit-remaining-tokens": "1200",
        }
    headers = {**limits, "retry-after-ms": "1500", "retry-after": "2"}
    with trio.fail_after(LIMIT):
        async with (
            WireServer([http_error(429, "Slow down", headers=headers)], format=format) as s,
            provider_at(format, s.url, retry=NO_RETRY) as provider,
        ):
            exc, _, _ = await failure(streaming, provider=provider)
    assert type(exc) is alloy.RateLimitError
    assert exc.retryable
    assert dict(exc.rate_limits) == limits
    assert exc.retry_after == 1.5  # retry-after-ms wins over retry-after


@both
async def test_quota_exhausted_429_is_not_retried(streaming: bool) -> None:
    item = http_error(
        429,
        "You exceeded your current quota, please check your plan and billing details.",
        error_type="insufficient_quota",
        code="insufficient_quota",
    )
    with trio.fail_after(LIMIT):
        async with WireServer([item, "never"], format="openai") as server:
            async with provider_at("openai", server.url, retry=NO_WAIT) as provider:
                exc, _, _ = await failure(streaming, provider=provider)
            assert len(server.requests) == 1
    assert type(exc) is alloy.RateLimitError and not exc.retryable


# -- errors inside a stream ----------------------------------------------------------------------


@formats
async def test_stream_error_after_partial_text_is_typed_and_not_retried(format: str) -> None:
    script = [
        stream_error(text(LONG), "Overloaded", error_type="overloaded_error"),
        text("never sent"),
    ]
    with trio.fail_after(LIMIT):
        async with WireServer(script, format=format, chunk_size=5) as server:
            async with provider_at(format, server.url, retry=NO_WAIT) as provider:
                exc, events, handle = await failure(True, provider=provider)
            assert len(server.requests) == 1
            assert server.remaining == 1
    assert isinstance(exc, alloy.OverloadedError)
    assert exc.provider == NAMES[format]
    assert "Overloaded" in str(exc)
    # Every delta arrived exactly once: the call was not tried again after it spoke.
    assert streamed_text(events) == LONG
    assert sum(isinstance(e, alloy.TextDelta) for e in events) > 10
    assert not any(isinstance(e, alloy.TurnCompleted | alloy.RunCompleted) for e in events)
    assert exc.result is not None and exc.result.status == "error"
    assert handle is not None and handle.result is exc.result


@formats
async def test_stream_error_non_streamed_request_gets_http_500(format: str) -> None:
    script = [stream_error(text("x"), "boom", error_type="api_error"), text("second try")]
    with trio.fail_after(LIMIT):
        async with WireServer(script, format=format) as server:
            async with provider_at(format, server.url, retry=NO_WAIT) as provider:
                result = await alloy.run("hi", provider=provider)
            assert len(server.requests) == 2  # a 500 before any output is retried
    assert result.text == "second try"


@formats
async def test_stream_error_keeps_the_partial_text_in_the_result(format: str) -> None:
    script = [stream_error(text(LONG), "Overloaded", error_type="overloaded_error")]
    with trio.fail_after(LIMIT):
        async with (
            WireServer(script, format=format, chunk_size=5) as server,
            provider_at(format, server.url, retry=NO_WAIT) as provider,
        ):
            exc, _, _ = await failure(True, provider=provider)
    assert exc.result is not None
    assert exc.result.text == LONG
    assert exc.result.messages[-1].role == "assistant"


@formats
async def test_stream_error_carries_the_request_id(format: str) -> None:
    script = [stream_error(text("partial"), "Overloaded", error_type="overloaded_error")]
    with trio.fail_after(LIMIT):
        async with (
            WireServer(script, format=format) as server,
            provider_at(format, server.url, retry=NO_WAIT) as provider,
        ):
            exc, _, _ = await failure(True, provider=provider)
    assert isinstance(exc, alloy.ProviderError)
    assert exc.request_id == "req_wire_1"


async def test_leaving_a_stream_early_closes_its_generators() -> None:
    """An error raised while decoding (not inside the socket read) leaves the stream early."""
    script = [stream_error(text(LONG), "Overloaded", error_type="overloaded_error")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with trio.fail_after(LIMIT):
            async with (
                WireServer(script, format="anthropic", chunk_size=5) as server,
                provider_at("anthropic", server.url, retry=NO_WAIT) as provider,
            ):
                await failure(True, provider=provider)
        gc.collect()
        await trio.lowlevel.checkpoint()
    abandoned = [
        str(w.message)
        for w in caught
        if issubclass(w.category, ResourceWarning)
        and "Async generator" in str(w.message)
        # httpx2's own leak (pydantic/httpx2#1036) is not ours to fix
        and "PoolByteStream" not in str(w.message)
    ]
    assert abandoned == []


@formats
async def test_stream_cut_after_deltas_is_an_error_not_retried(format: str) -> None:
    body = encode_stream(format, text(LONG), model=MODELS[format], chunk_size=5).body
    script = [cut(text(LONG), after_bytes=len(body) * 2 // 3), text("never sent")]
    with trio.fail_after(LIMIT):
        async with WireServer(script, format=format, chunk_size=5) as server:
            async with provider_at(format, server.url, retry=NO_WAIT) as provider:
                exc, events, _ = await failure(True, provider=provider)
            assert len(server.requests) == 1
    assert isinstance(exc, alloy.ProtocolError | alloy.ProviderConnectionError)
    partial = streamed_text(events)
    assert partial and LONG.startswith(partial) and partial != LONG
    assert not any(isinstance(e, alloy.TurnCompleted) for e in events)


@both
@formats
async def test_cut_before_any_output_is_retried(format: str, streaming: bool) -> None:
    script = [cut(text(LONG), after_bytes=0), text("second try")]
    with trio.fail_after(LIMIT):
        async with WireServer(script, format=format) as server:
            async with provider_at(format, server.url, retry=NO_WAIT) as provider:
                result, events = await drive(streaming, provider=provider)
            assert len(server.requests) == 2
            assert server.connections == 2  # the cut connection was not reused
    assert result.text == "second try"
    if streaming:
        assert streamed_text(events) == "second try"


@both
@formats
async def test_cut_json_body_is_a_connection_error(format: str, streaming: bool) -> None:
    with trio.fail_after(LIMIT):
        async with (
            WireServer([cut(text(LONG))], format=format) as server,
            provider_at(format, server.url, retry=NO_RETRY) as provider,
        ):
            exc, _, _ = await failure(streaming, provider=provider)
    assert isinstance(exc, alloy.ProtocolError | alloy.ProviderConnectionError)


@formats
async def test_stream_that_ends_early_without_its_end_marker_is_an_error(format: str) -> None:
    """A complete HTTP body whose SSE stream lacks its end: never a silent success."""
    stream = encode_stream(format, text(LONG), model=MODELS[format], chunk_size=5)
    body = b"".join(stream.content)
    item = raw(200, body, {"content-type": "text/event-stream"})
    with trio.fail_after(LIMIT):
        async with WireServer([item, "never sent"], format=format) as server:
            async with provider_at(format, server.url, retry=NO_WAIT) as provider:
                exc, events, _ = await failure(True, provider=provider)
            assert len(server.requests) == 1
    assert isinstance(exc, alloy.ProtocolError)
    assert streamed_text(events) == LONG


@both
@formats
async def test_malformed_json_is_a_protocol_error_not_retried(format: str, streaming: bool) -> None:
    if streaming:
        item = raw(200, b"data: {not json}\n\n", {"content-type": "text/event-stream"})
    else:
        item = raw(200, b'{"content": [', {"content-type": "application/json"})
    with trio.fail_after(LIMIT):
        async with WireServer([item, "never sent"], format=format) as server:
            async with provider_at(format, server.url, retry=NO_WAIT) as provider:
                exc, _, _ = await failure(streaming, provider=provider)
            assert len(server.requests) == 1
    assert type(exc) is alloy.ProtocolError
    assert exc.provider == NAMES[format]
    assert not exc.retryable


@both
async def test_scripted_protocol_error_and_dropped_connection(streaming: bool) -> None:
    """``error(ProtocolError)`` sends a malformed body; ``error(ProviderConnectionError)`` drops
    the connection without an answer (retryable: the retry answers)."""
    script = [
        error(alloy.ProviderConnectionError("dropped")),
        "after the drop",
        error(alloy.ProtocolError("garbage")),
    ]
    with trio.fail_after(LIMIT):
        async with (
            WireServer(script, format="anthropic") as server,
            provider_at("anthropic", server.url, retry=NO_WAIT) as provider,
        ):
            result, _ = await drive(streaming, provider=provider)
            exc, _, _ = await failure(streaming, provider=provider)
    assert result.text == "after the drop"
    assert type(exc) is alloy.ProtocolError


# -- timeouts (real clock: short timeouts, generous limits, no timing assertion) -----------------


@formats
async def test_stalled_stream_hits_the_idle_read_timeout(format: str) -> None:
    body = encode_stream(format, text(LONG), model=MODELS[format], chunk_size=5).body
    script = [stall(text(LONG), after_bytes=len(body) // 2), "never sent"]
    with trio.fail_after(LIMIT):
        async with WireServer(script, format=format, chunk_size=5) as server:
            async with provider_at(format, server.url, read_timeout=0.5, retry=NO_WAIT) as provider:
                exc, events, _ = await failure(True, provider=provider)
            assert len(server.requests) == 1  # deltas were delivered: not retried
    assert type(exc) is alloy.ProviderTimeout
    assert streamed_text(events) and streamed_text(events) != LONG


@formats
async def test_stalled_json_reply_hits_the_idle_read_timeout(format: str) -> None:
    with trio.fail_after(LIMIT):
        async with (
            WireServer([stall(text(LONG), after_bytes=20)], format=format) as server,
            provider_at(format, server.url, read_timeout=0.5, retry=NO_RETRY) as provider,
        ):
            exc, _, _ = await failure(False, provider=provider)
    assert type(exc) is alloy.ProviderTimeout
    assert exc.retryable


@both
async def test_a_stall_before_any_output_is_retried(streaming: bool) -> None:
    script = [stall(text("slow"), after_bytes=0), text("fresh connection")]
    with trio.fail_after(LIMIT):
        async with WireServer(script, format="chat") as server:
            async with provider_at("chat", server.url, read_timeout=0.5, retry=NO_WAIT) as p:
                result, _ = await drive(streaming, provider=p)
            assert server.connections == 2
    assert result.text == "fresh connection"


@both
@formats
async def test_overall_timeout_is_a_provider_timeout(format: str, streaming: bool) -> None:
    # Streamed, the server trickles a chunk every 0.1 s: never idle for read_timeout, never
    # done in time. Not streamed, it sends part of the body and goes quiet for longer than the
    # overall timeout but less than read_timeout.
    first = text("x" * 200) if streaming else stall(text("x" * 200), after_bytes=10)
    with trio.fail_after(LIMIT):
        async with WireServer(
            [first, "never sent"], format=format, chunk_size=1, chunk_delay=0.1
        ) as server:
            async with provider_at(
                format, server.url, read_timeout=5, timeout=1.5, retry=NO_WAIT
            ) as provider:
                exc, events, _ = await failure(streaming, provider=provider)
            assert server.remaining == 1  # the deadline covers the whole call: no retry
    assert type(exc) is alloy.ProviderTimeout
    assert "1.5" in str(exc)
    if streaming:
        assert 0 < len(streamed_text(events)) < 200


# -- fallbacks -----------------------------------------------------------------------------------


@both
@formats
async def test_unavailable_primary_falls_back(format: str, streaming: bool) -> None:
    backup = ScriptedProvider([text("from the backup")])
    with trio.fail_after(LIMIT):
        async with WireServer([http_error(503, "Unavailable")], format=format) as server:
            async with provider_at(
                format, server.url, retry=NO_RETRY, fallbacks=[backup]
            ) as provider:
                result, events = await drive(streaming, provider=provider, system_prompt="S")
            assert len(server.requests) == 1
    assert result.text == "from the backup"
    assert len(backup.requests) == 1
    assert backup.requests[0].system_prompt == "S"
    assert backup.requests[0].messages[-1].text == "hi"
    if streaming:
        assert streamed_text(events) == "from the backup"


@both
async def test_fallback_to_another_wire_format(streaming: bool, echo: Any) -> None:
    """Anthropic down, OpenAI up: the whole tool loop continues on the fallback."""
    with trio.fail_after(LIMIT):
        async with (
            WireServer([http_error(529, "Overloaded")] * 2, format="anthropic") as primary,
            WireServer([tool_call("echo", {"text": "a"}), text("done")], format="openai") as other,
            httpx2.AsyncClient(trust_env=False) as client,
        ):
            backup = make_provider("openai", other.url, client=client)
            provider = make_provider(
                "anthropic", primary.url, client=client, retry=NO_RETRY, fallbacks=[backup]
            )
            result, _ = await drive(streaming, provider=provider, tools=[echo])
    assert result.text == "done"
    assert len(primary.requests) == 2  # each turn tried the primary first
    outputs = [
        i for i in other.requests[1].body["input"] if i.get("type") == "function_call_output"
    ]
    assert [(o["call_id"], o["output"]) for o in outputs] == [("call_1", "Echo: a")]


@both
async def test_dropped_connection_falls_back(streaming: bool) -> None:
    backup = ScriptedProvider([text("backup")])
    with trio.fail_after(LIMIT):
        async with (
            WireServer([error(alloy.ProviderConnectionError("x"))], format="chat") as s,
            provider_at("chat", s.url, retry=NO_RETRY, fallbacks=[backup]) as p,
        ):
            result, _ = await drive(streaming, provider=p)
    assert result.text == "backup"


@both
@pytest.mark.parametrize(
    "item",
    [http_error(401, "bad key"), http_error(400, "bad request"), http_error(403, "forbidden")],
    ids=["401", "400", "403"],
)
async def test_refused_requests_do_not_fall_back(item: Any, streaming: bool) -> None:
    backup = ScriptedProvider([text("never")])
    with trio.fail_after(LIMIT):
        async with (
            WireServer([item], format="anthropic") as server,
            provider_at("anthropic", server.url, retry=NO_WAIT, fallbacks=[backup]) as provider,
        ):
            exc, _, _ = await failure(streaming, provider=provider)
    assert isinstance(exc, alloy.ProviderError) and exc.status == item.status
    assert backup.requests == []


@formats
async def test_a_partial_stream_error_does_not_fall_back(format: str) -> None:
    backup = ScriptedProvider([text("never")])
    script = [stream_error(text(LONG), "Overloaded", error_type="overloaded_error")]
    with trio.fail_after(LIMIT):
        async with (
            WireServer(script, format=format, chunk_size=5) as server,
            provider_at(format, server.url, retry=NO_WAIT, fallbacks=[backup]) as provider,
        ):
            exc, events, _ = await failure(True, provider=provider)
    assert isinstance(exc, alloy.OverloadedError)
    assert backup.requests == []
    assert streamed_text(events) == LONG  # nothing from the backup was mixed in


async def test_a_fallback_that_fails_mid_stream_is_the_last_one_tried() -> None:
    broken = stream_error(text("partial from the first backup. "), "Overloaded")
    second = ScriptedProvider([text("whole answer from the second backup")])
    with trio.fail_after(LIMIT):
        async with (
            WireServer([http_error(503, "primary down")], format="anthropic") as primary,
            WireServer([broken], format="openai") as backup_server,
            httpx2.AsyncClient(trust_env=False) as client,
        ):
            first = make_provider("openai", backup_server.url, client=client)
            provider = make_provider(
                "anthropic", primary.url, client=client, retry=NO_RETRY, fallbacks=[first, second]
            )
            exc, events, _ = await failure(True, provider=provider)
    assert isinstance(exc, alloy.OverloadedError)
    assert streamed_text(events) == "partial from the first backup. "
    assert second.requests == []


async def test_every_fallback_failing_raises_the_last_error() -> None:
    first = ScriptedProvider([error(alloy.OverloadedError("backup 1 overloaded", retryable=True))])
    second = ScriptedProvider([error(alloy.ServerError("backup 2 down", retryable=True))])
    with trio.fail_after(LIMIT):
        async with (
            WireServer([http_error(503, "primary down")], format="chat") as server,
            provider_at("chat", server.url, retry=NO_RETRY, fallbacks=[first, second]) as provider,
        ):
            exc, _, _ = await failure(False, provider=provider)
    assert type(exc) is alloy.ServerError and "backup 2 down" in str(exc)
    assert len(first.requests) == len(second.requests) == 1


# -- cancellation --------------------------------------------------------------------------------


async def settle_to(count: int) -> None:
    """Assert the task count comes back to ``count``; the server's connection task takes a few
    scheduling steps to end after it noticed the disconnect, hence the short grace."""
    with trio.move_on_after(5):  # generous: a loaded machine schedules slowly
        while count_tasks() != count:
            await trio.sleep(0.01)
    assert count_tasks() == count


class WatchedServer(WireServer):
    """A ``WireServer`` that counts the connections it has finished serving (the client closed
    them, or they failed): with keep-alive, a connection ends only when the client goes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.finished = 0

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        try:
            await super()._serve_connection(stream)
        finally:
            self.finished += 1


async def wait_for(condition: Any) -> None:
    while not condition():
        await trio.sleep(0.01)


@formats
async def test_break_mid_stream_closes_the_http_stream(format: str) -> None:
    # 2000 one-character chunks, 20 ms apart: 40 s if the client read it all.
    script = [text("y" * 2000), text("next run")]
    with trio.fail_after(LIMIT):
        async with (
            WatchedServer(script, format=format, chunk_size=1, chunk_delay=0.02) as server,
            provider_at(format, server.url) as provider,
        ):
            before = count_tasks()
            seen: list[str] = []
            async with alloy.stream("go", provider=provider) as run:
                async for event in run:
                    if isinstance(event, alloy.TextDelta):
                        seen.append(event.text)
                        break
            # The client closed its connection: the server notices the disconnect
            # while the provider (and its pool) is still open.
            await wait_for(lambda: server.finished == 1)
            await settle_to(before)
            assert server.errors == []
            # The next run needs a new connection: the broken one was not pooled.
            again = await alloy.run("again", provider=provider)
            assert again.text == "next run"
            assert server.connections == 2
    assert run.result is not None
    assert run.result.status == "cancelled"
    assert run.result.text == "".join(seen) == "y"


@formats
async def test_cancelling_the_caller_mid_stream_closes_the_http_stream(format: str) -> None:
    script = [text("z" * 2000)]
    with trio.fail_after(LIMIT):
        async with (
            WatchedServer(script, format=format, chunk_size=1, chunk_delay=0.02) as server,
            provider_at(format, server.url) as provider,
        ):
            before = count_tasks()
            first = trio.Event()
            with trio.CancelScope() as scope:
                async with alloy.stream("go", provider=provider) as run:
                    async for event in run:
                        if isinstance(event, alloy.TextDelta) and not first.is_set():
                            first.set()
                            scope.cancel()
            assert scope.cancelled_caught
            await wait_for(lambda: server.finished == 1)
            await settle_to(before)
    assert run.result is not None and run.result.status == "cancelled"
    assert run.result.text.startswith("z")


@formats
async def test_cancelling_a_non_streamed_run_leaves_nothing_behind(format: str) -> None:
    with trio.fail_after(LIMIT):
        async with (
            WatchedServer([text("slow")], format=format, latency=30) as server,
            provider_at(format, server.url) as provider,
        ):
            before = count_tasks()
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:

                    async def cancel_once_asked() -> None:
                        await wait_for(lambda: len(server.requests) == 1)
                        scope.cancel()

                    nursery.start_soon(cancel_once_asked)
                    await alloy.run("go", provider=provider)
            assert scope.cancelled_caught
            # The server is still "thinking" (latency) and would see the disconnect only when
            # it writes: check the client side, where nothing of the run is left.
            assert count_tasks() == before + 1  # the server's connection task


# -- a client of httpx (not httpx2) --------------------------------------------------------------


@both
async def test_an_httpx_client_works_too(streaming: bool, echo: Any) -> None:
    httpx = pytest.importorskip("httpx")
    script = [tool_call("echo", {"text": "h"}), text("done"), cut(text(LONG), after_bytes=40)]
    with trio.fail_after(LIMIT):
        async with (
            WireServer(script, format="chat") as server,
            httpx.AsyncClient(trust_env=False) as client,
        ):
            provider = make_provider("chat", server.url, client=client, retry=NO_RETRY)
            result, _ = await drive(streaming, provider=provider, tools=[echo])
            exc, _, _ = await failure(streaming, provider=provider)
            assert server.connections == 2
    assert result.text == "done"
    assert isinstance(exc, alloy.ProtocolError | alloy.ProviderConnectionError)
