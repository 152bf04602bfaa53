"""Tests for the OpenAI-compatible Chat Completions codec (``alloy._codec._chat``).

Sections:

1. every recorded exchange in ``shared/wire/recorded/openai-chat`` decodes to its ``expected``
   outcome (text, tool calls, thinking, stop reason, usage, error);
2. decoding a recorded stream does not depend on how its bytes are split;
3. the deltas add up to the completed message;
4. re-encoding each recorded conversation gives a request body of the same shape;
5. Hypothesis round trips (conversations through ``encode_request``/``decode_request``,
   assistant messages through ``alloy.testing._wire_encode.encode_chat`` and the decoders);
6. unit tests for every feature and host quirk.

Usage normalisation checked against the recordings (``expected.usage`` is raw per API):
``input_tokens`` = ``prompt_tokens`` (the chat format already counts cached tokens in it),
``output_tokens`` = ``completion_tokens``, ``cache_read_tokens`` = ``cached_tokens``,
``cache_write_tokens`` = OpenRouter's ``cache_write_tokens``; ``null`` is 0. For the four streams
marked ``usage_on_wire_dropped_by_sdk`` the expected usage is the one on the wire (our decoder
keeps it; the SDK loses it).
"""

from __future__ import annotations

import ast
import doctest
import gc
import itertools
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import alloy._codec._chat as chat_module
from alloy import (
    AuthenticationError,
    Completion,
    ContextLengthExceeded,
    Image,
    InvalidRequestError,
    Message,
    NotFoundError,
    OverloadedError,
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
from alloy._codec._chat import (
    PROVIDER,
    ChatSettings,
    StreamDecoder,
    decode_error,
    decode_request,
    decode_response,
    encode_request,
)
from alloy._codec._sse import SSEDecoder, SSEEvent
from alloy._codec._wire import Memo
from alloy._messages import Block
from alloy.testing._scripted import Reply
from alloy.testing._wire_encode import encode_chat, encode_stream
from strategies import assistant_messages, conversations, texts, usages
from support import decode_counting_json

RECORDED = Path(__file__).resolve().parents[2] / "shared" / "wire" / "recorded" / "openai-chat"
FILES = sorted(RECORDED.glob("*.json")) if RECORDED.is_dir() else []
STREAM_FILES = [path for path in FILES if json.loads(path.read_text())["stream"]]
COMPLETE_STREAM_FILES = [
    path for path in STREAM_FILES if json.loads(path.read_text())["expected"]["error"] is None
]

needs_recordings = pytest.mark.skipif(not FILES, reason=f"no recordings at {RECORDED}")


def _ids(paths: Sequence[Path]) -> list[str]:
    return [path.stem for path in paths]


def _params(paths: Sequence[Path]) -> Any:
    if paths:
        return pytest.mark.parametrize("path", paths, ids=_ids(paths))
    return pytest.mark.parametrize(
        "path", [pytest.param(None, marks=pytest.mark.skip(reason="no recordings"))]
    )


# -- helpers -------------------------------------------------------------------------------------


def sse_events(body: bytes, chunks: Iterable[bytes] | None = None) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks if chunks is not None else (body,):
        events += decoder.feed(chunk)
    return events + decoder.close()


def decode_stream(
    body: bytes, chunks: Iterable[bytes] | None = None
) -> tuple[list[Any], Completion | ProviderError]:
    """Every delta, and the completion or the error the stream ended with."""
    decoder = StreamDecoder()
    deltas: list[Any] = []
    try:
        for event in sse_events(body, chunks):
            deltas += decoder.feed(event)
        return deltas, decoder.finish()
    except ProviderError as exc:
        return deltas, exc


def random_chunks(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 40))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def chunk(delta: Mapping[str, Any] | None = None, **fields: Any) -> SSEEvent:
    """A chat chunk event with one choice holding ``delta`` (plus top-level ``fields``)."""
    body: dict[str, Any] = {"id": "chatcmpl-1", "model": "m"}
    if delta is not None or "finish_reason" in fields:
        choice = {"index": 0, "delta": dict(delta or {})}
        choice["finish_reason"] = fields.pop("finish_reason", None)
        body["choices"] = [choice]
    body.update(fields)
    return SSEEvent(json.dumps(body))


DONE = SSEEvent("[DONE]")


def run_stream(events: Iterable[SSEEvent]) -> tuple[list[Any], Completion]:
    decoder = StreamDecoder()
    deltas: list[Any] = []
    for event in events:
        deltas += decoder.feed(event)
    return deltas, decoder.finish()


def reply(message: Mapping[str, Any], finish_reason: Any = "stop", **fields: Any) -> bytes:
    body = {
        "id": "chatcmpl-1",
        "model": "m",
        "choices": [{"index": 0, "message": dict(message), "finish_reason": finish_reason}],
        **fields,
    }
    return json.dumps(body).encode()


def thinking_text(message: Message) -> str | None:
    parts = [block.text for block in message.content if type(block) is Thinking]
    return "".join(parts) if parts else None


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def expected_usage(expected: Mapping[str, Any]) -> Usage:
    raw = expected["usage"]
    dropped = expected["extra"].get("usage_on_wire_dropped_by_sdk")
    if dropped:  # the usage is on the wire; the SDK lost it, we keep it
        details = dropped.get("prompt_tokens_details") or {}
        raw = {
            "input_tokens": dropped.get("prompt_tokens"),
            "output_tokens": dropped.get("completion_tokens"),
            "cache_read_tokens": details.get("cached_tokens"),
            "cache_write_tokens": details.get("cache_write_tokens"),
        }
    # reasoning_tokens is not in expected.usage: take it from the raw usage the SDK parsed.
    raw_usage = dropped or expected["extra"].get("raw_usage") or {}
    reasoning = (raw_usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
    return Usage(
        input_tokens=raw["input_tokens"] or 0,
        output_tokens=raw["output_tokens"] or 0,
        cache_read_tokens=raw["cache_read_tokens"] or 0,
        cache_write_tokens=raw["cache_write_tokens"] or 0,
        reasoning_tokens=reasoning or 0,
    )


_FINISH = {
    "stop": StopReason.END_TURN,
    "tool_calls": StopReason.TOOL_USE,
    "length": StopReason.MAX_TOKENS,
    "content_filter": StopReason.REFUSAL,
}


def expected_tool_calls(expected: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The SDK's tool calls, except that a call the host sent without an id (Gemini: ``""``)
    gets our synthetic ``call_<reply id>_<position>`` so its result can be matched to it."""
    calls = []
    for position, call in enumerate(expected["tool_calls"]):
        call_id = call["id"] or f"call_{expected['extra']['id']}_{position}"
        calls.append({"id": call_id, "name": call["name"], "arguments": call["arguments"]})
    return calls


# -- 1. every recording decodes to its expected outcome -------------------------------------------


@needs_recordings
def test_there_are_recordings_of_every_kind() -> None:
    assert len(FILES) >= 140
    assert len(STREAM_FILES) >= 15


@_params(FILES)
def test_recorded_exchange(path: Path) -> None:
    data = load(path)
    response, expected = data["response"], data["expected"]
    body = response["body"].encode()
    deltas: list[Any] = []
    outcome: Completion | ProviderError
    if response["status"] != 200:
        headers = {"content-type": response["content_type"]}
        outcome = decode_error(response["status"], headers, body)
    elif data["stream"]:
        deltas, outcome = decode_stream(body)
    else:
        try:
            outcome = decode_response(body)
        except ProviderError as exc:
            outcome = exc

    error = expected["error"]
    if error is not None:
        assert isinstance(outcome, ProviderError), outcome
        assert outcome.provider == PROVIDER
        assert error["message"] in str(outcome)
        assert outcome.error_type == (error["type"] or str(error["code"]))
        if error["status"] != 200:
            assert outcome.status == error["status"]
            kind = {400: InvalidRequestError, 404: NotFoundError, 429: RateLimitError}
            assert type(outcome) is kind[error["status"]]
        else:
            # Groq's in-band error after HTTP 200: the error object names status_code 400.
            assert type(outcome) is InvalidRequestError
            assert outcome.status == 400
        return

    assert isinstance(outcome, Completion), outcome
    message = outcome.message
    assert message.role == "assistant"
    assert message.text == expected["text"]
    calls = [
        {"id": call.id, "name": call.name, "arguments": dict(call.arguments)}
        for call in message.tool_calls
    ]
    assert calls == expected_tool_calls(expected)
    assert thinking_text(message) == expected["thinking"]
    for block in message.content:
        if isinstance(block, Thinking):
            assert block.provider == PROVIDER
    # No server tools in chat recordings: nothing may turn into a ServerToolCall by accident.
    assert not [b for b in message.content if isinstance(b, ServerToolCall | ServerToolResult)]
    stop = _FINISH[expected["stop_reason"]]
    if message.tool_calls and stop is StopReason.END_TURN:
        stop = StopReason.TOOL_USE  # tool calls are honoured whatever finish_reason says
    assert outcome.stop_reason is stop
    assert outcome.usage == expected_usage(expected)
    assert outcome.model == expected["extra"]["model"]
    if data["stream"]:
        assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == message.text


@needs_recordings
def test_recorded_in_stream_errors_keep_the_partial_deltas() -> None:
    """Groq's ``event: error`` after partial output: the deltas already decoded stay delivered
    (the stream's consumer keeps them in the partial result), then the typed error is raised."""
    path = RECORDED / "test_groq__test_tool_use_failed_error_streaming_with_text__0.json"
    deltas, outcome = decode_stream(load(path)["response"]["body"].encode())
    assert isinstance(outcome, InvalidRequestError)
    assert outcome.error_type == "invalid_request_error"
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == "maybe"
    assert any(isinstance(d, ThinkingDelta) for d in deltas)


# -- 2. split invariance ----------------------------------------------------------------------------


@_params(STREAM_FILES)
def test_recorded_stream_is_split_invariant(path: Path) -> None:
    body = load(path)["response"]["body"].encode()
    whole = decode_stream(body)
    rng = random.Random(path.stem)
    for _ in range(5):
        split = decode_stream(body, random_chunks(body, rng))
        assert split[0] == whole[0]
        if isinstance(whole[1], ProviderError):
            assert type(split[1]) is type(whole[1])
            assert str(split[1]) == str(whole[1])
        else:
            assert split[1] == whole[1]
    one_byte = decode_stream(body, [body[i : i + 1] for i in range(len(body))])
    assert one_byte[0] == whole[0]


# -- 3. the deltas add up --------------------------------------------------------------------------


def assert_deltas_add_up(deltas: Sequence[Any], completion: Completion) -> None:
    message = completion.message
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == message.text
    thinking = "".join(d.text for d in deltas if isinstance(d, ThinkingDelta))
    assert thinking == (thinking_text(message) or "")
    started = [d for d in deltas if isinstance(d, ToolCallStarted)]
    calls = message.tool_calls
    assert [(d.index, d.id, d.name) for d in started] == [
        (i, c.id, c.name) for i, c in enumerate(calls)
    ]
    seen: set[int] = set()
    for delta in deltas:
        if isinstance(delta, ToolCallStarted):
            seen.add(delta.index)
        elif isinstance(delta, ToolCallDelta):
            assert delta.index in seen, "a fragment came before its ToolCallStarted"
    for index, call in enumerate(calls):
        text = "".join(
            d.arguments for d in deltas if isinstance(d, ToolCallDelta) and d.index == index
        )
        assert (json.loads(text) if text else {}) == dict(call.arguments)


def padded(event: SSEEvent) -> SSEEvent:
    """``event`` with whitespace around its JSON (the parser's fast path leaves it to
    ``json.loads``); ``[DONE]`` as it is."""
    return event if event.is_done else event._replace(data=f" {event.data}\n\t")


@_params(STREAM_FILES)
def test_recorded_stream_with_whitespace_around_the_json(path: Path) -> None:
    events = sse_events(load(path)["response"]["body"].encode())
    outcomes = []
    for stream in (events, [padded(event) for event in events]):
        decoder = StreamDecoder()
        deltas: list[Any] = []
        try:
            for event in stream:
                deltas += decoder.feed(event)
            outcomes.append((deltas, decoder.finish()))
        except ProviderError as exc:
            outcomes.append((deltas, (type(exc), str(exc))))
    assert outcomes[1] == outcomes[0]


@_params(COMPLETE_STREAM_FILES)
def test_recorded_stream_deltas_add_up(path: Path) -> None:
    deltas, outcome = decode_stream(load(path)["response"]["body"].encode())
    assert isinstance(outcome, Completion), outcome
    assert_deltas_add_up(deltas, outcome)


# -- 4. re-encoding a recorded conversation gives the same shape ------------------------------------


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text") or "" for p in content or () if p.get("type") == "text")


def _only_text(content: Any) -> bool:
    return (
        content is None or isinstance(content, str) or all(p.get("type") == "text" for p in content)
    )


def _part(part: Mapping[str, Any]) -> Any:
    if part.get("type") == "text":
        return {"type": "text", "text": part["text"]}
    if part.get("type") == "image_url":
        url = part["image_url"]
        return {"type": "image_url", "url": url["url"] if isinstance(url, Mapping) else url}
    return dict(part)


def normalised_messages(messages: Sequence[Mapping[str, Any]]) -> list[Any]:
    """A wire conversation without the freedoms the format allows: system messages (compared
    apart), text given as parts or as a string, ``cache_control`` on parts, ``null`` keys,
    argument strings formatted differently, ``content: null`` or missing or ``""``."""
    shaped: list[Any] = []
    for message in messages:
        role = message["role"]
        content = message.get("content")
        if role in ("system", "developer"):
            continue
        if role == "tool":
            shaped.append(("tool", message["tool_call_id"], _text_of(content)))
        elif role == "user":
            if _only_text(content):
                shaped.append(("user", _text_of(content)))
            else:
                parts = [_part(p) for p in content if p.get("type") != "text" or p.get("text")]
                shaped.append(("user", parts))
        else:
            calls = [
                (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"] or "{}"))
                for c in message.get("tool_calls") or ()
            ]
            reasoning = message.get("reasoning_content", message.get("reasoning"))
            shaped.append(("assistant", _text_of(content) or None, calls, reasoning or None))
    return shaped


@_params(FILES)
def test_recorded_request_re_encodes_to_the_same_shape(path: Path) -> None:
    data = load(path)
    recorded = data["request"]["body"]
    request = decode_request(recorded)
    sends_reasoning = any(
        m.get("reasoning_content") is not None or m.get("reasoning") is not None
        for m in recorded["messages"]
        if m["role"] == "assistant"
    )
    settings = ChatSettings(model=recorded["model"], send_reasoning=sends_reasoning)
    ours = encode_request(request, settings, stream=recorded["stream"]).body

    # Every field of the recorded body is in ours (extra fields travel as Request.options);
    # an empty list (HuggingFace's "tools": []) is left out.
    assert {key for key, value in recorded.items() if value != []} <= set(ours)
    assert ours["model"] == recorded["model"]
    assert ours["stream"] == recorded["stream"]
    # The system prompt: one system message first, holding every system/developer text.
    systems = [m for m in recorded["messages"] if m["role"] in ("system", "developer")]
    if systems:
        assert ours["messages"][0] == {
            "role": "system",
            "content": "\n\n".join(_text_of(m["content"]) for m in systems),
        }
    else:
        assert ours["messages"][0]["role"] != "system"
    assert normalised_messages(ours["messages"]) == normalised_messages(recorded["messages"])
    # Every message has exactly the keys of its role.
    for message in ours["messages"]:
        keys = set(message)
        if message["role"] == "tool":
            assert keys == {"role", "tool_call_id", "content"}
        elif message["role"] == "assistant":
            assert (
                {"role", "content"}
                <= keys
                <= {"role", "content", "tool_calls", "reasoning_content"}
            )
            for call in message.get("tool_calls", ()):
                assert set(call) == {"id", "type", "function"}
                assert set(call["function"]) == {"name", "arguments"}
                assert isinstance(call["function"]["arguments"], str)
        else:
            assert keys == {"role", "content"}
    # Tools: the same functions with the same schemas, in the chat shape. A host's own tools
    # (OpenRouter's {"type": "openrouter:advisor"}) travel as options["tools"] and come after.
    recorded_tools = recorded.get("tools") or []
    assert len(ours.get("tools", [])) == len(recorded_tools)
    for mine, theirs in zip(ours.get("tools", []), recorded_tools, strict=True):
        if theirs.get("type", "function") != "function":
            assert mine == theirs
            continue
        assert mine["type"] == "function"
        assert set(mine["function"]) == {"name", "description", "parameters"}
        assert mine["function"]["name"] == theirs["function"]["name"]
        assert mine["function"]["parameters"] == theirs["function"].get("parameters", {})


# -- 5. Hypothesis round trips ---------------------------------------------------------------------


def _sent_as_reasoning(block: Block) -> bool:
    return type(block) is Thinking and (
        block.provider == PROVIDER or (block.provider is None and block.signature is None)
    )


def expected_after_request(conversation: Sequence[Message]) -> list[Message]:
    """What ``decode_request(encode_request(...))`` gives back: the documented losses applied."""
    result: list[Message] = []
    for message in conversation:
        if message.role == "assistant":
            reasoning = "".join(b.text for b in message.content if _sent_as_reasoning(b))
            text = "".join(b.text for b in message.content if type(b) is Text)
            calls = [b for b in message.content if type(b) is ToolCall]
            if not text and not calls:
                continue  # nothing to send
            blocks: list[Block] = []
            if reasoning:
                blocks.append(Thinking(reasoning, provider=PROVIDER))
            if text:
                blocks.append(Text(text))
            result.append(Message.assistant([*blocks, *calls]))
            continue
        results: list[Block] = []
        rest: list[Block] = []
        for block in message.content:
            if type(block) is ToolResult:
                if not block.is_error and block.content.startswith("Error: "):
                    # The wire has no error flag; "Error: " is how is_error travels.
                    block = ToolResult(block.call_id, block.content[7:], True)
                results.append(block)
            elif (type(block) is Text and block.text) or type(block) is Image:
                rest.append(block)
        if all(type(b) is Text for b in rest):
            joined = "".join(b.text for b in rest if type(b) is Text)
            rest = [Text(joined)] if joined else []
        if results or rest:
            result.append(Message.user([*results, *rest]))
    # decode_request puts tool results into the user message that follows them on the wire.
    merged: list[Message] = []
    for message in result:
        previous = merged[-1] if merged else None
        if (
            previous is not None
            and message.role == previous.role == "user"
            and all(type(block) is ToolResult for block in previous.content)
        ):
            merged[-1] = Message.user([*previous.content, *message.content])
        else:
            merged.append(message)
    return merged


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(conversation=conversations(), system=st.none() | texts())
def test_conversation_round_trips_through_the_request(
    conversation: list[Message], system: str | None
) -> None:
    request = Request(messages=tuple(conversation), system_prompt=system)
    body = encode_request(request, ChatSettings(model="m", send_reasoning=True), stream=False).body
    json.dumps(body)  # the body is plain JSON
    decoded = decode_request(json.loads(json.dumps(body)))
    assert decoded.system_prompt == (system or None)
    assert list(decoded.messages) == expected_after_request(conversation)


def expected_reply(message: Message, *, streamed: bool, encoded: bool = True) -> Message:
    """What the decoders make of ``message`` sent as a reply: the chat format keeps chat
    reasoning, text and tool calls; the JSON reply joins all reasoning and all text, a stream keeps
    their order (adjacent pieces of a kind joined); tool calls come last. A call without an id
    gets ``call_1``, ``call_2``... from the wire encoder (``encoded``), else the decoder's
    ``call_<reply id>_<position>``."""
    pieces: list[tuple[str, str]] = []
    for block in message.content:
        if isinstance(block, Text) and block.text:
            kind, text = "text", block.text
        elif isinstance(block, Thinking) and _sent_as_reasoning(block) and block.text:
            kind, text = "thinking", block.text
        else:
            continue
        if pieces and pieces[-1][0] == kind:
            kind, text = kind, pieces.pop()[1] + text
        pieces.append((kind, text))
    if not streamed:
        reasoning = "".join(text for kind, text in pieces if kind == "thinking")
        joined = "".join(text for kind, text in pieces if kind == "text")
        pieces = [("thinking", reasoning), ("text", joined)]
    segments: list[Block] = [
        Text(text) if kind == "text" else Thinking(text, provider=PROVIDER)
        for kind, text in pieces
        if text
    ]
    calls = [
        ToolCall(
            c.id or (f"call_{i + 1}" if encoded else f"call_chatcmpl-alloy_{i}"),
            c.name,
            c.arguments,
        )
        for i, c in enumerate(message.tool_calls)
    ]
    return Message.assistant([*segments, *calls])


def _stop_for(message: Message) -> StopReason:
    return StopReason.TOOL_USE if message.tool_calls else StopReason.END_TURN


def as_reply(completion: Completion) -> Reply:
    """``completion`` as the reply a chat host sends: the blocks the chat format carries (text,
    tool calls and chat reasoning; the wire encoder numbers id-less calls ``call_1``...)."""
    blocks = tuple(
        block
        for block in completion.message.content
        if type(block) in (Text, ToolCall) or _sent_as_reasoning(block)
    )
    return Reply(blocks=blocks, stop_reason=completion.stop_reason, usage=completion.usage)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(message=assistant_messages(), usage=usages())
def test_assistant_message_round_trips_through_a_json_reply(message: Message, usage: Usage) -> None:
    assume(all(call.name for call in message.tool_calls))  # a nameless call is a protocol error
    completion = Completion(message=message, stop_reason=_stop_for(message), usage=usage, model="m")
    body = encode_chat(as_reply(completion), model="m")
    decoded = decode_response(body)
    assert decoded.message == expected_reply(message, streamed=False)
    assert decoded.stop_reason is completion.stop_reason
    assert decoded.usage == usage
    assert decoded.model == "m"


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(message=assistant_messages(), usage=usages(), data=st.data())
def test_assistant_message_round_trips_through_a_stream(
    message: Message, usage: Usage, data: st.DataObject
) -> None:
    assume(all(call.name for call in message.tool_calls))
    completion = Completion(message=message, stop_reason=_stop_for(message), usage=usage, model="m")
    chunk_size = data.draw(st.integers(1, 20))
    raw = encode_chat(as_reply(completion), model="m", stream=True, chunk_size=chunk_size)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(raw) - 1)), max_size=12)))
    bounds = [0, *cuts, len(raw)]
    deltas, decoded = decode_stream(raw, [raw[a:b] for a, b in itertools.pairwise(bounds)])
    assert isinstance(decoded, Completion), decoded
    assert decoded.message == expected_reply(message, streamed=True)
    assert decoded.stop_reason is completion.stop_reason
    assert decoded.usage == usage
    assert decoded.model == "m"
    assert_deltas_add_up(deltas, decoded)


@settings(max_examples=100)
@given(message=assistant_messages())
def test_assistant_message_in_a_request_decodes_like_a_reply(message: Message) -> None:
    """The assistant message encode_request sends is the ``message`` a host would reply with."""
    assume(all(call.name for call in message.tool_calls))
    request = Request(messages=(message,))
    wire = encode_request(request, ChatSettings(model="m", send_reasoning=True), stream=False)
    assume(wire.body["messages"])
    body = json.dumps(
        {"id": "chatcmpl-alloy", "choices": [{"index": 0, "message": wire.body["messages"][0]}]}
    ).encode()
    assert decode_response(body).message == expected_reply(message, streamed=False, encoded=False)


# -- 6. encoding -----------------------------------------------------------------------------------

READ = ToolSpec(
    "read", "Read a file.", {"type": "object", "properties": {"path": {"type": "string"}}}
)


def encode(*messages: Message, stream: bool = False, **kwargs: Any) -> dict[str, Any]:
    system = kwargs.pop("system_prompt", None)
    tools = kwargs.pop("tools", ())
    options = kwargs.pop("options", {})
    settings_ = ChatSettings(model=kwargs.pop("model", "m"), **kwargs)
    request = Request(messages=messages, system_prompt=system, tools=tools, options=options)
    return dict(encode_request(request, settings_, stream=stream).body)


def test_settings_defaults() -> None:
    settings_ = ChatSettings(model="llama3.2")
    assert settings_.api_key is None
    assert settings_.chat_path == "/v1/chat/completions"
    assert settings_.max_tokens is None
    assert settings_.include_usage is True
    assert settings_.send_reasoning is False
    assert settings_.extra_headers == ()
    assert settings_.tool_choice is None and settings_.parallel_tool_calls is None
    assert settings_.extra_body is None
    with pytest.raises(TypeError):
        ChatSettings("llama3.2")  # type: ignore[misc]  # keyword-only
    assert ChatSettings(model="m", extra_headers=[("x-a", "1")]).extra_headers == (("x-a", "1"),)


def test_request_path_and_headers() -> None:
    request = Request(messages=(Message.user("hi"),))
    http = encode_request(
        request,
        ChatSettings(
            model="gemini-2.5-flash",
            api_key="k-1",
            chat_path="/v1beta/openai/chat/completions",
            extra_headers=(("x-title", "alloy"), ("http-referer", "https://example.org")),
        ),
        stream=False,
    )
    assert http.method == "POST"
    assert http.path == "/v1beta/openai/chat/completions"
    assert http.headers == (
        ("authorization", "Bearer k-1"),
        ("x-title", "alloy"),
        ("http-referer", "https://example.org"),
    )
    assert http.stream is False
    keyless = encode_request(request, ChatSettings(model="llama3.2"), stream=True)
    assert keyless.headers == () and keyless.stream is True
    assert not any(name.lower() == "content-type" for name, _ in http.headers)


def test_body_fields_in_order() -> None:
    body = encode(
        Message.user("hi"),
        stream=True,
        tools=(READ,),
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=256,
        extra_body={"reasoning_effort": "low", "top_p": 0.5},
        options={"temperature": 0.2, "top_p": 0.9},
    )
    assert list(body) == [
        "model",
        "messages",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_tokens",
        "stream",
        "stream_options",
        "reasoning_effort",
        "top_p",
        "temperature",
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "read",
                "description": "Read a file.",
                "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
            },
        }
    ]
    assert body["tool_choice"] == "required"
    assert body["parallel_tool_calls"] is False
    assert body["max_tokens"] == 256
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["top_p"] == 0.9  # request.options win over extra_body
    assert body["temperature"] == 0.2


def test_optional_body_fields_are_left_out() -> None:
    body = encode(Message.user("hi"), tool_choice={"type": "function", "function": {"name": "x"}})
    assert body == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    streamed = encode(Message.user("hi"), stream=True, include_usage=False)
    assert "stream_options" not in streamed and streamed["stream"] is True
    with_tool = encode(Message.user("hi"), tools=(READ,), tool_choice={"type": "function"})
    assert with_tool["tool_choice"] == {"type": "function"}
    assert "parallel_tool_calls" not in with_tool


def test_options_override_settings_fields() -> None:
    body = encode(Message.user("hi"), max_tokens=10, options={"max_tokens": 20, "stream": True})
    assert body["max_tokens"] == 20


def test_system_prompt_is_the_first_message() -> None:
    body = encode(Message.user("hi"), system_prompt="Be brief.")
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    assert encode(Message.user("hi"), system_prompt="")["messages"] == [
        {"role": "user", "content": "hi"}
    ]


def test_user_text_is_a_string_and_images_make_parts() -> None:
    png = Image("image/png", "iVBORw0KGgo=")
    assert encode(Message.user([Text("a"), Text(""), Text("b")]))["messages"] == [
        {"role": "user", "content": "ab"}
    ]
    assert encode(Message.user([Text("What is this?"), Text(""), png]))["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        }
    ]


def test_tool_results_become_tool_messages_before_the_user_text() -> None:
    message = Message.user(
        [
            Text("Also, hurry."),
            ToolResult("call_1", "42 lines"),
            ToolResult("call_2", "file not found: x.py", is_error=True),
        ]
    )
    assert encode(message)["messages"] == [
        {"role": "tool", "tool_call_id": "call_1", "content": "42 lines"},
        # The chat format has no error flag: the prefix tells the model the call failed.
        {"role": "tool", "tool_call_id": "call_2", "content": "Error: file not found: x.py"},
        {"role": "user", "content": "Also, hurry."},
    ]


def test_assistant_tool_calls() -> None:
    message = Message.assistant(
        [ToolCall("call_1", "read", {"path": "é.py"}), ToolCall("call_2", "bash", {})]
    )
    (wire,) = encode(message)["messages"]
    assert wire == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "read", "arguments": '{"path": "é.py"}'},
            },
            {"id": "call_2", "type": "function", "function": {"name": "bash", "arguments": "{}"}},
        ],
    }
    text_and_call = encode(Message.assistant([Text("Let me look."), ToolCall("c", "read", {})]))
    assert text_and_call["messages"][0]["content"] == "Let me look."


def test_arguments_from_a_mapping_proxy_serialise() -> None:
    from types import MappingProxyType

    call = ToolCall("c", "read", MappingProxyType({"nested": MappingProxyType({"a": (1, 2)})}))
    wire = encode(Message.assistant([call]))["messages"][0]["tool_calls"][0]
    assert json.loads(wire["function"]["arguments"]) == {"nested": {"a": [1, 2]}}


def test_reasoning_is_sent_back_only_when_asked() -> None:
    mine = Thinking("2+2 is 4.", provider=PROVIDER)
    message = Message.assistant([mine, Text("4")])
    assert encode(message)["messages"] == [{"role": "assistant", "content": "4"}]
    assert encode(message, send_reasoning=True)["messages"] == [
        {"role": "assistant", "content": "4", "reasoning_content": "2+2 is 4."}
    ]
    # With send_reasoning every assistant message carries the field (DeepSeek wants it).
    plain = encode(Message.assistant("4"), send_reasoning=True)["messages"][0]
    assert plain["reasoning_content"] == ""


def test_reasoning_of_other_wire_formats_is_never_sent() -> None:
    message = Message.assistant(
        [
            Thinking("signed elsewhere", signature="EqQB", provider="anthropic"),
            Thinking("a responses summary", provider="openai", id="rs_1"),
            Thinking("unsigned, no provider"),
            Thinking("signature without provider", signature="sig"),
            RedactedThinking("opaque", provider="anthropic"),
            Text("ok"),
        ]
    )
    (wire,) = encode(message, send_reasoning=True)["messages"]
    assert wire == {
        "role": "assistant",
        "content": "ok",
        "reasoning_content": "unsigned, no provider",
    }


def test_server_tools_and_foreign_unknown_blocks_are_dropped() -> None:
    message = Message.assistant(
        [
            ServerToolCall("srvtoolu_1", "code_execution", {"code": "1+1"}),
            ServerToolResult("srvtoolu_1", "code_execution_tool_result", {"stdout": "2"}),
            UnknownBlock({"type": "container_upload", "file_id": "f"}, provider="anthropic"),
            UnknownBlock({"type": "mystery"}),
            Text("2"),
        ]
    )
    assert encode(message)["messages"] == [{"role": "assistant", "content": "2"}]


def test_chat_unknown_blocks_are_re_sent_verbatim() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    user = Message.user([Text("Transcribe:"), UnknownBlock(audio, provider=PROVIDER)])
    assert encode(user)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Transcribe:"}, audio]}
    ]
    part = {"type": "reference", "reference_ids": [1]}
    assistant = Message.assistant([Text("See"), UnknownBlock(part, provider=PROVIDER)])
    assert encode(assistant)["messages"] == [
        {"role": "assistant", "content": [{"type": "text", "text": "See"}, part]}
    ]


def test_messages_with_nothing_to_send_are_skipped() -> None:
    body = encode(
        Message.user("hi"),
        Message.assistant([Thinking("only thinking", provider="anthropic", signature="s")]),
        Message.assistant([Text("")]),
        Message.user([UnknownBlock({"type": "x"}, provider="anthropic")]),
        Message.user("again"),
    )
    assert body["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "user", "content": "again"},
    ]


def test_tools_are_encoded_once_and_messages_on_every_turn() -> None:
    # Tool specs are frozen and shared by every conversation: their wire form is built once.
    # Messages are encoded again (equal, not shared), so no copy of a history is kept.
    call = ToolCall("c1", "read", {"path": "a.txt"})
    history = [
        Message.user("hi"),
        Message.assistant([Thinking("hmm", provider=PROVIDER), Text("Reading."), call]),
        Message.user([ToolResult("c1", "text")]),
    ]
    tools = (READ, ToolSpec("other", "Another.", {"type": "object"}))
    first = encode(*history, tools=tools)
    again = encode(*history, Message.assistant("Done."), tools=tools)
    assert again["messages"][:-1] == first["messages"] and again["tools"] == first["tools"]
    for before, after in zip(first["messages"], again["messages"], strict=False):
        assert after is not before  # rebuilt
    assert [a is b for a, b in zip(first["tools"], again["tools"], strict=True)] == [True, True]
    # The other send_reasoning setting has its own wire form, built from the same messages.
    reasoning = encode(*history, send_reasoning=True)["messages"]
    assert (
        reasoning[1]["reasoning_content"] == "hmm"
        and "reasoning_content" not in first["messages"][1]
    )
    assert encode(*history)["messages"] == first["messages"]
    # A fresh copy of the same tool (an equal ToolSpec) encodes the same.
    copy = ToolSpec(READ.name, READ.description, dict(READ.input_schema))
    assert encode(Message.user("x"), tools=(copy,))["tools"] == first["tools"][:1]


def test_memo_forgets_what_dies_and_skips_what_it_cannot_track() -> None:
    made: list[object] = []
    memo: Memo[object, int] = Memo(lambda key: made.append(key) or len(made))
    message = Message.user("bye")
    assert memo(message) == memo(message) == 1 and len(memo) == 1
    made.clear()
    del message
    gc.collect()
    assert len(memo) == 0  # the entry went with its key: its id may be reused safely
    key = ("no", "weak", "references")  # a tuple cannot be weakly referenced: never remembered
    assert memo(key) == 1 and memo(key) == 2 and len(memo) == 0


def test_decode_request_inverts_encode_request() -> None:
    request = Request(
        messages=(
            Message.user([Text("Look:"), Image("image/jpeg", "/9j/")]),
            Message.assistant(
                [
                    Thinking("hmm", provider=PROVIDER),
                    Text("ok"),
                    ToolCall("c1", "read", {"path": "a"}),
                ]
            ),
            Message.user([ToolResult("c1", "nope", is_error=True), Text("go on")]),
        ),
        system_prompt="Be brief.",
        tools=(READ,),
        options={"temperature": 0},
    )
    settings_ = ChatSettings(model="m", send_reasoning=True, tool_choice="auto", max_tokens=5)
    body = encode_request(request, settings_, stream=True).body
    decoded = decode_request(body)
    assert decoded.messages == request.messages
    assert decoded.system_prompt == "Be brief."
    assert decoded.tools == (READ,)
    assert decoded.options == {"tool_choice": "auto", "max_tokens": 5, "temperature": 0}


def test_decode_request_keeps_unusual_parts_and_ids() -> None:
    request = decode_request(
        {
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": "A", "cache_control": {}}]},
                {"role": "developer", "content": "B"},
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                        {"type": "file", "file": {"file_id": "f"}},
                    ],
                },
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "", "function": {"name": "f", "arguments": "{bad"}}],
                },
                {"role": "tool", "tool_call_id": "", "content": [{"type": "text", "text": "r"}]},
            ]
        }
    )
    assert request.system_prompt == "A\n\nB"
    assert request.messages == (
        Message.user(
            [
                UnknownBlock(
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                    provider=PROVIDER,
                ),
                UnknownBlock({"type": "file", "file": {"file_id": "f"}}, provider=PROVIDER),
            ]
        ),
        Message.assistant([ToolCall("", "f", {"_raw": "{bad"})]),
        Message.user([ToolResult("", "r")]),
    )


# -- 6. decoding JSON replies -----------------------------------------------------------------------


def test_decode_text_reply() -> None:
    completion = decode_response(
        reply(
            {"role": "assistant", "content": "Hello!"},
            usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        )
    )
    assert completion == Completion(
        message=Message.assistant("Hello!"),
        stop_reason=StopReason.END_TURN,
        usage=Usage(input_tokens=10, output_tokens=5),
        model="m",
    )


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_decode_reasoning_fields(field: str) -> None:
    completion = decode_response(reply({"role": "assistant", "content": "4", field: "2+2=4"}))
    assert completion.message.content == (Thinking("2+2=4", provider=PROVIDER), Text("4"))


def test_decode_prefers_reasoning_content_when_both_are_sent() -> None:
    message = {"content": "4", "reasoning_content": "why", "reasoning": "why"}
    assert thinking_text(decode_response(reply(message)).message) == "why"


def test_decode_empty_reasoning_and_content_make_no_blocks() -> None:
    message = {"content": "", "reasoning": "", "reasoning_content": None, "refusal": None}
    assert decode_response(reply(message)).message.content == ()


def test_decode_mistral_content_parts() -> None:
    message = {
        "role": "assistant",
        "content": [
            {
                "type": "thinking",
                "thinking": [{"type": "text", "text": "The user asks 2+2."}],
                "closed": True,
            },
            {"type": "text", "text": "4"},
            {"type": "reference", "reference_ids": [3]},
            {"type": "text", "text": "."},
        ],
        "tool_calls": None,
    }
    assert decode_response(reply(message)).message.content == (
        Thinking("The user asks 2+2.", provider=PROVIDER),
        Text("4"),
        UnknownBlock({"type": "reference", "reference_ids": [3]}, provider=PROVIDER),
        Text("."),
    )


def test_decode_tool_calls() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "read", "arguments": '{"path": "a"}'},
            },
            {"id": "call_2", "type": "function", "function": {"name": "ping", "arguments": ""}},
            {
                "id": "call_3",
                "type": "function",
                "function": {"name": "obj", "arguments": {"k": 1}},
            },
            {"id": "call_4", "type": "function", "function": {"name": "null", "arguments": None}},
            {
                "id": "call_5",
                "type": "function",
                "function": {"name": "json_null", "arguments": "null"},
            },
        ],
    }
    completion = decode_response(reply(message, "tool_calls"))
    assert completion.message.tool_calls == (
        ToolCall("call_1", "read", {"path": "a"}),
        ToolCall("call_2", "ping", {}),
        ToolCall("call_3", "obj", {"k": 1}),
        ToolCall("call_4", "null", {}),
        ToolCall("call_5", "json_null", {}),
    )
    assert completion.stop_reason is StopReason.TOOL_USE


def test_tool_calls_are_honoured_when_finish_reason_is_stop() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "read", "arguments": "{}"}}
    for finish in ("stop", None, "eos", "something-new"):
        completion = decode_response(reply({"content": "", "tool_calls": [call]}, finish))
        assert completion.stop_reason is StopReason.TOOL_USE, finish
        assert completion.message.tool_calls == (ToolCall("c", "read", {}),)


def test_missing_tool_call_ids_get_a_stable_synthetic_id() -> None:
    calls = [
        {"id": "", "type": "function", "function": {"name": "a", "arguments": "{}"}},
        {"type": "function", "function": {"name": "b", "arguments": "{}"}},
    ]
    completion = decode_response(reply({"tool_calls": calls}, "tool_calls"))
    assert [c.id for c in completion.message.tool_calls] == [
        "call_chatcmpl-1_0",
        "call_chatcmpl-1_1",
    ]


def test_legacy_function_call() -> None:
    message = {"content": None, "function_call": {"name": "read", "arguments": '{"path": "a"}'}}
    completion = decode_response(reply(message, "function_call"))
    assert completion.message.tool_calls == (ToolCall("call_chatcmpl-1_0", "read", {"path": "a"}),)
    assert completion.stop_reason is StopReason.TOOL_USE


def test_invalid_tool_arguments_are_a_protocol_error_naming_the_tool() -> None:
    for arguments in ('{"path": "a"', "[1, 2]", "42"):
        call = {"id": "c", "function": {"name": "read_file", "arguments": arguments}}
        with pytest.raises(ProtocolError, match="read_file") as info:
            decode_response(reply({"tool_calls": [call]}, "tool_calls"))
        assert info.value.provider == PROVIDER


def test_truncated_tool_arguments_are_kept_raw() -> None:
    call = {"id": "c", "function": {"name": "write", "arguments": '{"path": "a", "text": "lo'}}
    completion = decode_response(reply({"tool_calls": [call]}, "length"))
    assert completion.stop_reason is StopReason.MAX_TOKENS
    assert completion.message.tool_calls == (
        ToolCall("c", "write", {"_raw": '{"path": "a", "text": "lo'}),
    )


@pytest.mark.parametrize(
    ("finish_reason", "stop"),
    [
        ("stop", StopReason.END_TURN),
        ("length", StopReason.MAX_TOKENS),
        ("model_length", StopReason.MAX_TOKENS),
        ("content_filter", StopReason.REFUSAL),
        ("tool_calls", StopReason.END_TURN),  # no tool call in the reply: nothing to use
        ("function_call", StopReason.END_TURN),
        (None, StopReason.END_TURN),
        ("unheard_of", StopReason.END_TURN),
        (7, StopReason.END_TURN),
    ],
)
def test_finish_reasons(finish_reason: Any, stop: StopReason) -> None:
    assert decode_response(reply({"content": "x"}, finish_reason)).stop_reason is stop


def test_vllm_stop_string_is_a_stop_sequence_but_a_token_id_is_not() -> None:
    def with_stop_reason(value: Any) -> bytes:
        body = json.loads(reply({"content": "x"}))
        body["choices"][0]["stop_reason"] = value
        return json.dumps(body).encode()

    assert decode_response(with_stop_reason("###")).stop_reason is StopReason.STOP_SEQUENCE
    assert decode_response(with_stop_reason(154827)).stop_reason is StopReason.END_TURN
    assert decode_response(with_stop_reason(None)).stop_reason is StopReason.END_TURN


def test_refusal() -> None:
    message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    completion = decode_response(reply(message))
    assert completion.message.text == "I can't help with that."
    assert completion.stop_reason is StopReason.REFUSAL


def test_first_choice_is_read() -> None:
    body = {
        "choices": [
            {"index": 1, "message": {"content": "second"}, "finish_reason": "stop"},
            {"index": 0, "message": {"content": "first"}, "finish_reason": "stop"},
        ]
    }
    assert decode_response(json.dumps(body).encode()).message.text == "first"


def test_empty_choices_and_missing_usage() -> None:
    usage_only = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 0}}
    completion = decode_response(json.dumps(usage_only).encode())
    assert completion.message == Message.assistant(())
    assert completion.stop_reason is StopReason.END_TURN
    assert completion.usage == Usage(input_tokens=3)
    assert decode_response(reply({"content": "x"})).usage == Usage()
    assert decode_response(reply({"content": "x"}, usage=None)).usage == Usage()


@pytest.mark.parametrize(
    ("raw", "usage"),
    [
        (  # OpenAI: cached tokens are part of prompt_tokens
            {
                "prompt_tokens": 4020,
                "completion_tokens": 4,
                "prompt_tokens_details": {"cached_tokens": 4012},
                "completion_tokens_details": {"reasoning_tokens": 2},
            },
            Usage(input_tokens=4020, output_tokens=4, cache_read_tokens=4012, reasoning_tokens=2),
        ),
        (  # DeepSeek
            {"prompt_tokens": 875, "completion_tokens": 79, "prompt_cache_hit_tokens": 512},
            Usage(input_tokens=875, output_tokens=79, cache_read_tokens=512),
        ),
        (  # OpenRouter on Anthropic: cache writes
            {
                "prompt_tokens": 2572,
                "completion_tokens": 100,
                "prompt_tokens_details": {"cached_tokens": 2240, "cache_write_tokens": 329},
            },
            Usage(
                input_tokens=2572, output_tokens=100, cache_read_tokens=2240, cache_write_tokens=329
            ),
        ),
        (  # nulls, garbage and negatives count as 0
            {
                "prompt_tokens": None,
                "completion_tokens": -3,
                "prompt_tokens_details": None,
                "completion_tokens_details": "n/a",
            },
            Usage(),
        ),
    ],
)
def test_usage_mapping(raw: dict[str, Any], usage: Usage) -> None:
    assert decode_response(reply({"content": "x"}, usage=raw)).usage == usage


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"[1, 2]",
        b'"a string"',
        b'{"object": "chat.completion"}',
        b'{"choices": {"index": 0}}',
        b'{"choices": [{"index": 0}]}',
        b'{"choices": [42]}',
        b'{"choices": [{"index": 0, "message": {"content": 42}}]}',
        b'{"choices": [{"index": 0, "message": {"tool_calls": "x"}}]}',
        b'{"choices": [{"index": 0, "message": {"tool_calls": [{"id": "c"}]}}]}',
        b'{"choices": [{"index": 0, "message": {"tool_calls": [{"function": {"arguments": "{}"}}]}}]}',
        b'{"choices": [{"index": 0, "message": {"tool_calls": [{"function": {"name": "f", "arguments": 3}}]}}]}',
    ],
)
def test_malformed_replies_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_response(body)
    assert info.value.provider == PROVIDER
    assert str(info.value).startswith("chat: ")


def test_error_object_in_a_200_reply_is_the_typed_error() -> None:
    body = {"error": {"message": "Rate limit exceeded: free-models-per-day", "code": 429}}
    with pytest.raises(RateLimitError) as info:
        decode_response(json.dumps(body).encode())
    assert info.value.status == 429  # named by the error object, the HTTP status was 200
    gemini = [
        {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    ]
    with pytest.raises(ProviderError) as info:
        decode_response(json.dumps(gemini).encode())
    assert info.value.retryable


# -- 6. errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind", "error_type", "message"),
    [
        (
            401,
            b'{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}',
            AuthenticationError,
            "invalid_request_error",
            "Incorrect API key provided",
        ),
        (
            404,
            b'{"error": "model \\"llama9\\" not found, try pulling it first"}',
            NotFoundError,
            None,
            "llama9",
        ),
        (
            422,
            b'{"object": "error", "message": "Invalid model: x", "type": "invalid_model", "code": 1500}',
            InvalidRequestError,
            "invalid_model",
            "Invalid model: x",
        ),
        (
            400,
            b'{"detail": "max_tokens must be at least 1"}',
            InvalidRequestError,
            None,
            "max_tokens",
        ),
        (
            429,
            b'[{"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}]',
            RateLimitError,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded",
        ),
        (502, b"<html>Bad Gateway</html>", ServerError, None, "Bad Gateway"),
        (503, b"", ServerError, None, "no details"),
        (
            400,
            b'{"error": {"message": "This model\'s maximum context length is 8192 tokens.", "type": "invalid_request_error", "code": "context_length_exceeded"}}',
            ContextLengthExceeded,
            "invalid_request_error",
            "maximum context length",
        ),
        (
            429,
            b'{"error": {"code": 429, "message": "Provider returned error", "metadata": {"raw": "x is rate-limited upstream"}}}',
            RateLimitError,
            "429",
            "Provider returned error (x is rate-limited upstream)",
        ),
        (
            529,
            b'{"error": {"message": "Overloaded", "type": "overloaded_error"}}',
            OverloadedError,
            "overloaded_error",
            "Overloaded",
        ),
    ],
)
def test_decode_error(
    status: int, body: bytes, kind: type[ProviderError], error_type: str | None, message: str
) -> None:
    headers = {"x-request-id": "req_1", "retry-after": "3", "x-ratelimit-remaining-requests": "0"}
    error = decode_error(status, headers, body)
    assert type(error) is kind
    assert error.provider == PROVIDER
    assert error.status == status
    assert error.error_type == error_type
    assert message in str(error)
    assert error.request_id == "req_1"
    assert error.retry_after == 3.0
    assert error.rate_limits == {"x-ratelimit-remaining-requests": "0"}
    assert error.body == body.decode()


# -- 6. streams ------------------------------------------------------------------------------------


def test_stream_text_and_usage_chunk() -> None:
    deltas, completion = run_stream(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hello"}),
            chunk({"content": " world"}),
            chunk({}, finish_reason="stop"),
            chunk(None, choices=[], usage={"prompt_tokens": 10, "completion_tokens": 5}),
            DONE,
        ]
    )
    assert deltas == [TextDelta(text="Hello"), TextDelta(text=" world")]
    assert completion == Completion(
        message=Message.assistant("Hello world"),
        stop_reason=StopReason.END_TURN,
        usage=Usage(input_tokens=10, output_tokens=5),
        model="m",
    )


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_stream_reasoning(field: str) -> None:
    deltas, completion = run_stream(
        [
            chunk({field: "Let me "}),
            chunk({field: "think.", "content": None}),
            chunk({"content": "4", field: None}),
            chunk({}, finish_reason="stop"),
            DONE,
        ]
    )
    assert deltas == [
        ThinkingDelta(text="Let me "),
        ThinkingDelta(text="think."),
        TextDelta(text="4"),
    ]
    assert completion.message.content == (Thinking("Let me think.", provider=PROVIDER), Text("4"))


def test_stream_keeps_the_order_of_reasoning_and_text() -> None:
    _, completion = run_stream(
        [
            chunk({"reasoning": "a"}),
            chunk({"content": "b"}),
            chunk({"reasoning": "c"}),
            chunk({"content": "d"}),
            chunk({}, finish_reason="stop"),
        ]
    )
    assert completion.message.content == (
        Thinking("a", provider=PROVIDER),
        Text("b"),
        Thinking("c", provider=PROVIDER),
        Text("d"),
    )


def test_stream_mistral_content_parts() -> None:
    deltas, completion = run_stream(
        [
            chunk(
                {"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}]}
            ),
            chunk({"content": [{"type": "text", "text": "4"}]}),
            chunk({}, finish_reason="stop"),
            DONE,
        ]
    )
    assert deltas == [ThinkingDelta(text="hmm"), TextDelta(text="4")]
    assert completion.message.content == (Thinking("hmm", provider=PROVIDER), Text("4"))


def _call_delta(
    index: Any = None, id: Any = None, name: Any = None, arguments: Any = None, **extra: Any
) -> dict[str, Any]:
    call: dict[str, Any] = dict(extra)
    if index is not None:
        call["index"] = index
    if id is not ...:
        call["id"] = id
    function: dict[str, Any] = {}
    if name is not ...:
        function["name"] = name
    if arguments is not ...:
        function["arguments"] = arguments
    call["function"] = function
    return {"tool_calls": [call]}


def test_stream_interleaved_parallel_tool_calls() -> None:
    deltas, completion = run_stream(
        [
            chunk(_call_delta(0, "call_a", "read", "")),
            chunk(_call_delta(1, "call_b", "bash", "")),
            chunk(_call_delta(0, None, None, '{"path"')),
            chunk(_call_delta(1, None, None, '{"cmd": "ls"}')),
            chunk(_call_delta(0, None, None, ': "a"}')),
            chunk({}, finish_reason="tool_calls"),
            DONE,
        ]
    )
    assert deltas == [
        ToolCallStarted(index=0, id="call_a", name="read"),
        ToolCallStarted(index=1, id="call_b", name="bash"),
        ToolCallDelta(index=0, arguments='{"path"'),
        ToolCallDelta(index=1, arguments='{"cmd": "ls"}'),
        ToolCallDelta(index=0, arguments=': "a"}'),
    ]
    assert completion.message.tool_calls == (
        ToolCall("call_a", "read", {"path": "a"}),
        ToolCall("call_b", "bash", {"cmd": "ls"}),
    )
    assert completion.stop_reason is StopReason.TOOL_USE


def test_stream_repeated_ids_and_names_are_not_new_calls() -> None:
    deltas, completion = run_stream(
        [
            chunk(_call_delta(0, "call_a", "read", '{"pa')),
            chunk(_call_delta(0, "call_a", "read", 'th": 1}')),
            chunk({}, finish_reason="tool_calls"),
        ]
    )
    assert [d for d in deltas if isinstance(d, ToolCallStarted)] == [
        ToolCallStarted(index=0, id="call_a", name="read")
    ]
    assert completion.message.tool_calls == (ToolCall("call_a", "read", {"path": 1}),)


def test_stream_null_and_empty_ids_and_names_never_replace_known_ones() -> None:
    _, completion = run_stream(
        [
            chunk(_call_delta(0, "call_a", "read", "")),
            chunk(_call_delta(0, None, None, '{"a":')),
            chunk(_call_delta(0, "", "", " 1}")),
            chunk({}, finish_reason="tool_calls"),
            DONE,
        ]
    )
    assert completion.message.tool_calls == (ToolCall("call_a", "read", {"a": 1}),)


def test_stream_a_new_id_at_a_known_index_is_a_new_call() -> None:
    deltas, completion = run_stream(
        [
            chunk(_call_delta(0, "call_a", "read", '{"path": "a"}')),
            chunk(_call_delta(0, "call_b", "read", '{"path": "b"}')),
            chunk({}, finish_reason="tool_calls"),
        ]
    )
    assert completion.message.tool_calls == (
        ToolCall("call_a", "read", {"path": "a"}),
        ToolCall("call_b", "read", {"path": "b"}),
    )
    assert_deltas_add_up(deltas, completion)


def test_stream_tool_call_deltas_without_index() -> None:
    deltas, completion = run_stream(
        [
            chunk(_call_delta(None, "c1", "read", '{"path": "a"}')),
            chunk(_call_delta(None, "c2", "read", '{"path":')),
            chunk(_call_delta(None, ..., ..., ' "b"}')),
            chunk(_call_delta(None, ..., "bash", "{}")),
            chunk({}, finish_reason="tool_calls"),
        ]
    )
    assert [(c.id, c.name, dict(c.arguments)) for c in completion.message.tool_calls] == [
        ("c1", "read", {"path": "a"}),
        ("c2", "read", {"path": "b"}),
        ("call_chatcmpl-1_2", "bash", {}),
    ]
    assert_deltas_add_up(deltas, completion)


def test_stream_indexes_become_positions() -> None:
    deltas, completion = run_stream(
        [
            chunk(_call_delta(3, "c3", "a", "{}")),
            chunk(_call_delta(7, "c7", "b", "{}")),
            chunk({}, finish_reason="tool_calls"),
        ]
    )
    assert [d.index for d in deltas if isinstance(d, ToolCallStarted)] == [0, 1]
    assert [c.id for c in completion.message.tool_calls] == ["c3", "c7"]


def test_stream_fragments_before_the_name_follow_the_start() -> None:
    deltas, completion = run_stream(
        [
            chunk(_call_delta(0, "c", ..., '{"x"')),
            chunk(_call_delta(0, ..., "read", ": 1}")),
            chunk({}, finish_reason="tool_calls"),
        ]
    )
    assert deltas == [
        ToolCallStarted(index=0, id="c", name="read"),
        ToolCallDelta(index=0, arguments='{"x"'),
        ToolCallDelta(index=0, arguments=": 1}"),
    ]
    assert completion.message.tool_calls == (ToolCall("c", "read", {"x": 1}),)


def test_stream_object_arguments_and_missing_id() -> None:
    deltas, completion = run_stream(
        [chunk(_call_delta(0, ..., "read", {"path": "a"})), chunk({}, finish_reason="stop"), DONE]
    )
    assert deltas[0] == ToolCallStarted(index=0, id="call_chatcmpl-1_0", name="read")
    assert completion.message.tool_calls == (ToolCall("call_chatcmpl-1_0", "read", {"path": "a"}),)
    assert completion.stop_reason is StopReason.TOOL_USE  # honoured although finish is "stop"


def test_stream_tool_call_without_a_name_is_a_protocol_error() -> None:
    decoder = StreamDecoder()
    decoder.feed(chunk(_call_delta(0, "c", ..., "{}")))
    decoder.feed(DONE)
    with pytest.raises(ProtocolError, match="no name"):
        decoder.finish()


def test_stream_invalid_tool_json_at_the_end() -> None:
    events = [
        chunk(_call_delta(0, "c", "write_file", '{"path": "a", "te')),
        chunk({}, finish_reason="tool_calls"),
        DONE,
    ]
    with pytest.raises(ProtocolError, match="write_file"):
        run_stream(events)
    events[1] = chunk({}, finish_reason="length")
    _, completion = run_stream(events)
    assert completion.stop_reason is StopReason.MAX_TOKENS
    assert completion.message.tool_calls == (
        ToolCall("c", "write_file", {"_raw": '{"path": "a", "te'}),
    )


def test_stream_legacy_function_call() -> None:
    _, completion = run_stream(
        [
            chunk({"function_call": {"name": "read", "arguments": '{"a"'}}),
            chunk({"function_call": {"arguments": ": 1}"}}),
            chunk({}, finish_reason="function_call"),
        ]
    )
    assert completion.message.tool_calls == (ToolCall("call_chatcmpl-1_0", "read", {"a": 1}),)


def test_stream_refusal() -> None:
    deltas, completion = run_stream(
        [chunk({"refusal": "No."}), chunk({}, finish_reason="stop"), DONE]
    )
    assert deltas == [TextDelta(text="No.")]
    assert completion.stop_reason is StopReason.REFUSAL


@pytest.mark.parametrize(
    "tail",
    [
        # usage in the finish chunk (OpenRouter)
        [chunk({}, finish_reason="stop", usage={"prompt_tokens": 7, "completion_tokens": 2})],
        # usage in a chunk after the finish chunk, then a chunk without usage (OpenAI moderation)
        [
            chunk({}, finish_reason="stop"),
            chunk(None, choices=[], usage={"prompt_tokens": 7, "completion_tokens": 2}),
            chunk(None, choices=[], usage=None, moderation={}),
        ],
        # old Groq: x_groq.usage on the finish chunk
        [
            chunk(
                {},
                finish_reason="stop",
                x_groq={"id": "req", "usage": {"prompt_tokens": 7, "completion_tokens": 2}},
            )
        ],
        # a later usage replaces an earlier one (cumulative counts)
        [
            chunk({}, usage={"prompt_tokens": 1, "completion_tokens": 1}),
            chunk({}, finish_reason="stop", usage={"prompt_tokens": 7, "completion_tokens": 2}),
        ],
    ],
)
def test_stream_usage_wherever_it_is(tail: list[SSEEvent]) -> None:
    _, completion = run_stream([chunk({"content": "x"}), *tail, DONE])
    assert completion.usage == Usage(input_tokens=7, output_tokens=2)


def test_stream_without_usage_has_zero_usage() -> None:
    _, completion = run_stream(
        [chunk({"content": "x"}, usage=None), chunk({}, finish_reason="stop"), DONE]
    )
    assert completion.usage == Usage()


def test_stream_end_markers() -> None:
    # [DONE] without a finish_reason: complete.
    _, completion = run_stream([chunk({"content": "x"}), DONE])
    assert completion.stop_reason is StopReason.END_TURN
    # A finish_reason without [DONE] (some hosts): complete.
    _, completion = run_stream([chunk({"content": "x"}), chunk({}, finish_reason="length")])
    assert completion.stop_reason is StopReason.MAX_TOKENS
    # Neither: the stream was cut.
    decoder = StreamDecoder()
    assert decoder.feed(chunk({"content": "partial"})) == [TextDelta(text="partial")]
    with pytest.raises(ProtocolError, match="stream ended before the reply was complete"):
        decoder.finish()
    with pytest.raises(ProtocolError):
        StreamDecoder().finish()


def test_stream_events_after_done_are_ignored() -> None:
    decoder = StreamDecoder()
    decoder.feed(chunk({"content": "x"}))
    decoder.feed(DONE)
    assert decoder.feed(chunk({"content": "late"})) == []
    assert decoder.feed(SSEEvent("not json")) == []
    assert decoder.finish().message.text == "x"


def test_stream_choices_of_other_indexes_are_ignored() -> None:
    other = SSEEvent(json.dumps({"choices": [{"index": 1, "delta": {"content": "other"}}]}))
    deltas, _ = run_stream([other, chunk({"content": "mine"}), chunk({}, finish_reason="stop")])
    assert deltas == [TextDelta(text="mine")]


@pytest.mark.parametrize(
    "event",
    [
        SSEEvent("{not json"),
        SSEEvent("[1, 2]"),
        SSEEvent('{"choices": {"index": 0}}'),
        SSEEvent('{"choices": [{"index": 0, "delta": "x"}]}'),
        SSEEvent('{"choices": [{"index": 0, "delta": {"content": 3}}]}'),
        SSEEvent('{"choices": [{"index": 0, "delta": {"tool_calls": "x"}}]}'),
        SSEEvent('{"choices": [{"index": 0, "delta": {"tool_calls": [1]}}]}'),
        SSEEvent(
            '{"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": 1}]}}]}'
        ),
        SSEEvent(
            '{"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": 1}}]}}]}'
        ),
    ],
)
def test_stream_malformed_chunks_are_protocol_errors(event: SSEEvent) -> None:
    with pytest.raises(ProtocolError):
        StreamDecoder().feed(event)


def test_stream_error_chunk_is_the_typed_error() -> None:
    decoder = StreamDecoder()
    decoder.feed(chunk({"content": "partial"}))
    error = {"error": {"message": "Rate limit exceeded", "code": 429}}
    with pytest.raises(RateLimitError) as info:
        decoder.feed(SSEEvent(json.dumps(error)))
    assert info.value.provider == PROVIDER
    assert info.value.status == 429


def test_stream_groq_error_event() -> None:
    data = {
        "error": {
            "message": "Tool choice is required, but model did not call a tool",
            "type": "invalid_request_error",
            "code": "tool_use_failed",
            "failed_generation": "",
            "status_code": 400,
        }
    }
    with pytest.raises(InvalidRequestError) as info:
        StreamDecoder().feed(SSEEvent(json.dumps(data), event="error"))
    assert info.value.error_type == "invalid_request_error"
    assert "did not call a tool" in str(info.value)
    with pytest.raises(ProviderError, match="upstream went away"):
        StreamDecoder().feed(SSEEvent("upstream went away", event="error"))


def test_stream_error_without_a_status_is_classified_by_its_type() -> None:
    data = {"error": {"message": "Overloaded", "type": "overloaded_error"}}
    with pytest.raises(OverloadedError) as info:
        StreamDecoder().feed(SSEEvent(json.dumps(data)))
    assert info.value.status is None
    assert info.value.retryable


def test_stream_invalid_request_error_without_a_status() -> None:
    data = {"error": {"message": "bad tool call", "type": "invalid_request_error"}}
    with pytest.raises(InvalidRequestError):
        StreamDecoder().feed(SSEEvent(json.dumps(data)))


def test_stream_argument_fragments_are_assembled_in_linear_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No clock: count the characters the decoder hands to json.loads. Parsing every chunk once
    # and the joined arguments once is linear; parsing the arguments collected so far on every
    # fragment (or every few) is quadratic and hands json.loads about fragments**2 / k
    # characters. The wall-clock scaling is measured in benchmarks/bench_codecs.py.
    fragments = 20_000
    events = [
        chunk(_call_delta(0, "c", "write", '{"text": "')),
        *[chunk(_call_delta(0, ..., ..., "x"))] * fragments,
        chunk(_call_delta(0, ..., ..., '"}')),
        DONE,
    ]
    completion, parsed = decode_counting_json(monkeypatch, chat_module, events)
    assert completion.message.tool_calls[0].arguments == {"text": "x" * fragments}
    per_event = sum(len(event.data) for event in events if not event.is_done)
    arguments = len('{"text": "') + fragments + len('"}')
    assert parsed >= per_event + arguments  # every chunk, and the arguments once
    assert parsed - per_event <= 3 * arguments, (parsed - per_event) / arguments


def test_stream_decoder_implements_the_wire_protocol() -> None:
    from alloy._codec._wire import StreamDecoder as Protocol

    decoder: Protocol = StreamDecoder()
    assert callable(decoder.feed) and callable(decoder.finish)


# -- replies encoded by alloy.testing's wire encoder ---------------------------------------------------


def test_encode_stream_shape() -> None:
    blocks = (Thinking("t", provider=PROVIDER), Text("hi"), ToolCall("c", "f", {"a": 1}))
    reply = Reply(
        blocks=blocks, stop_reason=StopReason.TOOL_USE, usage=Usage(input_tokens=3, output_tokens=4)
    )
    events = sse_events(encode_stream("chat", reply).body)
    assert events[-1].is_done
    chunks = [json.loads(event.data) for event in events[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 3
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    without = sse_events(encode_stream("chat", reply, include_usage=False, done=False).body)
    assert not without[-1].is_done and "usage" not in json.loads(without[-1].data)
    # Without [DONE] and without usage the stream is still complete: it has a finish_reason.
    _, decoded = run_stream(without)
    assert decoded.message == Message.assistant(blocks)


# -- the codec is sans-IO and documented ---------------------------------------------------------------


def test_codec_imports_neither_trio_nor_http_clients() -> None:
    tree = ast.parse(Path(chat_module.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "json", "collections", "typing", "attrs"}


def test_public_names_have_docstrings_and_doctests_pass() -> None:
    for name in chat_module.__all__:
        value = getattr(chat_module, name)
        if name != "PROVIDER":
            assert value.__doc__ and ">>>" in value.__doc__, name
    result = doctest.testmod(chat_module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 15
