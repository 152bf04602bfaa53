"""Tests for the Anthropic Messages codec (``alloy._codec._anthropic``).

Sections: every recorded real exchange (decode, split invariance, deltas add up, re-encode
shape), Hypothesis round trips, the request encoder, the decoders, streaming quirks, errors, the
ported Alloy 0.7.4 ``anthropic_test.exs`` cases, and the sans-IO rule.

Usage normalisation checked against the recordings (``expected.usage`` is raw per API):
alloy ``input_tokens`` = Anthropic ``input_tokens + cache_read + cache_write``; alloy
``cache_read_tokens``/``cache_write_tokens`` = ``cache_read_input_tokens``/
``cache_creation_input_tokens``; ``output_tokens`` unchanged.
"""

from __future__ import annotations

import ast
import base64
import doctest
import itertools
import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import alloy._codec._anthropic as anthropic
from alloy import (
    AuthenticationError,
    ConfigError,
    ContextLengthExceeded,
    Image,
    InvalidRequestError,
    Message,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProtocolError,
    ProviderError,
    RateLimitError,
    RedactedThinking,
    Request,
    ServerError,
    ServerToolCall,
    ServerToolResult,
    StopReason,
    Text,
    TextDelta,
    Thinking,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallStarted,
    ToolResult,
    ToolSpec,
    UnknownBlock,
    Usage,
)
from alloy._codec._anthropic import (
    CODE_EXECUTION_TOOL,
    PROVIDER,
    AnthropicSettings,
    StreamDecoder,
    _decode_content,
    _encode_messages,
    decode_error,
    decode_response,
    encode_request,
)
from alloy._codec._sse import SSEDecoder, SSEEvent, encode_event
from alloy._messages import Block
from alloy.testing._scripted import Reply
from alloy.testing._wire_encode import encode_anthropic
from strategies import assistant_messages, conversations, messages
from support import decode_counting_json

RECORDED = (
    Path(__file__).resolve().parents[2] / "shared" / "wire" / "recorded" / "anthropic-messages"
)
FILES = sorted(RECORDED.glob("*.json")) if RECORDED.is_dir() else []
_NO_RECORDINGS = pytest.mark.skip(reason=f"no recorded traffic at {RECORDED}")


def _params(paths: Sequence[Path]) -> list[Any]:
    if not paths:
        return [pytest.param(None, marks=_NO_RECORDINGS)]
    return [pytest.param(path, id=path.stem) for path in paths]


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


RECORDINGS = [(path, _load(path)) for path in FILES]
STREAMS = [
    path for path, data in RECORDINGS if data["stream"] and data["response"]["status"] == 200
]
OK_FILES = [path for path, data in RECORDINGS if data["response"]["status"] == 200]
ERROR_FILES = [path for path, data in RECORDINGS if data["response"]["status"] != 200]

SETTINGS = AnthropicSettings(model="claude-sonnet-4-6", api_key="sk-ant-test")


# -- helpers ---------------------------------------------------------------------------------


def events_of(body: bytes, chunks: Iterable[bytes] | None = None) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks if chunks is not None else [body]:
        events += decoder.feed(chunk)
    return events + decoder.close()


def decode_stream(
    body: bytes, chunks: Iterable[bytes] | None = None
) -> tuple[list[Any], anthropic.Completion]:
    decoder = StreamDecoder()
    deltas: list[Any] = []
    for event in events_of(body, chunks):
        deltas += decoder.feed(event)
    return deltas, decoder.finish()


def split(data: bytes, rng: random.Random, pieces: int) -> list[bytes]:
    points = sorted(rng.randrange(len(data) + 1) for _ in range(pieces))
    cuts = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(cuts)]


def sse(*payloads: dict[str, Any]) -> bytes:
    return b"".join(encode_event(SSEEvent(json.dumps(p), event=p["type"])) for p in payloads)


def stream_of(*payloads: dict[str, Any]) -> tuple[list[Any], anthropic.Completion]:
    return decode_stream(sse(*payloads))


START = {"type": "message_start", "message": {"model": "claude-x", "usage": {"input_tokens": 5}}}
STOP = {"type": "message_stop"}


def end(reason: str = "end_turn", **usage: int) -> dict[str, Any]:
    return {"type": "message_delta", "delta": {"stop_reason": reason}, "usage": usage}


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def block_delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def expected_usage(raw: dict[str, Any]) -> Usage:
    read = raw["cache_read_tokens"] or 0
    write = raw["cache_write_tokens"] or 0
    return Usage(
        input_tokens=raw["input_tokens"] + read + write,
        output_tokens=raw["output_tokens"],
        cache_read_tokens=read,
        cache_write_tokens=write,
    )


def server_calls(message: Message) -> list[dict[str, Any]]:
    """Provider-run calls: ServerToolCall, or kept verbatim (MCP, programmatic callers)."""
    calls = []
    for block in message.content:
        if isinstance(block, ServerToolCall):
            calls.append({"id": block.id, "name": block.name, "input": dict(block.arguments)})
        elif isinstance(block, UnknownBlock) and block.type in ("server_tool_use", "mcp_tool_use"):
            data = block.data
            calls.append({"id": data["id"], "name": data["name"], "input": data["input"]})
    return calls


def thinking_of(message: Message) -> str | None:
    blocks = [b for b in message.content if isinstance(b, Thinking | RedactedThinking)]
    if not blocks:
        return None
    return "".join(b.text for b in blocks if isinstance(b, Thinking))


def decode_recording(data: dict[str, Any]) -> tuple[list[Any], anthropic.Completion]:
    body = data["response"]["body"].encode()
    if data["stream"]:
        return decode_stream(body)
    return [], decode_response(body)


# -- 1. every recording decodes to its expected outcome ----------------------------------------


def test_recordings_are_present_and_cover_the_api() -> None:
    if not FILES:
        pytest.skip(f"no recorded traffic at {RECORDED}")
    assert len(FILES) == 96
    assert len(STREAMS) == 8 and len(ERROR_FILES) == 1


@pytest.mark.parametrize("path", _params(OK_FILES))
def test_recording_decodes_to_expected(path: Path) -> None:
    data = _load(path)
    expected = data["expected"]
    _, completion = decode_recording(data)
    message = completion.message
    assert message.role == "assistant"
    assert message.text == expected["text"]
    assert [b.text for b in message.content if isinstance(b, Text)] == expected["extra"][
        "text_parts"
    ]
    calls = [
        {"id": c.id, "name": c.name, "arguments": dict(c.arguments)} for c in message.tool_calls
    ]
    assert calls == expected["tool_calls"]
    assert thinking_of(message) == expected["thinking"]
    signatures = [b.signature for b in message.content if isinstance(b, Thinking)]
    assert signatures == expected["extra"]["thinking_signatures"]
    redacted = [b for b in message.content if isinstance(b, RedactedThinking)]
    assert len(redacted) == expected["extra"]["redacted_thinking_blocks"]
    assert all(b.provider == PROVIDER for b in message.content if isinstance(b, Thinking))
    assert completion.stop_reason == StopReason(expected["stop_reason"])
    # Reasoning tokens are ours (Anthropic reports them in output_tokens_details).
    assert attrs.evolve(completion.usage, reasoning_tokens=0) == expected_usage(expected["usage"])
    thinking_tokens = (expected["extra"]["raw_usage"].get("output_tokens_details") or {}).get(
        "thinking_tokens"
    )
    assert completion.usage.reasoning_tokens == (thinking_tokens or 0)
    assert completion.model == expected["extra"]["model"]
    wanted = [
        {"id": c["id"], "name": c["name"], "input": c["input"]}
        for c in expected["extra"]["server_tool_calls"]
    ]
    assert server_calls(message) == wanted
    # Server-run tools are never client tool calls.
    assert not {c["id"] for c in wanted} & {c.id for c in message.tool_calls}
    # Every block kind on the wire is accounted for, in order.
    assert len(message.content) == len(expected["extra"]["block_types"])
    for block, kind in zip(message.content, expected["extra"]["block_types"], strict=True):
        if isinstance(block, ServerToolResult):
            assert block.kind == kind
        elif isinstance(block, UnknownBlock):
            assert block.type == kind and block.provider == PROVIDER


@pytest.mark.parametrize("path", _params(ERROR_FILES))
def test_error_recording_decodes_to_typed_error(path: Path) -> None:
    data = _load(path)
    wanted = data["expected"]["error"]
    response = data["response"]
    error = decode_error(response["status"], {}, response["body"].encode())
    assert isinstance(error, InvalidRequestError)
    assert error.status == wanted["status"]
    assert error.error_type == wanted["type"]
    assert wanted["message"] in str(error)
    assert error.provider == PROVIDER
    assert error.request_id == "req_011Ca7jT9AHpgXgdv8igm4z9"  # from the body: no header here
    assert not error.retryable


# -- 2 and 3. streams: split invariance, deltas add up ------------------------------------------


@pytest.mark.parametrize("path", _params(STREAMS))
def test_recorded_stream_is_split_invariant(path: Path) -> None:
    body = _load(path)["response"]["body"].encode()
    whole = decode_stream(body)
    rng = random.Random(path.name)
    for pieces in (1, 7, 60, len(body) // 50):
        assert decode_stream(body, split(body, rng, pieces)) == whole
    small = [body[i : i + 3] for i in range(0, len(body), 3)]
    assert decode_stream(body, small) == whole


@pytest.mark.parametrize("path", _params(STREAMS))
def test_recorded_stream_with_whitespace_around_the_json(path: Path) -> None:
    # Whitespace around an event's JSON takes the parser's slow path (json.loads itself).
    events = events_of(_load(path)["response"]["body"].encode())
    outcomes = []
    for stream in (events, [e._replace(data=f" {e.data}\n\t") for e in events]):
        decoder = StreamDecoder()
        deltas = [delta for event in stream for delta in decoder.feed(event)]
        outcomes.append((deltas, decoder.finish()))
    assert outcomes[1] == outcomes[0]


def assert_deltas_add_up(deltas: Sequence[Any], message: Message) -> None:
    text = "".join(d.text for d in deltas if isinstance(d, TextDelta))
    assert text == message.text
    thinking = "".join(d.text for d in deltas if isinstance(d, ThinkingDelta))
    assert thinking == "".join(b.text for b in message.content if isinstance(b, Thinking))
    started = [d for d in deltas if isinstance(d, ToolCallStarted)]
    calls = message.tool_calls
    assert [(d.index, d.id, d.name) for d in started] == [
        (i, c.id, c.name) for i, c in enumerate(calls)
    ]
    for index, call in enumerate(calls):
        fragments = "".join(
            d.arguments for d in deltas if isinstance(d, ToolCallDelta) and d.index == index
        )
        assert (json.loads(fragments) if fragments else {}) == call.arguments
    # Each call's deltas come after its start.
    seen: set[int] = set()
    for delta in deltas:
        if isinstance(delta, ToolCallStarted):
            seen.add(delta.index)
        elif isinstance(delta, ToolCallDelta):
            assert delta.index in seen


@pytest.mark.parametrize("path", _params(STREAMS))
def test_recorded_stream_deltas_add_up(path: Path) -> None:
    deltas, completion = decode_recording(_load(path))
    assert deltas
    assert_deltas_add_up(deltas, completion.message)


# -- 4. re-encoding a recorded conversation gives the same body shape ----------------------------

_IGNORED_KEYS = {"cache_control", "citations"}


def block_shape(block: dict[str, Any]) -> tuple[str, frozenset[str]]:
    keys = set(block) - _IGNORED_KEYS
    if block.get("is_error") is False:
        keys.discard("is_error")
    if block.get("caller") == {"type": "direct"}:
        keys.discard("caller")
    return block["type"], frozenset(keys)


def messages_shape(wire: Sequence[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """Role and block shapes per message; recorded "system" turns dropped, same roles merged."""
    shape: list[tuple[str, list[Any]]] = []
    for message in wire:
        if message["role"] == "system":
            continue
        content = message["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        blocks = [block_shape(b) for b in content]
        if shape and shape[-1][0] == message["role"]:
            shape[-1][1].extend(blocks)
        else:
            shape.append((message["role"], blocks))
    return shape


def request_from_recording(body: dict[str, Any]) -> Request:
    """An alloy Request holding the recorded conversation (system turns mid-history dropped)."""
    system = body.get("system")
    if isinstance(system, list):
        system = "".join(part["text"] for part in system)
    conversation = []
    for message in body["messages"]:
        if message["role"] == "system":  # a newer API feature alloy has no value for
            continue
        content = message["content"]
        blocks = [Text(content)] if isinstance(content, str) else list(_decode_content(content))
        conversation.append(Message(message["role"], blocks))
    tools = tuple(
        ToolSpec(tool["name"], tool.get("description") or "", tool["input_schema"])
        for tool in body.get("tools", ())
        if "input_schema" in tool
    )
    return Request(messages=tuple(conversation), system_prompt=system or None, tools=tools)


@pytest.mark.parametrize("path", _params([path for path, _ in RECORDINGS]))
def test_recorded_conversation_reencodes_to_the_same_shape(path: Path) -> None:
    recorded = _load(path)["request"]["body"]
    request = request_from_recording(recorded)
    body = encode_request(request, AnthropicSettings(model=recorded["model"]), stream=False)
    assert body.body["model"] == recorded["model"]
    assert messages_shape(body.body["messages"]) == messages_shape(recorded["messages"])
    # Same role, same block types, same fields: the conversation survives the round trip.
    assert body.body["messages"][0]["role"] == "user"
    if request.system_prompt:
        assert body.body["system"] == request.system_prompt
    else:
        assert "system" not in body.body
    function_tools = [t for t in recorded.get("tools", ()) if "input_schema" in t]
    ours = body.body.get("tools", [])
    assert [t["name"] for t in ours] == [t["name"] for t in function_tools]
    for tool, original in zip(ours, function_tools, strict=True):
        assert set(tool) == {"name", "description", "input_schema"}
        assert tool["input_schema"] == original["input_schema"]
    json.dumps(body.body)  # plain JSON data


def test_reencoding_keeps_verbatim_blocks_verbatim() -> None:
    if not FILES:
        pytest.skip("no recordings")
    recorded = _load(RECORDED / "test_anthropic__test_anthropic_mcp_servers__1.json")
    body = recorded["request"]["body"]
    wire = encode_request(request_from_recording(body), SETTINGS, stream=False).body["messages"]
    originals = [b for m in body["messages"] for b in m["content"] if b["type"].startswith("mcp_")]
    ours = [b for m in wire for b in m["content"] if b["type"].startswith("mcp_")]
    assert ours == originals and len(ours) == 2


def test_code_execution_entry_matches_the_recording() -> None:
    if not FILES:
        pytest.skip("no recordings")
    recorded = _load(RECORDED / "test_anthropic__test_anthropic_code_execution_tool_stream__0.json")
    assert recorded["request"]["body"]["tools"] == [dict(CODE_EXECUTION_TOOL)]


# -- 5. Hypothesis round trips --------------------------------------------------------------------

_COLLIDING_TYPES = {
    "text",
    "image",
    "tool_use",
    "thinking",
    "redacted_thinking",
    "server_tool_use",
}


def sendable(block: Block) -> Block | None:
    """What the codec sends of ``block`` and decodes back, or None when it is not sent."""
    if isinstance(block, Text):
        return block if block.text.strip() else None
    if isinstance(block, Thinking):
        if block.provider != PROVIDER or block.signature is None:
            return None
        return attrs.evolve(block, id=None)  # Anthropic thinking blocks have no id
    if isinstance(block, RedactedThinking | UnknownBlock):
        return block if block.provider == PROVIDER else None
    return block


def carried(block: Block) -> bool:
    """Blocks whose wire form decodes back to their own kind (see the module docstring)."""
    if isinstance(block, UnknownBlock):
        kind = block.data.get("type")
        if kind in _COLLIDING_TYPES or (isinstance(kind, str) and kind.endswith("_tool_result")):
            return False
    if isinstance(block, ServerToolResult):
        return block.kind.endswith("_tool_result") and block.kind not in (
            "tool_result",
            "mcp_tool_result",
        )
    return True


def model_of(conversation: Iterable[Message]) -> list[Message]:
    """The reference: filter, drop empty messages, merge roles, tool results first."""
    result: list[Message] = []
    for message in conversation:
        content = [b for b in map(sendable, message.content) if b is not None]
        if not content:
            continue
        if result and result[-1].role == message.role:
            result[-1] = Message(message.role, [*result[-1].content, *content])
        else:
            result.append(Message(message.role, content))
    for i, message in enumerate(result):
        if message.role == "user":
            results = [b for b in message.content if isinstance(b, ToolResult)]
            others = [b for b in message.content if not isinstance(b, ToolResult)]
            result[i] = Message("user", results + others)
    return result


def through_json(data: Any) -> Any:
    return json.loads(json.dumps(data, ensure_ascii=False))


def decode_wire_messages(wire: Iterable[dict[str, Any]]) -> list[Message]:
    return [Message(m["role"], _decode_content(m["content"])) for m in wire]


_SLOW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SLOW
@given(messages())
def test_any_message_round_trips_through_the_wire(message: Message) -> None:
    assume(all(carried(b) for b in message.content))
    wire = through_json(_encode_messages([message]))
    assert decode_wire_messages(wire) == model_of([message])


@_SLOW
@given(conversations())
def test_conversation_round_trips_through_a_request_body(conversation: list[Message]) -> None:
    assume(all(carried(b) for m in conversation for b in m.content))
    request = Request(messages=tuple(conversation), system_prompt="sys")
    body = through_json(dict(encode_request(request, SETTINGS, stream=False).body))
    assert decode_wire_messages(body["messages"]) == model_of(conversation)
    roles = [m["role"] for m in body["messages"]]
    assert all(a != b for a, b in itertools.pairwise(roles))  # the API wants alternation


def numbered(blocks: Iterable[Block]) -> list[Block]:
    """``blocks`` with the ids the wire encoder gives tool calls that have none: call_1..."""
    calls = 0
    out: list[Block] = []
    for block in blocks:
        if isinstance(block, ToolCall):
            calls += 1
            block = attrs.evolve(block, id=block.id or f"call_{calls}")
        out.append(block)
    return out


@_SLOW
@given(assistant_messages(), st.randoms(use_true_random=False), st.integers(0, 40))
def test_assistant_message_round_trips_as_a_response(
    message: Message, rng: random.Random, cuts: int
) -> None:
    assume(all(carried(b) for b in message.content))
    (expected,) = model_of([message]) or [Message.assistant([])]
    reason = StopReason.TOOL_USE if message.tool_calls else StopReason.END_TURN
    reply = Reply(
        blocks=expected.content, stop_reason=reason, usage=Usage(input_tokens=3, output_tokens=4)
    )
    # As a JSON reply.
    completion = decode_response(encode_anthropic(reply, model="claude-x"))
    assert completion.message == Message.assistant(numbered(expected.content))
    assert completion.stop_reason == reason
    assert completion.usage == Usage(input_tokens=3, output_tokens=4)
    assert completion.model == "claude-x"
    # As an SSE stream, split at random byte boundaries (a streamed block always has a type).
    assume(
        all(
            isinstance(b.data.get("type"), str)
            for b in expected.content
            if isinstance(b, UnknownBlock)
        )
    )
    stream = encode_anthropic(reply, stream=True, chunk_size=rng.randint(1, 20))
    deltas, streamed = decode_stream(stream, split(stream, rng, cuts))
    assert streamed.message == completion.message
    assert streamed.stop_reason == reason
    assert_deltas_add_up(deltas, streamed.message)


# -- the request encoder -------------------------------------------------------------------------


def encode(*conversation: Message, settings: AnthropicSettings = SETTINGS, **request: Any) -> Any:
    return encode_request(Request(messages=tuple(conversation), **request), settings, stream=False)


def test_request_path_method_and_minimal_body() -> None:
    http = encode(Message.user("hello"))
    assert (http.method, http.path, http.stream) == ("POST", "/v1/messages", False)
    assert http.body == {
        "model": "claude-sonnet-4-6",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
    }
    assert dict(http.headers) == {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}


def test_no_api_key_no_auth_header_and_custom_version() -> None:
    settings = AnthropicSettings(model="m", api_version="2099-01-01", max_tokens=10)
    http = encode(Message.user("x"), settings=settings)
    assert http.headers == (("anthropic-version", "2099-01-01"),)
    assert http.body["max_tokens"] == 10


def test_betas_merge_into_one_header_in_order_without_duplicates() -> None:
    settings = AnthropicSettings(
        model="m",
        betas=("b1", "context-1m-2025-08-07"),
        extra_headers=(
            ("Anthropic-Beta", "b2, b1 ,,"),
            ("x-custom", "1"),
            ("anthropic-beta", "b3"),
        ),
    )
    headers = encode(Message.user("x"), settings=settings).headers
    assert [name for name, _ in headers].count("anthropic-beta") == 1
    assert dict(headers)["anthropic-beta"] == "b1,context-1m-2025-08-07,b2,b3"
    assert headers[-1] == ("x-custom", "1")  # extra headers come after ours


def test_extra_headers_replace_ours_and_accept_a_mapping() -> None:
    settings = AnthropicSettings(
        model="m", api_key="k", extra_headers={"X-Api-Key": "other", "anthropic-version": "v2"}
    )
    assert settings.extra_headers == (("X-Api-Key", "other"), ("anthropic-version", "v2"))
    headers = encode(Message.user("x"), settings=settings).headers
    assert headers == (("X-Api-Key", "other"), ("anthropic-version", "v2"))


def test_stream_flag() -> None:
    http = encode_request(Request(messages=(Message.user("x"),)), SETTINGS, stream=True)
    assert http.body["stream"] is True and http.stream is True
    assert "stream" not in encode(Message.user("x")).body


def test_system_prompt_string_or_cached_block() -> None:
    assert encode(Message.user("x"), system_prompt="Be brief.").body["system"] == "Be brief."
    assert "system" not in encode(Message.user("x"), system_prompt="").body
    cached = encode(
        Message.user("x"), system_prompt="Be brief.", settings=attrs.evolve(SETTINGS, cache=True)
    )
    assert cached.body["system"] == [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}
    ]


READ = ToolSpec(
    "read", "Read a file.", {"type": "object", "properties": {"path": {"type": "string"}}}
)
BASH = ToolSpec("bash", "Run a command.", {"type": "object"})


def test_tools_and_tool_choice() -> None:
    body = encode(Message.user("x"), tools=(READ, BASH)).body
    assert body["tools"] == [
        {"name": "read", "description": "Read a file.", "input_schema": READ.input_schema},
        {"name": "bash", "description": "Run a command.", "input_schema": {"type": "object"}},
    ]
    assert "tool_choice" not in body
    for choice, wire in [
        ("auto", {"type": "auto"}),
        ("any", {"type": "any"}),
        ("none", {"type": "none"}),
        ("read", {"type": "tool", "name": "read"}),
        (
            {"type": "any", "disable_parallel_tool_use": True},
            {"type": "any", "disable_parallel_tool_use": True},
        ),
    ]:
        settings = attrs.evolve(SETTINGS, tool_choice=choice)
        assert (
            encode(Message.user("x"), tools=(READ,), settings=settings).body["tool_choice"] == wire
        )
        # No tools, no tool_choice (the API refuses one without tools).
        assert "tool_choice" not in encode(Message.user("x"), settings=settings).body


def test_thinking_budget() -> None:
    settings = attrs.evolve(SETTINGS, thinking_budget=5000)
    assert encode(Message.user("x"), settings=settings).body["thinking"] == {
        "type": "enabled",
        "budget_tokens": 5000,
    }
    assert "thinking" not in encode(Message.user("x")).body


def test_code_execution_adds_the_server_tool_and_no_beta() -> None:
    settings = attrs.evolve(SETTINGS, code_execution=True, tool_choice="auto")
    http = encode(Message.user("x"), tools=(READ,), settings=settings)
    assert http.body["tools"][-1] == {"type": "code_execution_20260120", "name": "code_execution"}
    assert http.body["tools"][0]["name"] == "read"
    assert http.body["tool_choice"] == {"type": "auto"}
    assert "anthropic-beta" not in dict(http.headers)  # code_execution_20260120 is GA
    alone = encode(Message.user("x"), settings=settings).body
    assert alone["tools"] == [dict(CODE_EXECUTION_TOOL)]
    assert len(encode(Message.user("x"), tools=(READ,)).body["tools"]) == 1


def test_extra_body_then_options_merged_last() -> None:
    settings = attrs.evolve(SETTINGS, extra_body={"top_k": 5, "metadata": {"user_id": "u"}})
    body = encode(
        Message.user("x"),
        settings=settings,
        options={"temperature": 0.2, "top_k": 7, "max_tokens": 9},
    ).body
    assert body["temperature"] == 0.2 and body["top_k"] == 7 and body["max_tokens"] == 9
    assert body["metadata"] == {"user_id": "u"}


def test_cache_breakpoints_on_system_last_tool_and_last_message() -> None:
    settings = attrs.evolve(SETTINGS, cache=True, code_execution=True)
    body = encode(
        Message.user("first"),
        Message.assistant([Text("answer"), Thinking("t", signature="s", provider=PROVIDER)]),
        system_prompt="sys",
        tools=(READ,),
        settings=settings,
    ).body
    marks = json.dumps(body).count("cache_control")
    assert marks == 3  # at most 4 allowed by the API
    assert "cache_control" not in body["tools"][0]
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    last = body["messages"][-1]["content"]
    # Thinking blocks cannot carry cache_control: the text before it gets the breakpoint.
    assert last[0] == {"type": "text", "text": "answer", "cache_control": {"type": "ephemeral"}}
    assert "cache_control" not in last[1]
    assert "cache_control" not in body["messages"][0]["content"][0]


def test_cache_breakpoint_never_mutates_an_unknown_block() -> None:
    data = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "d"}}
    block = UnknownBlock(data, provider=PROVIDER)
    body = encode(Message.user([block]), settings=attrs.evolve(SETTINGS, cache=True)).body
    assert body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in block.data


def test_every_block_kind_on_the_wire() -> None:
    png = base64.b64encode(b"\x89PNG").decode()
    conversation = [
        Message.user([Text("look"), Image("image/png", png)]),
        Message.assistant(
            [
                Thinking("hmm", signature="sig", provider=PROVIDER),
                RedactedThinking("opaque", provider=PROVIDER),
                Text("Let me run it."),
                ServerToolCall("srvtoolu_1", "code_execution", {"code": "1+1"}),
                ServerToolResult("srvtoolu_1", "code_execution_tool_result", {"stdout": "2"}),
                UnknownBlock({"type": "mcp_tool_use", "id": "m1", "input": {}}, provider=PROVIDER),
                ToolCall("toolu_1", "read", {"path": "a"}),
                ToolCall("toolu_2", "read", {"path": "b"}),
            ]
        ),
        Message.user([ToolResult("toolu_1", "A"), ToolResult("toolu_2", "missing", is_error=True)]),
    ]
    assert encode(*conversation).body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": png},
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "Let me run it."},
                {
                    "type": "server_tool_use",
                    "id": "srvtoolu_1",
                    "name": "code_execution",
                    "input": {"code": "1+1"},
                },
                {
                    "type": "code_execution_tool_result",
                    "tool_use_id": "srvtoolu_1",
                    "content": {"stdout": "2"},
                },
                {"type": "mcp_tool_use", "id": "m1", "input": {}},
                {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a"}},
                {"type": "tool_use", "id": "toolu_2", "name": "read", "input": {"path": "b"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "A"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": "missing",
                    "is_error": True,
                },
            ],
        },
    ]


def test_foreign_and_unsigned_reasoning_and_unknown_blocks_are_dropped() -> None:
    assistant = Message.assistant(
        [
            Thinking("openai reasoning", signature="enc", provider="openai", id="rs_1"),
            Thinking("no provenance", signature="sig"),
            Thinking("unsigned", provider=PROVIDER),
            RedactedThinking("x", provider="openai"),
            RedactedThinking("y"),
            UnknownBlock({"type": "reasoning", "id": "rs_2"}, provider="openai"),
            UnknownBlock({"type": "container_upload", "file_id": "f"}),
            Text("kept"),
        ]
    )
    assert encode(Message.user("q"), assistant).body["messages"][1]["content"] == [
        {"type": "text", "text": "kept"}
    ]


def test_roles_alternate_empty_blocks_and_messages_dropped() -> None:
    body = encode(
        Message.user("a"),
        Message.user([Text(""), Text(" \n\t")]),
        Message.user("b"),
        Message.assistant([Thinking("foreign", signature="s", provider="chat")]),
        Message.user("c"),
        Message.assistant("d"),
        Message.assistant([ToolCall("t1", "read", {})]),
    ).body
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "a"},
                {"type": "text", "text": "b"},
                {"type": "text", "text": "c"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "d"},
                {"type": "tool_use", "id": "t1", "name": "read", "input": {}},
            ],
        },
    ]


def test_tool_results_come_first_in_a_user_message() -> None:
    body = encode(
        Message.user("q"),
        Message.assistant([ToolCall("t1", "read", {}), ToolCall("t2", "read", {})]),
        Message.user(
            [
                Text("also this"),
                ToolResult("t2", "B"),
                Image("image/png", "AA=="),
                ToolResult("t1", "A"),
            ]
        ),
    ).body
    assert [b.get("tool_use_id", b["type"]) for b in body["messages"][2]["content"]] == [
        "t2",
        "t1",
        "text",
        "image",
    ]


def test_mappings_become_dicts() -> None:
    from types import MappingProxyType

    call = ToolCall("t1", "read", MappingProxyType({"nested": MappingProxyType({"a": 1})}))
    spec = ToolSpec("read", "r", MappingProxyType({"type": "object"}))
    body = encode(Message.assistant([call]), tools=(spec,)).body
    json.dumps(body)
    assert body["messages"][0]["content"][0]["input"] == {"nested": {"a": 1}}


# -- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model": ""},
        {"model": "m", "max_tokens": 0},
        {"model": "m", "max_tokens": True},
        {"model": "m", "thinking_budget": 0},
        {"model": "m", "thinking_budget": 1.5},
        {"model": "m", "tool_choice": ""},
        {"model": "m", "tool_choice": {"name": "x"}},
    ],
)
def test_bad_settings_raise_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        AnthropicSettings(**kwargs)


def test_settings_hide_the_api_key_and_take_a_single_beta_string() -> None:
    settings = AnthropicSettings(model="m", api_key="sk-ant-secret", betas="one")  # type: ignore[arg-type]
    assert "sk-ant-secret" not in repr(settings)
    assert settings.betas == ("one",)
    with pytest.raises(TypeError):
        AnthropicSettings("m")  # type: ignore[misc]


# -- decoding a JSON reply ---------------------------------------------------------------------


def reply(content: list[Any], **fields: Any) -> bytes:
    return json.dumps(
        {"type": "message", "role": "assistant", "model": "m", "content": content, **fields}
    ).encode()


def test_decode_text_drops_citations_keeps_text() -> None:
    content = [
        {"type": "text", "text": "Paris", "citations": [{"type": "web_search_result_location"}]},
        {"type": "text", "text": " is the capital."},
    ]
    completion = decode_response(reply(content, stop_reason="end_turn"))
    assert completion.message.content == (Text("Paris"), Text(" is the capital."))


def test_decode_server_blocks() -> None:
    direct = {"type": "direct"}
    linked = {"type": "code_execution_20260120", "tool_id": "srvtoolu_0"}
    content = [
        {"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {"q": "x"}},
        {"type": "web_search_tool_result", "tool_use_id": "s1", "content": [{"type": "r"}]},
        {"type": "server_tool_use", "id": "s2", "name": "web_fetch", "input": {}, "caller": direct},
        {"type": "web_fetch_tool_result", "tool_use_id": "s2", "content": {}, "caller": direct},
        {"type": "server_tool_use", "id": "s3", "name": "web_fetch", "input": {}, "caller": linked},
        {"type": "web_fetch_tool_result", "tool_use_id": "s3", "content": {}, "caller": linked},
        {"type": "bash_code_execution_tool_result", "tool_use_id": "s4", "content": None},
        {"type": "advisor_tool_result", "tool_use_id": "s5", "content": {"type": "advisor_result"}},
        {"type": "mcp_tool_use", "id": "m1", "name": "ask", "server_name": "wiki", "input": {}},
        {"type": "mcp_tool_result", "tool_use_id": "m1", "is_error": False, "content": []},
        {"type": "compaction", "content": "summary"},
        {"type": "tool_use", "id": "t1", "name": "read", "input": {"p": 1}, "caller": direct},
    ]
    message = decode_response(reply(content, stop_reason="tool_use")).message
    assert message.content[:4] == (
        ServerToolCall("s1", "web_search", {"q": "x"}),
        ServerToolResult("s1", "web_search_tool_result", [{"type": "r"}]),
        ServerToolCall("s2", "web_fetch", {}),
        ServerToolResult("s2", "web_fetch_tool_result", {}),
    )
    assert message.content[4:6] == tuple(UnknownBlock(b, provider=PROVIDER) for b in content[4:6])
    assert message.content[6] == ServerToolResult("s4", "bash_code_execution_tool_result", None)
    assert message.content[7].kind == "advisor_tool_result"  # type: ignore[union-attr]
    assert message.content[8:11] == tuple(UnknownBlock(b, provider=PROVIDER) for b in content[8:11])
    assert message.content[11] == ToolCall("t1", "read", {"p": 1})
    assert message.tool_calls == (ToolCall("t1", "read", {"p": 1}),)
    # Kept blocks go back verbatim.
    wire = _encode_messages([message])[0]["content"]
    assert wire[4:6] == content[4:6] and wire[8:11] == content[8:11]


def test_decode_thinking_and_redacted_thinking() -> None:
    content = [
        {"type": "thinking", "thinking": "Let me reason.", "signature": "sig_abc123"},
        {"type": "redacted_thinking", "data": "EmwKAhgB"},
        {"type": "text", "text": "The answer is 42."},
    ]
    message = decode_response(reply(content, stop_reason="end_turn")).message
    assert message.content == (
        Thinking("Let me reason.", signature="sig_abc123", provider=PROVIDER),
        RedactedThinking("EmwKAhgB", provider=PROVIDER),
        Text("The answer is 42."),
    )
    assert message.text == "The answer is 42."


@pytest.mark.parametrize(
    ("raw", "with_calls", "expected"),
    [
        ("end_turn", False, StopReason.END_TURN),
        ("tool_use", True, StopReason.TOOL_USE),
        ("max_tokens", True, StopReason.MAX_TOKENS),
        ("stop_sequence", False, StopReason.STOP_SEQUENCE),
        ("refusal", False, StopReason.REFUSAL),
        ("pause_turn", False, StopReason.PAUSE_TURN),
        ("model_context_window_exceeded", False, StopReason.MAX_TOKENS),
        ("compaction", False, StopReason.PAUSE_TURN),
        ("something_new", False, StopReason.END_TURN),
        ("something_new", True, StopReason.TOOL_USE),
        (None, False, StopReason.END_TURN),
        (7, True, StopReason.TOOL_USE),
    ],
)
def test_stop_reasons(raw: Any, with_calls: bool, expected: StopReason) -> None:
    content: list[dict[str, Any]] = [{"type": "text", "text": "x"}]
    if with_calls:
        content.append({"type": "tool_use", "id": "t", "name": "n", "input": {}})
    assert decode_response(reply(content, stop_reason=raw)).stop_reason is expected
    stream = [START, end(raw) if raw is not None else {"type": "message_delta", "delta": {}}]
    if with_calls:
        stream += [block_start(0, content[1]), block_stop(0)]
    assert stream_of(*stream, STOP)[1].stop_reason is expected


def test_usage_normalisation() -> None:
    usage = {
        "input_tokens": 3,
        "cache_read_input_tokens": 1111,
        "cache_creation_input_tokens": 418,
        "output_tokens": 33,
        "output_tokens_details": {"thinking_tokens": 20},
        "server_tool_use": {"web_search_requests": 1},
        "cache_creation": {"ephemeral_5m_input_tokens": 418},
    }
    completion = decode_response(reply([], stop_reason="end_turn", usage=usage))
    assert completion.usage == Usage(
        input_tokens=1532,
        output_tokens=33,
        cache_read_tokens=1111,
        cache_write_tokens=418,
        reasoning_tokens=20,
    )
    nulls = {"input_tokens": 5, "cache_read_input_tokens": None, "output_tokens": -1}
    assert decode_response(reply([], usage=nulls)).usage == Usage(input_tokens=5)
    assert decode_response(reply([])).usage == Usage()


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"type": "message", "role": "assistant"}', "no 'content' list"),
        (b'{"content": "hi"}', "no 'content' list"),
        (reply(["text"]), "should be an object"),
        (reply([{"type": "text"}]), "'text'"),
        (reply([{"type": "tool_use", "id": "t", "name": "n", "input": [1]}]), "'input'"),
        (reply([{"type": "tool_use", "name": "n", "input": {}}]), "'id'"),
        (b"\xff\xfe{", "not JSON"),
    ],
)
def test_malformed_reply_is_a_protocol_error(body: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError, match=fragment) as caught:
        decode_response(body)
    assert caught.value.provider == PROVIDER


def test_error_object_in_a_200_body_raises_the_typed_error() -> None:
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_9"}'
    with pytest.raises(OverloadedError) as caught:
        decode_response(body)
    assert caught.value.retryable and caught.value.request_id == "req_9"
    with pytest.raises(RateLimitError):
        decode_response(b'{"error": {"type": "rate_limit_error", "message": "slow down"}}')


def test_tool_use_without_input_has_empty_arguments() -> None:
    message = decode_response(reply([{"type": "tool_use", "id": "t", "name": "n"}])).message
    assert message.content == (ToolCall("t", "n", {}),)


def test_decode_request_side_blocks() -> None:
    # _decode_content also reads the user side (used to re-encode recorded conversations).
    content = [
        {
            "type": "tool_result",
            "tool_use_id": "t1",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        },
        {"type": "tool_result", "tool_use_id": "t2", "content": "x", "is_error": True},
        {"type": "tool_result", "tool_use_id": "t3"},
        {
            "type": "tool_result",
            "tool_use_id": "t4",
            "content": [{"type": "tool_reference", "tool_name": "f"}],
        },
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}},
        {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}},
    ]
    assert _decode_content(content) == (
        ToolResult("t1", "ab"),
        ToolResult("t2", "x", is_error=True),
        ToolResult("t3", ""),
        UnknownBlock(content[3], provider=PROVIDER),
        Image("image/png", "AA=="),
        UnknownBlock(content[5], provider=PROVIDER),
        Text("hi"),
    )


# -- streaming -------------------------------------------------------------------------------


def test_stream_text_thinking_and_tool_calls() -> None:
    deltas, completion = stream_of(
        START,
        {"type": "ping"},
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        block_delta(0, {"type": "thinking_delta", "thinking": "Let me think..."}),
        block_delta(0, {"type": "thinking_delta", "thinking": " Step 2."}),
        block_delta(0, {"type": "signature_delta", "signature": "sig_streamed123"}),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        block_delta(1, {"type": "text_delta", "text": "Let me read"}),
        block_delta(1, {"type": "citations_delta", "citation": {"type": "x"}}),
        block_delta(1, {"type": "text_delta", "text": " that."}),
        block_stop(1),
        block_start(2, {"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {}}),
        block_delta(2, {"type": "input_json_delta", "partial_json": '{"query": '}),
        block_delta(2, {"type": "input_json_delta", "partial_json": '"weather"}'}),
        block_stop(2),
        block_start(3, {"type": "web_search_tool_result", "tool_use_id": "s1", "content": []}),
        block_stop(3),
        block_start(4, {"type": "tool_use", "id": "toolu_01", "name": "read", "input": {}}),
        block_delta(4, {"type": "input_json_delta", "partial_json": ""}),
        block_delta(4, {"type": "input_json_delta", "partial_json": '{"file_path"'}),
        block_delta(4, {"type": "input_json_delta", "partial_json": ': "mix.exs"}'}),
        block_stop(4),
        block_start(5, {"type": "tool_use", "id": "toolu_02", "name": "bash", "input": {}}),
        block_stop(5),
        end("tool_use", output_tokens=50),
        STOP,
    )
    assert deltas == [
        ThinkingDelta(text="Let me think..."),
        ThinkingDelta(text=" Step 2."),
        TextDelta(text="Let me read"),
        TextDelta(text=" that."),
        ToolCallStarted(index=0, id="toolu_01", name="read"),
        ToolCallDelta(index=0, arguments='{"file_path"'),
        ToolCallDelta(index=0, arguments=': "mix.exs"}'),
        ToolCallStarted(index=1, id="toolu_02", name="bash"),
    ]
    assert completion.message.content == (
        Thinking("Let me think... Step 2.", signature="sig_streamed123", provider=PROVIDER),
        Text("Let me read that."),
        ServerToolCall("s1", "web_search", {"query": "weather"}),
        ServerToolResult("s1", "web_search_tool_result", []),
        ToolCall("toolu_01", "read", {"file_path": "mix.exs"}),
        ToolCall("toolu_02", "bash", {}),
    )
    assert completion.stop_reason is StopReason.TOOL_USE
    assert completion.usage == Usage(input_tokens=5, output_tokens=50)
    assert completion.model == "claude-x"


def test_stream_usage_is_cumulative_last_value_wins() -> None:
    # The recorded quirk: message_delta restates input and cache counts, different from
    # message_start's. Take the last value of each field; never add.
    start = {
        "type": "message_start",
        "message": {
            "model": "m",
            "usage": {
                "input_tokens": 2293,
                "cache_read_input_tokens": 10,
                "cache_creation_input_tokens": 0,
                "output_tokens": 1,
            },
        },
    }
    _, completion = stream_of(
        start,
        end("end_turn", input_tokens=4714, cache_read_input_tokens=20, output_tokens=150),
        {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 304}},
        STOP,
    )
    assert completion.usage == Usage(input_tokens=4734, output_tokens=304, cache_read_tokens=20)
    assert completion.stop_reason is StopReason.END_TURN  # an empty delta keeps the reason


def test_stream_redacted_thinking_and_unknown_blocks() -> None:
    mcp = {"type": "mcp_tool_use", "id": "m1", "name": "ask", "server_name": "wiki", "input": {}}
    deltas, completion = stream_of(
        START,
        block_start(0, {"type": "redacted_thinking", "data": "EqkE"}),
        block_stop(0),
        block_start(1, mcp),
        block_delta(1, {"type": "input_json_delta", "partial_json": '{"q": 1}'}),
        block_stop(1),
        block_start(2, {"type": "compaction", "content": "summary"}),
        block_delta(2, {"type": "delta_from_the_future", "x": 1}),
        block_stop(2),
        end(),
        STOP,
    )
    assert deltas == []
    assert completion.message.content == (
        RedactedThinking("EqkE", provider=PROVIDER),
        UnknownBlock({**mcp, "input": {"q": 1}}, provider=PROVIDER),
        UnknownBlock({"type": "compaction", "content": "summary"}, provider=PROVIDER),
    )


def test_stream_text_in_the_start_event_is_a_delta_too() -> None:
    deltas, completion = stream_of(
        START,
        block_start(0, {"type": "text", "text": "Hel"}),
        block_delta(0, {"type": "text_delta", "text": "lo"}),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "t", "name": "n", "input": {"a": 1}}),
        block_stop(1),
        end("tool_use"),
        STOP,
    )
    assert completion.message.content == (Text("Hello"), ToolCall("t", "n", {"a": 1}))
    assert_deltas_add_up(deltas, completion.message)


def test_stream_error_event_raises_the_typed_error() -> None:
    decoder = StreamDecoder(
        headers={"request-id": "req_h", "anthropic-ratelimit-requests-limit": "50"}
    )
    decoder.feed(SSEEvent(json.dumps(START), event="message_start"))
    decoder.feed(
        SSEEvent(
            json.dumps(block_start(0, {"type": "text", "text": ""})), event="content_block_start"
        )
    )
    assert decoder.feed(
        SSEEvent(
            json.dumps(block_delta(0, {"type": "text_delta", "text": "partial"})),
            event="content_block_delta",
        )
    ) == [TextDelta(text="partial")]
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(OverloadedError) as caught:
        decoder.feed(SSEEvent(json.dumps(error), event="error"))
    assert caught.value.status is None and caught.value.retryable
    assert caught.value.error_type == "overloaded_error" and "Overloaded" in str(caught.value)
    assert caught.value.request_id == "req_h"
    assert caught.value.rate_limits == {"anthropic-ratelimit-requests-limit": "50"}
    # Without headers, the event's own request_id is used.
    with pytest.raises(ServerError) as caught_api:
        StreamDecoder().feed(
            SSEEvent(
                json.dumps(
                    {
                        "type": "error",
                        "error": {"type": "api_error", "message": "boom"},
                        "request_id": "req_e",
                    }
                )
            )
        )
    assert caught_api.value.request_id == "req_e"


@pytest.mark.parametrize(
    ("payloads", "fragment"),
    [
        ([], "before message_start"),
        ([START], "before message_stop"),
        ([START, block_start(0, {"type": "text", "text": ""}), end()], "before message_stop"),
    ],
)
def test_stream_cut_before_its_end_is_a_protocol_error(
    payloads: list[dict[str, Any]], fragment: str
) -> None:
    decoder = StreamDecoder()
    for payload in payloads:
        decoder.feed(SSEEvent(json.dumps(payload)))
    with pytest.raises(ProtocolError, match=fragment):
        decoder.finish()


def test_invalid_tool_json_in_a_complete_stream_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="'read'"):
        stream_of(
            START,
            block_start(0, {"type": "tool_use", "id": "t", "name": "read", "input": {}}),
            block_delta(0, {"type": "input_json_delta", "partial_json": '{"path": '}),
            block_stop(0),
            end("tool_use"),
            STOP,
        )
    with pytest.raises(ProtocolError, match="'read'"):  # JSON, but not an object
        stream_of(
            START,
            block_start(0, {"type": "tool_use", "id": "t", "name": "read", "input": {}}),
            block_delta(0, {"type": "input_json_delta", "partial_json": "[1]"}),
            block_stop(0),
            end("tool_use"),
            STOP,
        )


@pytest.mark.parametrize("reason", ["max_tokens", "model_context_window_exceeded", "refusal"])
def test_truncated_tool_json_keeps_the_call_with_its_raw_text(reason: str) -> None:
    deltas, completion = stream_of(
        START,
        block_start(0, {"type": "text", "text": ""}),
        block_delta(0, {"type": "text_delta", "text": "Writing"}),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "t", "name": "write", "input": {}}),
        block_delta(1, {"type": "input_json_delta", "partial_json": '{"content": "lo'}),
        end(reason, output_tokens=4096),
        STOP,
    )
    assert completion.stop_reason is (
        StopReason.REFUSAL if reason == "refusal" else StopReason.MAX_TOKENS
    )
    assert completion.message.content == (
        Text("Writing"),
        ToolCall("t", "write", {"_raw": '{"content": "lo'}),
    )
    assert deltas[-1] == ToolCallDelta(index=0, arguments='{"content": "lo')


def test_stream_quirks_padding_no_event_names_and_unknown_events() -> None:
    body = (
        b'data: {"type":"message_start","message":{"model":"m","usage":{"input_tokens":1}}}     \n\n'
        b": keep-alive comment\n\n"
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}  \n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ok"}        }\n\n'
        b'event: something_new\ndata: {"type":"something_new","x":1}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0   }\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"               }\n\n'
    )
    deltas, completion = decode_stream(body)
    assert deltas == [TextDelta(text="ok")]
    assert completion.message.text == "ok" and completion.usage == Usage(
        input_tokens=1, output_tokens=2
    )


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("{not json", "not JSON"),
        ("[1]", "not a JSON object"),
        (json.dumps(block_delta(3, {"type": "text_delta", "text": "x"})), "never started"),
        (json.dumps(block_stop(3)), "never started"),
        (json.dumps({"type": "content_block_start", "index": 0}), "malformed"),
        (json.dumps(block_start(0, {"type": "tool_use", "name": "n", "input": {}})), "'id'"),
    ],
)
def test_malformed_stream_events_are_protocol_errors(data: str, fragment: str) -> None:
    decoder = StreamDecoder()
    decoder.feed(SSEEvent(json.dumps(START)))
    with pytest.raises(ProtocolError, match=fragment):
        decoder.feed(SSEEvent(data))


def test_deltas_of_the_wrong_kind_are_protocol_errors() -> None:
    for start, delta in [
        (
            {"type": "tool_use", "id": "t", "name": "n", "input": {}},
            {"type": "text_delta", "text": "x"},
        ),
        ({"type": "text", "text": ""}, {"type": "input_json_delta", "partial_json": "{}"}),
        ({"type": "text", "text": ""}, {"type": "thinking_delta", "thinking": "x"}),
        ({"type": "text", "text": ""}, {"type": "signature_delta", "signature": "x"}),
        ({"type": "text", "text": ""}, {"type": "text_delta", "text": 5}),
    ]:
        decoder = StreamDecoder()
        decoder.feed(SSEEvent(json.dumps(block_start(0, start))))
        with pytest.raises(ProtocolError):
            decoder.feed(SSEEvent(json.dumps(block_delta(0, delta))))
    decoder = StreamDecoder()
    decoder.feed(SSEEvent(json.dumps(block_start(0, {"type": "text", "text": ""}))))
    with pytest.raises(ProtocolError, match="twice"):
        decoder.feed(SSEEvent(json.dumps(block_start(0, {"type": "text", "text": ""}))))


def test_empty_data_and_done_sentinel_are_ignored() -> None:
    decoder = StreamDecoder()
    assert decoder.feed(SSEEvent("")) == [] and decoder.feed(SSEEvent("[DONE]")) == []


def test_tool_arguments_are_assembled_in_linear_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # No clock: count the characters the decoder hands to json.loads. Parsing every event once
    # and the joined arguments once is linear; parsing the arguments collected so far on every
    # fragment (or every few) is quadratic and hands json.loads about count**2 / k characters.
    # The wall-clock scaling is measured in benchmarks/bench_codecs.py.
    count = 20_000
    events = [
        SSEEvent(json.dumps(payload))
        for payload in [
            START,
            block_start(0, {"type": "tool_use", "id": "t", "name": "write", "input": {}}),
            block_delta(0, {"type": "input_json_delta", "partial_json": '{"content": "'}),
        ]
    ]
    events += [
        SSEEvent(json.dumps(block_delta(0, {"type": "input_json_delta", "partial_json": "ab"})))
    ] * count
    events += [
        SSEEvent(json.dumps(payload))
        for payload in [
            block_delta(0, {"type": "input_json_delta", "partial_json": '"}'}),
            block_stop(0),
            end("tool_use"),
            STOP,
        ]
    ]
    completion, parsed = decode_counting_json(monkeypatch, anthropic, events)
    assert completion.message.tool_calls[0].arguments == {"content": "ab" * count}
    per_event = sum(len(event.data) for event in events)
    arguments = len('{"content": "') + 2 * count + len('"}')
    assert parsed >= per_event + arguments  # every event, and the arguments once
    assert parsed - per_event <= 3 * arguments, (parsed - per_event) / arguments


# -- decode_error ------------------------------------------------------------------------------


def err(status: int, body: bytes | str, **headers: str) -> ProviderError:
    raw = body.encode() if isinstance(body, str) else body
    return decode_error(status, {k.replace("_", "-"): v for k, v in headers.items()}, raw)


def anthropic_error(kind: str, message: str) -> str:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}})


@pytest.mark.parametrize(
    ("status", "kind", "cls", "retryable"),
    [
        (400, "invalid_request_error", InvalidRequestError, False),
        (401, "authentication_error", AuthenticationError, False),
        (403, "permission_error", PermissionDeniedError, False),
        (404, "not_found_error", NotFoundError, False),
        (413, "request_too_large", InvalidRequestError, False),
        (429, "rate_limit_error", RateLimitError, True),
        (500, "api_error", ServerError, True),
        (529, "overloaded_error", OverloadedError, True),
    ],
)
def test_decode_error_by_status(
    status: int, kind: str, cls: type[ProviderError], retryable: bool
) -> None:
    error = err(status, anthropic_error(kind, "details here"), request_id="req_1")
    assert type(error) is cls
    assert (error.status, error.error_type, error.retryable) == (status, kind, retryable)
    assert "details here" in str(error) and kind in str(error)
    assert error.request_id == "req_1" and error.provider == PROVIDER


def test_decode_error_context_length_retry_after_and_odd_bodies() -> None:
    long = err(
        400,
        anthropic_error(
            "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"
        ),
    )
    assert isinstance(long, ContextLengthExceeded)
    limited = err(
        429, "Too Many Requests", retry_after="7", anthropic_ratelimit_tokens_remaining="0"
    )
    assert isinstance(limited, RateLimitError)
    assert limited.retry_after == 7 and "Too Many Requests" in str(limited)
    assert limited.rate_limits == {"anthropic-ratelimit-tokens-remaining": "0"}
    gateway = err(502, "Bad Gateway")
    assert (
        isinstance(gateway, ServerError) and "502" in str(gateway) and gateway.body == "Bad Gateway"
    )
    assert "boom" in str(err(400, '{"error": "boom"}'))
    assert "plain" in str(err(400, '{"message": "plain"}'))
    assert (
        err(400, '{"error": {"type": "invalid_request_error"}}').error_type
        == "invalid_request_error"
    )
    assert isinstance(err(500, b"\xff\xfe"), ServerError)
    assert err(400, "[]").status == 400
    # Upper-case header names still work.
    assert decode_error(500, {"Request-Id": "req_U"}, b"x").request_id == "req_U"


# -- ported from Alloy 0.7.4 test/alloy/provider/anthropic_test.exs --------------------------------


def test_074_normalized_end_turn_and_tool_use_responses() -> None:
    text = decode_response(
        reply(
            [{"type": "text", "text": "Hello!"}],
            stop_reason="end_turn",
            usage={"input_tokens": 10, "output_tokens": 5},
        )
    )
    assert text.message.text == "Hello!" and text.stop_reason == "end_turn"
    assert text.usage == Usage(input_tokens=10, output_tokens=5)
    tool = decode_response(
        reply(
            [
                {"type": "text", "text": "Reading"},
                {
                    "type": "tool_use",
                    "id": "toolu_01",
                    "name": "read",
                    "input": {"file_path": "mix.exs"},
                },
            ],
            stop_reason="tool_use",
        )
    )
    assert tool.message.tool_calls == (ToolCall("toolu_01", "read", {"file_path": "mix.exs"}),)
    assert tool.stop_reason == "tool_use" and len(tool.message.content) == 2


def test_074_server_tool_use_is_parsed_and_round_trips() -> None:
    completion = decode_response(
        reply(
            [{"type": "server_tool_use", "id": "srvtoolu_01", "name": "read", "input": {"p": 1}}],
            stop_reason="tool_use",
        )
    )
    assert completion.message.content == (ServerToolCall("srvtoolu_01", "read", {"p": 1}),)
    assert completion.message.tool_calls == ()  # never executed locally
    history = [
        Message.user("q"),
        completion.message,
        Message.assistant(
            [ServerToolResult("srvtoolu_01", "code_execution_tool_result", {"stdout": "ok"})]
        ),
    ]
    assert encode(*history).body["messages"][1]["content"] == [
        {"type": "server_tool_use", "id": "srvtoolu_01", "name": "read", "input": {"p": 1}},
        {
            "type": "code_execution_tool_result",
            "tool_use_id": "srvtoolu_01",
            "content": {"stdout": "ok"},
        },
    ]


def test_074_cache_usage_and_errors() -> None:
    usage = {
        "input_tokens": 1,
        "output_tokens": 1,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 50,
    }
    completion = decode_response(reply([], stop_reason="end_turn", usage=usage))
    assert (completion.usage.cache_write_tokens, completion.usage.cache_read_tokens) == (100, 50)
    assert isinstance(err(500, "Internal Server Error"), ServerError)
    assert "invalid_request_error" in str(
        err(400, anthropic_error("invalid_request_error", "max_tokens: too big"))
    )
    assert isinstance(err(529, anthropic_error("overloaded_error", "Overloaded")), OverloadedError)
    assert isinstance(err(429, "Too Many Requests"), RateLimitError)


def test_074_image_block_and_thinking_round_trip_in_a_request() -> None:
    body = encode(
        Message.user([Image("image/jpeg", "base64data==")]),
        Message.assistant(
            [Thinking("Let me think", signature="sig_xyz", provider=PROVIDER), Text("42")]
        ),
    ).body
    assert body["messages"][0]["content"][0]["source"] == {
        "type": "base64",
        "media_type": "image/jpeg",
        "data": "base64data==",
    }
    assert body["messages"][1]["content"][0] == {
        "type": "thinking",
        "thinking": "Let me think",
        "signature": "sig_xyz",
    }


# -- documentation and the sans-IO rule --------------------------------------------------------


def test_module_docstrings_run() -> None:
    results = doctest.testmod(anthropic, extraglobs={"Message": Message, "Request": Request})
    assert results.failed == 0 and results.attempted >= 10


def test_every_public_name_is_documented() -> None:
    for name in anthropic.__all__:
        value = getattr(anthropic, name)
        if callable(value):
            assert value.__doc__ and ">>>" in value.__doc__, name


def test_codec_imports_neither_trio_nor_an_http_client() -> None:
    tree = ast.parse(Path(anthropic.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "json", "collections", "types", "typing", "attrs"}, imported
