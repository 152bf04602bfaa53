"""The real provider classes over real loopback HTTP, against ``WireServer`` in their format.

Each of ``Anthropic`` (Messages), ``OpenAI`` (Responses) and ``OpenAICompat`` (chat completions)
is driven through ``alloy.run`` and ``alloy.stream``: a whole tool loop with the requests the
server recorded checked field by field, thinking sent back where the format carries it,
connection reuse across turns, usage, and who closes the HTTP client. Real sockets, so the real
clock: every test runs under a generous ``trio.fail_after`` and asserts nothing about timing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx2
import pytest
import trio

import alloy
from alloy.providers import OpenAICompat
from alloy.testing import WireServer, call, reply, text, tool_call
from support import MODELS, make_provider, provider_at

FORMATS = ("anthropic", "openai", "chat")
PATHS = {"anthropic": "/v1/messages", "openai": "/v1/responses", "chat": "/v1/chat/completions"}
KEY = "sk-test"
SYSTEM = "You are terse. Ünïcode ✓."
LIMIT = 10  # seconds: generous, only there so that a hang fails instead of blocking the suite


async def drive(
    streaming: bool, prompt: str, **options: Any
) -> tuple[alloy.Result, list[alloy.Event]]:
    """Run through ``alloy.stream`` (collecting events) or ``alloy.run`` (no events)."""
    events: list[alloy.Event] = []
    if not streaming:
        return await alloy.run(prompt, **options), events
    async with alloy.stream(prompt, **options) as run:
        async for event in run:
            events.append(event)
    assert run.result is not None
    return run.result, events


def deltas(events: list[alloy.Event], kind: type, turn: int) -> str:
    return "".join(e.text for e in events if isinstance(e, kind) and e.turn == turn)


def check_auth(format: str, headers: Mapping[str, str]) -> None:
    if format == "anthropic":
        assert headers["x-api-key"] == KEY
        assert headers["anthropic-version"] == "2023-06-01"
        assert "authorization" not in headers
    else:
        assert headers["authorization"] == f"Bearer {KEY}"
        assert "x-api-key" not in headers


def tool_names(format: str, body: Mapping[str, Any]) -> list[str]:
    if format == "chat":
        return [t["function"]["name"] for t in body["tools"]]
    return [t["name"] for t in body["tools"]]


def system_prompt(format: str, body: Mapping[str, Any]) -> Any:
    if format == "anthropic":
        system = body["system"]
        return system if isinstance(system, str) else "".join(b["text"] for b in system)
    if format == "openai":
        return body["instructions"]
    first = body["messages"][0]
    assert first["role"] in ("system", "developer")
    return first["content"]


def tool_results(format: str, body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(call id, output) of every tool result the request carries."""
    found: list[tuple[str, str]] = []
    if format == "anthropic":
        for message in body["messages"]:
            if message["role"] == "user" and isinstance(message["content"], list):
                for block in message["content"]:
                    if block["type"] == "tool_result":
                        content = block["content"]
                        if isinstance(content, list):
                            content = "".join(part["text"] for part in content)
                        found.append((block["tool_use_id"], content))
    elif format == "openai":
        for item in body["input"]:
            if item.get("type") == "function_call_output":
                found.append((item["call_id"], item["output"]))
    else:
        for message in body["messages"]:
            if message["role"] == "tool":
                found.append((message["tool_call_id"], message["content"]))
    return found


def tool_calls_sent(format: str, body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(call id, name) of every tool call in the history the request carries."""
    found: list[tuple[str, str]] = []
    if format == "anthropic":
        for message in body["messages"]:
            if message["role"] == "assistant" and isinstance(message["content"], list):
                found += [
                    (b["id"], b["name"]) for b in message["content"] if b["type"] == "tool_use"
                ]
    elif format == "openai":
        found += [
            (item["call_id"], item["name"])
            for item in body["input"]
            if item.get("type") == "function_call"
        ]
    else:
        for message in body["messages"]:
            for c in message.get("tool_calls") or ():
                found.append((c["id"], c["function"]["name"]))
    return found


# -- a whole tool loop ---------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True], ids=["run", "stream"])
@pytest.mark.parametrize("format", FORMATS)
async def test_tool_loop(format: str, streaming: bool, echo: Any) -> None:
    first = alloy.Usage(input_tokens=120, output_tokens=9)
    second = alloy.Usage(input_tokens=150, output_tokens=4)
    script = [
        reply("Let me echo it.", call("echo", {"text": "hi ✓"}), usage=first),
        reply("The tool said: Echo: hi ✓", usage=second),
    ]
    with trio.fail_after(LIMIT):
        async with WireServer(script, format=format, chunk_size=3) as server:
            async with provider_at(format, server.url) as provider:
                result, events = await drive(
                    streaming,
                    "Echo hi",
                    provider=provider,
                    tools=[echo],
                    system_prompt=SYSTEM,
                )
            requests = list(server.requests)
            assert server.errors == []

    assert result.status == "completed"
    assert result.text == "The tool said: Echo: hi ✓"
    assert result.turns == 2
    assert result.stop_reason == "end_turn"
    assert result.usage.input_tokens == 270
    assert result.usage.output_tokens == 13
    assert [(r.name, r.outcome) for r in result.tool_calls] == [("echo", "ok")]
    assert result.messages[1].tool_calls[0].id == "call_1"
    assert result.messages[1].tool_calls[0].arguments == {"text": "hi ✓"}

    assert len(requests) == 2
    for request in requests:
        assert request.method == "POST"
        assert request.path == PATHS[format]
        assert request.query == ""
        check_auth(format, request.headers)
        assert request.headers["content-type"].startswith("application/json")
        assert request.body["model"] == MODELS[format]
        assert request.body.get("stream", False) is streaming
        assert tool_names(format, request.body) == ["echo"]
        assert system_prompt(format, request.body) == SYSTEM
    assert b"Echo hi" in requests[0].raw  # the prompt
    assert tool_results(format, requests[0].body) == []
    assert tool_calls_sent(format, requests[1].body) == [("call_1", "echo")]
    assert tool_results(format, requests[1].body) == [("call_1", "Echo: hi ✓")]
    if format == "anthropic":
        assert requests[0].body["max_tokens"] == 4096
        tool = requests[0].body["tools"][0]
        assert tool["input_schema"]["properties"] == {"text": {"type": "string"}}
        user = requests[1].body["messages"][-1]
        assert user["role"] == "user" and user["content"][0]["type"] == "tool_result"
    elif format == "openai":
        assert requests[0].body["store"] is False
        assert requests[0].body["tools"][0]["type"] == "function"
    else:
        assert requests[1].body["messages"][-1]["role"] == "tool"
        if streaming:
            assert requests[0].body["stream_options"] == {"include_usage": True}

    if streaming:
        assert deltas(events, alloy.TextDelta, 1) == "Let me echo it."
        assert deltas(events, alloy.TextDelta, 2) == result.text
        assert sum(isinstance(e, alloy.TextDelta) for e in events) > 5  # many pieces
        started = [e for e in events if isinstance(e, alloy.ToolCallStarted)]
        assert [(e.id, e.name, e.turn) for e in started] == [("call_1", "echo", 1)]
        arguments = "".join(e.arguments for e in events if isinstance(e, alloy.ToolCallDelta))
        assert json.loads(arguments) == {"text": "hi ✓"}
        turns = [e for e in events if isinstance(e, alloy.TurnCompleted)]
        assert [t.stop_reason for t in turns] == ["tool_use", "end_turn"]
        assert turns[0].usage.input_tokens == 120 and turns[0].usage.output_tokens == 9
        assert isinstance(events[-1], alloy.RunCompleted)
        assert [e.seq for e in events] == sorted({e.seq for e in events})


@pytest.mark.parametrize("streaming", [False, True], ids=["run", "stream"])
@pytest.mark.parametrize("format", FORMATS)
async def test_plain_answer_and_stop_reason(format: str, streaming: bool) -> None:
    script = [text("It was cut off mid-sen", stop_reason="max_tokens")]
    with trio.fail_after(LIMIT):
        async with (
            WireServer(script, format=format) as server,
            provider_at(format, server.url) as provider,
        ):
            result, events = await drive(streaming, "hi", provider=provider)
    assert result.text == "It was cut off mid-sen"
    assert result.stop_reason == "max_tokens"
    assert result.status == "completed"
    assert result.usage.input_tokens == 10 and result.usage.output_tokens == 5
    if streaming:
        assert deltas(events, alloy.TextDelta, 1) == result.text


# -- thinking sent back --------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True], ids=["run", "stream"])
async def test_anthropic_thinking_signature_round_trip(streaming: bool, echo: Any) -> None:
    script = [
        reply(alloy.Thinking("I should echo.", signature="sig-Ünï-1"), call("echo", {"text": "x"})),
        text("done", thinking="All good."),
    ]
    with trio.fail_after(LIMIT):
        async with WireServer(script, format="anthropic", chunk_size=4) as server:
            async with provider_at("anthropic", server.url, thinking_budget=2048) as provider:
                result, events = await drive(streaming, "go", provider=provider, tools=[echo])
            requests = list(server.requests)
    assert result.text == "done"
    assert result.thinking == "All good."
    first = result.messages[1].content[0]
    assert isinstance(first, alloy.Thinking)
    assert (first.text, first.signature, first.provider) == (
        "I should echo.",
        "sig-Ünï-1",
        "anthropic",
    )
    assert requests[0].body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assistant = requests[1].body["messages"][1]
    assert assistant["role"] == "assistant"
    assert assistant["content"][0] == {
        "type": "thinking",
        "thinking": "I should echo.",
        "signature": "sig-Ünï-1",
    }
    assert assistant["content"][1]["type"] == "tool_use"
    if streaming:
        assert deltas(events, alloy.ThinkingDelta, 1) == "I should echo."
        assert deltas(events, alloy.ThinkingDelta, 2) == "All good."


@pytest.mark.parametrize("streaming", [False, True], ids=["run", "stream"])
async def test_openai_reasoning_items_round_trip(streaming: bool, echo: Any) -> None:
    script = [
        reply(
            alloy.Thinking("Plan: echo.", signature="enc-opaque-1"),
            call("echo", {"text": "x"}),
            usage=alloy.Usage(input_tokens=50, output_tokens=20, reasoning_tokens=12),
        ),
        text("done"),
    ]
    with trio.fail_after(LIMIT):
        async with WireServer(script, format="openai", chunk_size=4) as server:
            async with provider_at("openai", server.url, reasoning_effort="low") as provider:
                result, events = await drive(streaming, "go", provider=provider, tools=[echo])
            requests = list(server.requests)
    assert result.text == "done"
    thinking = result.messages[1].content[0]
    assert isinstance(thinking, alloy.Thinking)
    assert (thinking.text, thinking.signature, thinking.provider) == (
        "Plan: echo.",
        "enc-opaque-1",
        "openai",
    )
    assert result.usage.reasoning_tokens == 12
    for request in requests:
        assert request.body["include"] == ["reasoning.encrypted_content"]
        assert request.body["reasoning"] == {"effort": "low"}
        assert request.body["store"] is False
    items = requests[1].body["input"]
    kinds = [item.get("type", "message") for item in items]
    assert kinds.index("reasoning") < kinds.index("function_call")
    reasoning = items[kinds.index("reasoning")]
    assert reasoning["encrypted_content"] == "enc-opaque-1"
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Plan: echo."}]
    if streaming:
        assert deltas(events, alloy.ThinkingDelta, 1) == "Plan: echo."


@pytest.mark.parametrize("streaming", [False, True], ids=["run", "stream"])
async def test_chat_reasoning_content_is_thinking_not_sent_back(streaming: bool) -> None:
    script = [text("four", thinking="2 + 2 = 4")]
    with trio.fail_after(LIMIT):
        async with WireServer([*script, text("again")], format="chat") as server:
            async with provider_at("chat", server.url) as provider:
                result, events = await drive(streaming, "2+2?", provider=provider)
                again = await alloy.run("again", provider=provider, messages=result.messages)
            requests = list(server.requests)
    assert result.text == "four"
    assert result.thinking == "2 + 2 = 4"
    if streaming:
        assert deltas(events, alloy.ThinkingDelta, 1) == "2 + 2 = 4"
    assert again.text == "again"
    assistant = requests[1].body["messages"][1]
    assert assistant["role"] == "assistant" and assistant["content"] == "four"
    assert "reasoning_content" not in assistant  # send_reasoning=False by default


# -- connection pooling --------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True], ids=["run", "stream"])
@pytest.mark.parametrize("format", FORMATS)
async def test_three_turns_use_one_connection(format: str, streaming: bool, echo: Any) -> None:
    script = [
        tool_call("echo", {"text": "one"}, text="first"),
        tool_call("echo", {"text": "two"}),
        text("third and last"),
    ]
    with trio.fail_after(LIMIT):
        async with WireServer(script, format=format, chunk_size=2) as server:
            async with provider_at(format, server.url) as provider:
                result, _ = await drive(streaming, "go", provider=provider, tools=[echo])
                assert server.connections == 1
                # A second run on the same provider still reuses the connection.
                server.extend([text("more")])
                again = await alloy.run("more", provider=provider)
                assert server.connections == 1
            assert server.errors == []
    assert result.turns == 3 and result.text == "third and last"
    assert again.text == "more"
    assert len(server.requests) == 4


async def test_provider_owned_client_pools_too(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    with trio.fail_after(LIMIT):
        async with WireServer(["one", "two", "three"], format="anthropic") as server:
            async with make_provider("anthropic", server.url) as provider:
                for _ in range(3):
                    async with alloy.stream("x", provider=provider) as run:
                        async for _event in run:
                            pass
            assert server.connections == 1


# -- usage ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("streaming", [False, True], ids=["run", "stream"])
async def test_usage_with_cache_reads(format: str, streaming: bool) -> None:
    usage = alloy.Usage(input_tokens=1000, output_tokens=33, cache_read_tokens=800)
    with trio.fail_after(LIMIT):
        async with (
            WireServer([reply("cached", usage=usage)], format=format) as server,
            provider_at(format, server.url) as provider,
        ):
            result, events = await drive(streaming, "hi", provider=provider)
    assert result.usage.input_tokens == 1000
    assert result.usage.output_tokens == 33
    assert result.usage.cache_read_tokens == 800
    if streaming:
        turn = next(e for e in events if isinstance(e, alloy.TurnCompleted))
        assert turn.usage == result.usage


async def test_compat_without_include_usage_sends_no_stream_options() -> None:
    with trio.fail_after(LIMIT):
        async with WireServer(["hello there"], format="chat") as server:
            async with provider_at("chat", server.url, include_usage=False) as provider:
                result, events = await drive(True, "hi", provider=provider)
            request = server.requests[0]
    assert "stream_options" not in request.body
    assert request.body["stream"] is True
    assert result.text == "hello there"
    assert deltas(events, alloy.TextDelta, 1) == "hello there"
    assert result.usage == alloy.Usage()  # the host sent none: zeros, not an error


async def test_compat_without_api_key_sends_no_authorization() -> None:
    with trio.fail_after(LIMIT):
        async with (
            WireServer(["hi"], format="chat") as server,
            httpx2.AsyncClient(trust_env=False) as client,
            OpenAICompat(api_url=server.url + "/", model="local", client=client) as provider,
        ):
            await alloy.run("hi", provider=provider)
    assert "authorization" not in server.requests[0].headers
    assert server.requests[0].path == "/v1/chat/completions"  # no double slash


async def test_compat_custom_chat_path_and_extra_headers() -> None:
    with trio.fail_after(LIMIT):
        async with (
            WireServer(["hi"], format="chat") as server,
            httpx2.AsyncClient(trust_env=False) as client,
            OpenAICompat(
                api_url=server.url,
                chat_path="/v1beta/openai/chat/completions",
                model="gemini-x",
                api_key=KEY,
                extra_headers={"X-Title": "alloy-tests"},
                extra_body={"temperature": 0.25},
                client=client,
            ) as provider,
        ):
            result = await alloy.run("hi", provider=provider)
    request = server.requests[0]
    assert result.text == "hi"
    assert request.path == "/v1beta/openai/chat/completions"
    assert request.headers["x-title"] == "alloy-tests"
    assert request.body["temperature"] == 0.25


async def test_anthropic_betas_and_extra_headers_are_merged() -> None:
    with trio.fail_after(LIMIT):
        async with (
            WireServer(["hi"], format="anthropic") as server,
            provider_at(
                "anthropic",
                server.url,
                betas=["beta-one"],
                extra_headers={"anthropic-beta": "beta-two", "x-extra": "1"},
            ) as provider,
        ):
            await alloy.run("hi", provider=provider)
    headers = server.requests[0].headers
    assert {b.strip() for b in headers["anthropic-beta"].split(",")} == {"beta-one", "beta-two"}
    assert headers["x-extra"] == "1"


# -- who closes the client -----------------------------------------------------------------------


@pytest.mark.parametrize("format", FORMATS)
async def test_a_user_client_is_used_and_left_open(format: str) -> None:
    sent: list[str] = []

    async def note(request: httpx2.Request) -> None:
        sent.append(str(request.url))

    with trio.fail_after(LIMIT):
        async with WireServer(["one", "two"], format=format) as server:
            url = server.url
            async with httpx2.AsyncClient(
                trust_env=False, event_hooks={"request": [note]}
            ) as client:
                provider = make_provider(format, server.url, client=client)
                async with provider:
                    assert (await alloy.run("x", provider=provider)).text == "one"
                await provider.aclose()  # twice: still harmless
                assert not client.is_closed
                # The client still works, for this provider and for its owner.
                assert (await alloy.run("x", provider=provider)).text == "two"
            assert client.is_closed
    assert sent == [url + PATHS[format]] * 2


@pytest.mark.parametrize("format", FORMATS)
async def test_a_provider_owned_client_is_closed_on_exit(
    format: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    with trio.fail_after(LIMIT):
        async with WireServer(["one", "two"], format=format) as server:
            async with make_provider(format, server.url) as provider:
                assert (await alloy.run("x", provider=provider)).text == "one"
            # Closed: a call now fails as a ProviderError, not some httpx2 exception.
            with pytest.raises(alloy.ProviderError) as caught:
                await alloy.run("x", provider=provider)
            assert not caught.value.retryable
    assert len(server.requests) == 1


async def test_providers_are_swappable_in_one_line(echo: Any) -> None:
    """The same agent code, three wire formats, the same result."""
    results = []
    with trio.fail_after(LIMIT):
        for format in FORMATS:
            script = [tool_call("echo", {"text": "swap"}), text("swapped")]
            async with (
                WireServer(script, format=format) as server,
                provider_at(format, server.url) as provider,
            ):
                results.append(await alloy.run("go", provider=provider, tools=[echo]))
    assert {r.text for r in results} == {"swapped"}
    outputs = {r.messages[2].tool_results[0].content for r in results}
    assert outputs == {"Echo: swap"}


@pytest.mark.parametrize("format", FORMATS)
async def test_provider_options_reach_the_wire(format: str) -> None:
    with trio.fail_after(LIMIT):
        async with (
            WireServer(["hi"], format=format) as server,
            provider_at(format, server.url, extra_body={"metadata": {"user_id": "u1"}}) as provider,
        ):
            await alloy.run("hi", provider=provider, provider_options={"temperature": 0.125})
    body = server.requests[0].body
    assert body["temperature"] == 0.125
    assert body["metadata"] == {"user_id": "u1"}
