"""Tests for the OpenAI Responses API codec (``alloy._codec._responses``).

Sections: every recorded exchange in ``shared/wire/recorded/openai-responses`` (decoded to its
``expected`` outcome, streamed in random splits, deltas adding up, the request re-encoded to the
same shape), Hypothesis round trips (requests, JSON replies, SSE replies), then unit tests for
each feature of the encoder, the decoders and the errors, and the quirks of the hosts.

Usage normalisation checked against the recordings (``expected.usage`` is raw per API): OpenAI's
``input_tokens`` already includes cached tokens, as ``Usage.input_tokens`` does, so every number
maps one to one (``cached_tokens`` -> ``cache_read_tokens``, ``cache_write_tokens`` ->
``cache_write_tokens``); ``null`` (absent) is 0.
"""

from __future__ import annotations

import ast
import doctest
import json
import random
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

import alloy._codec._responses as codec
from alloy import (
    AuthenticationError,
    ContextLengthExceeded,
    Image,
    InvalidRequestError,
    Message,
    OverloadedError,
    ProtocolError,
    ProviderError,
    RateLimitError,
    RedactedThinking,
    ServerError,
    ServerToolCall,
    ServerToolResult,
    Text,
    Thinking,
    ToolCall,
    ToolResult,
    ToolSpec,
    UnknownBlock,
    Usage,
)
from alloy._codec._responses import (
    ERROR_PREFIX,
    PROVIDER,
    ResponsesSettings,
    StreamDecoder,
    decode_error,
    decode_request,
    decode_response,
    encode_request,
)
from alloy._codec._sse import SSEDecoder, SSEEvent
from alloy._events import Delta, TextDelta, ThinkingDelta, ToolCallDelta, ToolCallStarted
from alloy._messages import Block
from alloy._provider import Completion, Request, StopReason
from alloy.testing._scripted import Reply
from alloy.testing._wire_encode import DEFAULT_MODELS, encode_responses
from strategies import (
    conversations,
    json_objects,
    texts,
    tool_call_ids,
    unknown_blocks,
    usages,
)
from support import decode_counting_json

RECORDED = Path(__file__).resolve().parents[2] / "shared" / "wire" / "recorded" / "openai-responses"
FILES = sorted(RECORDED.glob("*.json")) if RECORDED.is_dir() else []
# The streamed 200 replies (one recorded "stream" got an HTTP 400 JSON body instead: it is
# checked with the other errors).
STREAMS = [
    path
    for path in FILES
    if (data := json.loads(path.read_text()))["stream"] and data["response"]["status"] == 200
]
SETTINGS = ResponsesSettings(model="gpt-5.4", api_key="sk-test")

needs_recordings = pytest.mark.skipif(not FILES, reason="shared/wire/recorded is not present")


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def ids(paths: Sequence[Path]) -> list[str]:
    return [path.stem for path in paths]


# -- helpers ---------------------------------------------------------------------------------


def sse_events(body: str | bytes, chunks: Iterable[bytes] | None = None) -> list[SSEEvent]:
    data = body.encode() if isinstance(body, str) else body
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks if chunks is not None else [data]:
        events += decoder.feed(chunk)
    return events + decoder.close()


def run_stream(events: Iterable[SSEEvent]) -> tuple[list[Delta], Completion]:
    decoder = StreamDecoder()
    deltas: list[Delta] = []
    for event in events:
        deltas += decoder.feed(event)
    return deltas, decoder.finish()


def random_chunks(data: bytes, rng: random.Random) -> Iterator[bytes]:
    position = 0
    while position < len(data):
        size = rng.choice((1, 2, 3, 7, 64, 500, 4096))
        yield data[position : position + size]
        position += size


def feed(*events: dict[str, Any] | str) -> tuple[list[Delta], StreamDecoder]:
    """Feed JSON events (dicts) or raw data strings to a new decoder."""
    decoder = StreamDecoder()
    deltas: list[Delta] = []
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        deltas += decoder.feed(SSEEvent(data))
    return deltas, decoder


def completed(output: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    response = {"status": "completed", "output": output or [], **fields}
    return {"type": "response.completed", "response": response}


def reply(*output: dict[str, Any], **fields: Any) -> bytes:
    return json.dumps({"status": "completed", "output": list(output), **fields}).encode()


def message_item(*texts_: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text} for text in texts_],
    }


def call_item(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}


def deltas_text(deltas: Iterable[Delta]) -> str:
    return "".join(d.text for d in deltas if isinstance(d, TextDelta))


def deltas_thinking(deltas: Iterable[Delta]) -> str:
    return "".join(d.text for d in deltas if isinstance(d, ThinkingDelta))


def deltas_calls(deltas: Iterable[Delta]) -> dict[int, tuple[str, str, str]]:
    """index -> (id, name, joined argument fragments)."""
    calls: dict[int, tuple[str, str, list[str]]] = {}
    for delta in deltas:
        if isinstance(delta, ToolCallStarted):
            assert delta.index not in calls, "a call started twice"
            calls[delta.index] = (delta.id, delta.name, [])
        elif isinstance(delta, ToolCallDelta):
            calls[delta.index][2].append(delta.arguments)
    return {index: (i, n, "".join(parts)) for index, (i, n, parts) in calls.items()}


def assert_deltas_add_up(deltas: list[Delta], completion: Completion) -> None:
    message = completion.message
    assert deltas_text(deltas) == message.text
    thinking = "".join(b.text for b in message.content if isinstance(b, Thinking))
    assert deltas_thinking(deltas) == thinking
    calls = deltas_calls(deltas)
    assert sorted(calls) == list(range(len(message.tool_calls)))
    for index, call in enumerate(message.tool_calls):
        call_id, name, arguments = calls[index]
        assert (call_id, name) == (call.id, call.name)
        assert (json.loads(arguments) if arguments else {}) == dict(call.arguments)


def decode_recording(data: dict[str, Any]) -> Completion:
    body = data["response"]["body"]
    if data["stream"]:
        return run_stream(sse_events(body))[1]
    return decode_response(body.encode())


# -- 1. every recorded exchange decodes to its expected outcome -----------------------------

# The raw stop value (Responses ``status``, or ``incomplete_details.reason``) -> ours. A status
# this codec does not know ("complete", in two hand-written mock replies) is end_turn.
STOP = {
    "completed": StopReason.END_TURN,
    "complete": StopReason.END_TURN,
    "max_output_tokens": StopReason.MAX_TOKENS,
    "content_filter": StopReason.REFUSAL,
}
# Background-mode replies ("queued") are not finished responses: Alloy does not poll them, so
# decoding one raises ProtocolError instead of passing an empty reply off as a finished turn.
UNFINISHED = {"queued", "in_progress"}


@needs_recordings
@pytest.mark.parametrize("path", FILES, ids=ids(FILES))
def test_recorded_exchange_decodes_to_expected(path: Path) -> None:
    data = load(path)
    expected = data["expected"]
    response = data["response"]
    if expected["error"] is not None and response["status"] != 200:
        error = decode_error(response["status"], {}, response["body"].encode())
        wanted = expected["error"]
        assert isinstance(error, InvalidRequestError if wanted["status"] == 400 else ProviderError)
        assert error.provider == PROVIDER
        assert error.status == wanted["status"]
        assert error.error_type == (wanted["type"] or wanted["code"])
        assert wanted["message"] in str(error)
        assert error.body == response["body"]
        return
    assert response["status"] == 200
    if expected["stop_reason"] in UNFINISHED:
        with pytest.raises(ProtocolError, match="not finished"):
            decode_recording(data)
        return
    completion = decode_recording(data)
    message = completion.message
    assert message.role == "assistant"
    assert message.text == expected["text"]
    assert [b.text for b in message.content if isinstance(b, Text)] == [
        *expected["extra"]["text_parts"],
        *expected["extra"]["refusals"],
    ]
    assert [
        {"id": call.id, "name": call.name, "arguments": dict(call.arguments)}
        for call in message.tool_calls
    ] == expected["tool_calls"]
    thinking = [b for b in message.content if isinstance(b, Thinking)]
    if expected["thinking"] is None:
        assert thinking == []
    else:
        assert thinking, "a reasoning item must give a Thinking block"
        assert all(b.provider == PROVIDER and b.id for b in thinking)
        # Summary parts of one item are joined with "\n\n"; the SDK's list has them one by one.
        readable = [b.text for b in thinking if b.text]
        assert "\n\n".join(readable) == "\n\n".join(expected["extra"]["thinking_parts"])
        assert "".join(expected["extra"]["thinking_parts"]) == expected["thinking"]
        signed = [b for b in thinking if b.signature]
        assert len(signed) >= expected["extra"]["encrypted_reasoning_items"]
    # Server tools stay UnknownBlocks (never ToolCalls), one per item, in order.
    unknown = [b for b in message.content if isinstance(b, UnknownBlock)]
    assert [(b.data.get("id"), b.type) for b in unknown] == [
        (call["id"], call["type"]) for call in expected["extra"]["server_tool_calls"]
    ]
    assert all(b.provider == PROVIDER for b in unknown)
    wanted_stop = STOP[expected["stop_reason"]]
    if wanted_stop is StopReason.END_TURN and expected["tool_calls"]:
        wanted_stop = StopReason.TOOL_USE
    assert completion.stop_reason is wanted_stop
    usage = expected["usage"]
    assert completion.usage == Usage(
        input_tokens=usage["input_tokens"] or 0,
        output_tokens=usage["output_tokens"] or 0,
        cache_read_tokens=usage["cache_read_tokens"] or 0,
        cache_write_tokens=usage["cache_write_tokens"] or 0,
        reasoning_tokens=(
            (expected["extra"]["raw_usage"] or {}).get("output_tokens_details") or {}
        ).get("reasoning_tokens")
        or 0,
    )
    assert completion.model == expected["extra"]["model"]


@needs_recordings
def test_recordings_cover_the_features() -> None:
    """The recorded set holds what this file claims to test (a guard against a lost corpus)."""
    assert len(FILES) >= 100
    hosts = {load(path)["request"]["host"] for path in FILES}
    assert {"api.openai.com", "api.deepseek.com", "openrouter.ai"} <= hosts
    assert len(STREAMS) >= 15


# -- 2 and 3. recorded streams: split invariance, deltas add up ------------------------------


@needs_recordings
@pytest.mark.parametrize("path", STREAMS, ids=ids(STREAMS))
def test_recorded_stream_with_whitespace_around_the_json(path: Path) -> None:
    # Whitespace around an event's JSON takes the parser's slow path (json.loads itself).
    events = sse_events(load(path)["response"]["body"].encode())
    padded = [e if e.is_done else e._replace(data=f" {e.data}\n\t") for e in events]
    assert run_stream(padded) == run_stream(events)


@needs_recordings
@pytest.mark.parametrize("path", STREAMS, ids=ids(STREAMS))
def test_recorded_stream_split_invariance_and_deltas_add_up(path: Path) -> None:
    data = load(path)
    body = data["response"]["body"].encode()
    deltas, completion = run_stream(sse_events(body))
    assert_deltas_add_up(deltas, completion)
    assert deltas_text(deltas) == data["expected"]["text"]
    rng = random.Random(path.name)
    for _ in range(5):
        split_deltas, split_completion = run_stream(sse_events(body, random_chunks(body, rng)))
        assert split_deltas == deltas
        assert split_completion == completion


@needs_recordings
@pytest.mark.parametrize("path", STREAMS, ids=ids(STREAMS))
def test_recorded_stream_as_openrouter_sends_it(path: Path) -> None:
    """No ``event:`` lines, a ``data: [DONE]`` at the end: the same deltas and completion."""
    events = sse_events(load(path)["response"]["body"])
    bare = [SSEEvent(event.data) for event in events] + [SSEEvent("[DONE]")]
    assert run_stream(bare) == run_stream(events)


@needs_recordings
@pytest.mark.parametrize("path", STREAMS, ids=ids(STREAMS))
def test_recorded_stream_without_final_output_falls_back_to_streamed_items(path: Path) -> None:
    data = load(path)
    if "mcp_list_tools_stream_backfills_missing_results" in path.name:
        pytest.skip(
            "two of its three mcp_list_tools items get output_item.added but never "
            "output_item.done: they are complete only in response.completed, so a stream "
            "without the final output cannot have them whole (the decoder keeps them as added)"
        )
    events = sse_events(data["response"]["body"])
    deltas, completion = run_stream(events)
    stripped = []
    for event in events:
        payload = json.loads(event.data)
        if payload["type"] == "response.completed":
            payload["response"]["output"] = []
            event = SSEEvent(json.dumps(payload), event=event.event)
        stripped.append(event)
    fallback_deltas, fallback = run_stream(stripped)
    assert fallback_deltas == deltas
    # OpenAI re-encrypts reasoning between output_item.done and response.completed (both
    # valid): the fallback keeps the output_item.done one. Compare all else exactly.
    assert _unsigned(fallback) == _unsigned(completion)
    assert [bool(b.signature) for b in fallback.message.content if isinstance(b, Thinking)] == [
        bool(b.signature) for b in completion.message.content if isinstance(b, Thinking)
    ]


def _unsigned(completion: Completion) -> Completion:
    content: list[Block] = []
    for block in completion.message.content:
        if isinstance(block, Thinking):
            block = Thinking(block.text, None, block.provider, block.id)
        elif isinstance(block, UnknownBlock) and "encrypted_content" in block.data:
            data = {**block.data, "encrypted_content": bool(block.data["encrypted_content"])}
            block = UnknownBlock(data, block.provider)
        content.append(block)
    return Completion(
        message=Message.assistant(content),
        stop_reason=completion.stop_reason,
        usage=completion.usage,
        model=completion.model,
    )


@needs_recordings
@pytest.mark.parametrize("path", STREAMS, ids=ids(STREAMS))
def test_recorded_stream_cut_before_its_end_is_an_error(path: Path) -> None:
    events = sse_events(load(path)["response"]["body"])
    cut = [e for e in events if json.loads(e.data)["type"] != "response.completed"]
    decoder = StreamDecoder()
    for event in cut:
        decoder.feed(event)
    with pytest.raises(ProtocolError, match="stream ended before response.completed"):
        decoder.finish()


# -- 4. the recorded conversations re-encode to the same shape -------------------------------


def _item_shape(item: dict[str, Any]) -> tuple[Any, ...]:
    kind = item.get("type") or "message"
    if kind != "message":
        return (kind,)
    role = item["role"]
    content = item["content"]
    if isinstance(content, str):
        parts = ["output_text" if role == "assistant" else "input_text"]
    else:
        parts = [part["type"] for part in content]
    return ("message", role, tuple(parts))


def _has_reasoning_payload(item: dict[str, Any]) -> bool:
    texts_ = [p.get("text") for p in [*(item.get("summary") or []), *(item.get("content") or [])]]
    return bool(item.get("encrypted_content") or any(texts_))


def _shapes(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The item shapes, with consecutive messages of one role merged (we group parts)."""
    shapes: list[tuple[Any, ...]] = []
    for item in items:
        shape = _item_shape(item)
        if shape[0] == "message" and shape[1] in ("system", "developer"):
            continue  # sent as ``instructions``
        if shape == ("reasoning",) and not _has_reasoning_payload(item):
            continue  # nothing to carry: dropped by design
        if shape[0] == "message" and shapes and shapes[-1][:2] == shape[:2]:
            shapes[-1] = (*shape[:2], shapes[-1][2] + shape[2])
        else:
            shapes.append(shape)
    return shapes


@needs_recordings
@pytest.mark.parametrize("path", FILES, ids=ids(FILES))
def test_recorded_request_reencodes_to_the_same_shape(path: Path) -> None:
    recorded = load(path)["request"]["body"]
    request = decode_request(recorded)
    body = encode_request(request, SETTINGS, stream=bool(recorded.get("stream"))).body
    assert _shapes(body["input"]) == _shapes(recorded["input"])
    ours_typed = [
        i for i in body["input"] if i.get("type") in ("function_call", "function_call_output")
    ]
    theirs_typed = [
        i for i in recorded["input"] if i.get("type") in ("function_call", "function_call_output")
    ]
    assert [i["type"] for i in ours_typed] == [i["type"] for i in theirs_typed]
    for ours, theirs in zip(ours_typed, theirs_typed, strict=True):
        assert set(ours) <= set(theirs)
    system = [i for i in recorded["input"] if i.get("role") in ("system", "developer")]
    assert ("instructions" in body) == bool(recorded.get("instructions") or system)
    functions = [t for t in recorded.get("tools", []) if t["type"] == "function"]
    assert [t["name"] for t in body.get("tools", [])] == [t["name"] for t in functions]
    for tool in body.get("tools", []):
        assert set(tool) == {"type", "name", "description", "parameters", "strict"}
        assert tool["type"] == "function"
    # Ids are never sent (see the module docstring); call ids always are.
    assert all("id" not in item for item in body["input"] if item.get("type") == "reasoning")
    ours_calls = [i["call_id"] for i in body["input"] if i.get("type") == "function_call"]
    theirs_calls = [i["call_id"] for i in recorded["input"] if i.get("type") == "function_call"]
    assert ours_calls == theirs_calls


@needs_recordings
def test_recorded_function_call_outputs_keep_their_text() -> None:
    for path in FILES:
        recorded = load(path)["request"]["body"]
        body = encode_request(decode_request(recorded), SETTINGS, stream=False).body
        theirs = [i["output"] for i in recorded["input"] if i.get("type") == "function_call_output"]
        ours = [i["output"] for i in body["input"] if i.get("type") == "function_call_output"]
        assert ours == theirs, path.name


# -- 5. Hypothesis round trips ---------------------------------------------------------------

ITEM_TYPES = {"message", "function_call", "function_call_output", "reasoning"}


def _own_unknown(block: Block) -> bool:
    return (
        isinstance(block, UnknownBlock)
        and block.provider == PROVIDER
        and isinstance(block.data.get("type"), str)
        and block.data["type"] not in ITEM_TYPES
    )


def _on_the_wire(block: Block, role: str) -> Block | None:
    """What of ``block`` an encode -> decode trip keeps (None: dropped by design)."""
    if isinstance(block, Text):
        return block
    if isinstance(block, Image):
        return block if role == "user" else None
    if isinstance(block, ToolResult):
        return block
    if isinstance(block, ToolCall):
        return ToolCall(block.id, block.name, dict(block.arguments))
    if isinstance(block, Thinking):
        if block.provider != PROVIDER or not (block.signature or block.text):
            return None
        return Thinking(block.text, signature=block.signature or None, provider=PROVIDER)
    if isinstance(block, RedactedThinking):
        if block.provider != PROVIDER or not block.data:
            return None
        return Thinking("", signature=block.data, provider=PROVIDER)
    if _own_unknown(block):
        return block
    return None


def _expected_conversation(messages: Sequence[Message]) -> tuple[Message, ...]:
    merged: list[Message] = []
    for message in messages:
        kept = [b for b in (_on_the_wire(b, message.role) for b in message.content) if b]
        if not kept:
            continue
        if merged and merged[-1].role == message.role:
            merged[-1] = Message(message.role, [*merged[-1].content, *kept])
        else:
            merged.append(Message(message.role, kept))
    return tuple(merged)


def _ambiguous(messages: Sequence[Message]) -> bool:
    """A success result whose text starts with the error prefix reads back as an error."""
    return any(
        isinstance(b, ToolResult) and not b.is_error and b.content.startswith(ERROR_PREFIX)
        for m in messages
        for b in m.content
    )


def _with_openai_reasoning(messages: list[Message]) -> list[Message]:
    """Re-label half the reasoning as OpenAI's, so both paths (kept, dropped) are exercised."""
    out = []
    for message in messages:
        content: list[Block] = []
        for block in message.content:
            if (
                isinstance(block, Thinking | RedactedThinking)
                and zlib.crc32(repr(block).encode()) % 2
            ):
                block = (
                    Thinking(block.text, block.signature, PROVIDER, block.id)
                    if isinstance(block, Thinking)
                    else RedactedThinking(block.data, PROVIDER)
                )
            content.append(block)
        out.append(Message(message.role, content))
    return out


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversation=conversations(), system=st.none() | texts())
def test_request_round_trip(conversation: list[Message], system: str | None) -> None:
    conversation = _with_openai_reasoning(conversation)
    if _ambiguous(conversation):
        return
    request = Request(messages=tuple(conversation), system_prompt=system)
    body = json.loads(json.dumps(encode_request(request, SETTINGS, stream=False).body))
    decoded = decode_request(body)
    assert decoded.messages == _expected_conversation(conversation)
    assert decoded.system_prompt == (system or None)


@hsettings(max_examples=150, deadline=None)
@given(
    blocks=st.lists(
        st.one_of(
            st.builds(Text, texts()),
            st.builds(ToolCall, tool_call_ids(), texts(max_size=12), json_objects()),
            st.builds(
                Thinking,
                texts(),
                signature=st.none() | texts(max_size=20),
                provider=st.just(PROVIDER),
                id=st.none() | texts(max_size=10),
            ),
            unknown_blocks().filter(_own_unknown),
        ),
        max_size=6,
    ),
    stop=st.sampled_from([StopReason.END_TURN, StopReason.MAX_TOKENS, StopReason.REFUSAL]),
    usage=usages(),
    model=st.none() | st.just("gpt-5.4-2026"),
    chunk_size=st.integers(1, 20),
    final_output=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_reply_round_trip_json_and_sse(
    blocks: list[Block],
    stop: StopReason,
    usage: Usage,
    model: str | None,
    chunk_size: int,
    final_output: bool,
    seed: int,
) -> None:
    original = Reply(blocks=tuple(blocks), stop_reason=stop, usage=usage)
    # The wire encoder numbers what has no id: reasoning items rs_<id>_<position>, calls call_<n>.
    expected_blocks: list[Block] = []
    calls = 0
    for index, b in enumerate(blocks):
        if isinstance(b, Thinking):
            b = Thinking(b.text, b.signature or None, PROVIDER, b.id or f"rs_wire_1_{index}")
        elif isinstance(b, ToolCall):
            calls += 1
            b = ToolCall(b.id or f"call_{calls}", b.name, b.arguments)
        expected_blocks.append(b)
    expected_stop = stop
    if stop is StopReason.END_TURN and any(isinstance(b, ToolCall) for b in blocks):
        expected_stop = StopReason.TOOL_USE
    model = model or DEFAULT_MODELS["openai"]
    expected = Completion(
        message=Message.assistant(expected_blocks),
        stop_reason=expected_stop,
        usage=usage,
        model=model,
    )
    assert decode_response(encode_responses(original, model=model)) == expected
    data = encode_responses(
        original, model=model, stream=True, chunk_size=chunk_size, final_output=final_output
    )
    deltas, completion = run_stream(sse_events(data, random_chunks(data, random.Random(seed))))
    assert completion == expected
    assert_deltas_add_up(deltas, completion)


@hsettings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversation=conversations())
def test_assistant_messages_in_a_request_read_back_as_a_reply(
    conversation: list[Message],
) -> None:
    """Our encoded assistant items, served as a reply's ``output``, decode to the same message."""
    conversation = _with_openai_reasoning(conversation)
    for message in conversation:
        if message.role != "assistant":
            continue
        items = encode_request(Request(messages=(message,)), SETTINGS, stream=False).body["input"]
        completion = decode_response(reply(*items))
        (wanted,) = _expected_conversation([message]) or (Message.assistant([]),)
        assert completion.message == wanted


# -- 6. unit tests: the request --------------------------------------------------------------


def body_of(*messages: Message, settings: ResponsesSettings = SETTINGS, **kw: Any) -> Any:
    return encode_request(Request(messages=messages, **kw), settings, stream=False).body


def test_path_headers_and_basic_body() -> None:
    settings = ResponsesSettings(
        model="gpt-5.4", api_key="sk-1", extra_headers=(("OpenAI-Organization", "org-1"),)
    )
    request = Request(messages=(Message.user("hi"),), system_prompt="Be brief.")
    http = encode_request(request, settings, stream=True)
    assert (http.method, http.path, http.stream) == ("POST", "/v1/responses", True)
    assert http.headers == (("Authorization", "Bearer sk-1"), ("OpenAI-Organization", "org-1"))
    assert http.body == {
        "model": "gpt-5.4",
        "instructions": "Be brief.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "store": False,
        "stream": True,
    }
    assert encode_request(request, settings, stream=False).body["stream"] is False


def test_no_api_key_no_authorization_header() -> None:
    http = encode_request(Request(messages=()), ResponsesSettings(model="m"), stream=False)
    assert http.headers == ()
    assert "instructions" not in http.body


def test_settings_repr_hides_the_key() -> None:
    assert "sk-secret" not in repr(ResponsesSettings(model="m", api_key="sk-secret"))


def test_all_settings_on_the_wire() -> None:
    settings = ResponsesSettings(
        model="o4",
        max_output_tokens=1024,
        reasoning_effort="high",
        reasoning_summary="detailed",
        store=True,
        tool_choice={"type": "function", "name": "read"},
        parallel_tool_calls=False,
        extra_body={"service_tier": "flex", "temperature": 1.0},
    )
    spec = ToolSpec("read", "Read a file.", {"type": "object", "properties": {}})
    body = body_of(
        Message.user("x"), settings=settings, tools=(spec,), options={"temperature": 0.2}
    )
    assert body["tools"] == [
        {
            "type": "function",
            "name": "read",
            "description": "Read a file.",
            "parameters": {"type": "object", "properties": {}},
            "strict": False,
        }
    ]
    assert body["tool_choice"] == {"type": "function", "name": "read"}
    assert body["parallel_tool_calls"] is False
    assert body["reasoning"] == {"effort": "high", "summary": "detailed"}
    assert body["include"] == ["reasoning.encrypted_content"]
    assert body["store"] is True
    assert body["max_output_tokens"] == 1024
    assert body["service_tier"] == "flex"
    assert body["temperature"] == 0.2  # request.options are merged last


def test_options_override_everything() -> None:
    body = body_of(Message.user("x"), options={"store": True, "model": "other", "top_p": 0.5})
    assert (body["store"], body["model"], body["top_p"]) == (True, "other", 0.5)


def test_tool_choice_string() -> None:
    body = body_of(Message.user("x"), settings=ResponsesSettings(model="m", tool_choice="required"))
    assert body["tool_choice"] == "required"


def test_include_only_when_reasoning_is_used() -> None:
    plain = ResponsesSettings(model="gpt-4o")
    assert "include" not in body_of(Message.user("x"), settings=plain)
    assert "reasoning" not in body_of(Message.user("x"), settings=plain)
    effort = ResponsesSettings(model="gpt-5", reasoning_effort="low")
    assert body_of(Message.user("x"), settings=effort)["include"] == ["reasoning.encrypted_content"]
    assert body_of(Message.user("x"), settings=effort)["reasoning"] == {"effort": "low"}
    summary = ResponsesSettings(model="gpt-5", reasoning_summary="auto")
    assert "include" in body_of(Message.user("x"), settings=summary)
    # Signed OpenAI reasoning in the history: the model supports it, keep it coming.
    history = (
        Message.user("x"),
        Message.assistant([Thinking("", signature="enc", provider=PROVIDER), Text("y")]),
        Message.user("z"),
    )
    assert "include" in body_of(*history, settings=plain)
    # Someone else's signed reasoning does not count.
    foreign = (Message.assistant([Thinking("t", signature="sig", provider="anthropic")]),)
    assert "include" not in body_of(*foreign, settings=plain)
    off = ResponsesSettings(
        model="gpt-5", reasoning_effort="low", include_encrypted_reasoning=False
    )
    assert "include" not in body_of(*history, settings=off)
    # Also with store=True: Alloy sends no item ids, so encrypted content is the only carrier.
    stored = ResponsesSettings(model="gpt-5", reasoning_effort="low", store=True)
    assert "include" in body_of(Message.user("x"), settings=stored)


def test_user_blocks_become_one_message_until_a_tool_result() -> None:
    image = Image("image/png", "iVBORw0KGgo=")
    body = body_of(
        Message.user(
            [
                ToolResult("call_1", "42"),
                Text("look"),
                image,
                ToolResult("call_2", "boom", is_error=True),
                Text("and?"),
            ]
        )
    )
    assert body["input"] == [
        {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "look"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
            ],
        },
        {"type": "function_call_output", "call_id": "call_2", "output": "Error: boom"},
        {"role": "user", "content": [{"type": "input_text", "text": "and?"}]},
    ]


def test_tool_result_is_error_is_not_lost() -> None:
    """The wire has no error flag: the output says so, and reads back as an error."""
    results = [ToolResult("c1", "file not found", is_error=True), ToolResult("c2", "ok")]
    body = body_of(
        Message.assistant([ToolCall("c1", "read"), ToolCall("c2", "read")]), Message.user(results)
    )
    outputs = [i["output"] for i in body["input"] if i["type"] == "function_call_output"]
    assert outputs == ["Error: file not found", "ok"]
    assert decode_request(body).messages[1].content == tuple(results)


def test_assistant_blocks_in_order() -> None:
    body = body_of(
        Message.assistant(
            [
                Thinking("plan", signature="enc1", provider=PROVIDER, id="rs_1"),
                Text("Let me "),
                Text("look."),
                ToolCall("call_1", "read", {"path": "é.txt"}),
                ToolCall("call_2", "bash", {}),
                Text("done"),
            ]
        )
    )
    assert body["input"] == [
        {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "plan"}],
            "encrypted_content": "enc1",
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Let me "},
                {"type": "output_text", "text": "look."},
            ],
        },
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "read",
            "arguments": '{"path": "é.txt"}',
        },
        {"type": "function_call", "call_id": "call_2", "name": "bash", "arguments": "{}"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "done"}],
        },
    ]


def test_reasoning_encoding_rules() -> None:
    def items(block: Block) -> list[dict[str, Any]]:
        return list(body_of(Message.assistant([block]))["input"])

    # Signed, empty text: the encrypted state alone; never an id (see the module docstring).
    assert items(Thinking("", signature="enc", provider=PROVIDER, id="rs_9")) == [
        {"type": "reasoning", "summary": [], "encrypted_content": "enc"}
    ]
    # Unsigned raw reasoning (DeepSeek, gpt-oss): its text as reasoning_text content.
    assert items(Thinking("hmm", provider=PROVIDER, id="uuid")) == [
        {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "hmm"}]}
    ]
    # Nothing to carry: dropped (a bare id with store=false is a 404).
    assert items(Thinking("", provider=PROVIDER, id="rs_1")) == []
    # Someone else's reasoning, signed or not, and provider-less reasoning: dropped.
    assert items(Thinking("t", signature="sig", provider="anthropic")) == []
    assert items(Thinking("t")) == []
    assert items(Thinking("t", signature="sig")) == []
    assert items(RedactedThinking("opaque", provider="anthropic")) == []
    assert items(RedactedThinking("opaque")) == []
    # OpenAI's own opaque reasoning: the encrypted content with no summary.
    assert items(RedactedThinking("opaque", provider=PROVIDER)) == [
        {"type": "reasoning", "summary": [], "encrypted_content": "opaque"}
    ]


def test_unknown_and_server_blocks() -> None:
    web = {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {}}
    body = body_of(
        Message.assistant(
            [
                UnknownBlock(web, provider=PROVIDER),
                UnknownBlock({"type": "container_upload"}, provider="anthropic"),
                UnknownBlock({"type": "mystery"}),
                ServerToolCall("srvtoolu_1", "code_execution", {"code": "1"}),
                ServerToolResult("srvtoolu_1", "code_execution_tool_result", {}),
                Image("image/png", "AAAA"),
            ]
        )
    )
    assert body["input"] == [web]


def test_arguments_that_are_not_json_fail_clearly() -> None:
    with pytest.raises(InvalidRequestError, match="call_1"):
        body_of(Message.assistant([ToolCall("call_1", "read", {"x": {1, 2}})]))


def test_each_request_encodes_its_messages_afresh() -> None:
    # No memo keeps a wire copy of a history alive: equal items, new dicts, every turn.
    message = Message.assistant([Text("hi"), ToolCall("c", "read", {"a": 1})])
    first = body_of(message)["input"]
    second = body_of(message)["input"]
    assert first == second
    assert first[0] is not second[0]


def test_decode_request_reads_other_clients_shapes() -> None:
    body = {
        "instructions": "A",
        "input": [
            {"role": "system", "content": "B"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_image", "image_url": "https://example.com/cat.png"},
                    {"type": "input_file", "file_id": "file_1"},
                ],
            },
            {"type": "item_reference", "id": "msg_1"},
            {
                "type": "function_call_output",
                "call_id": "c",
                "output": [
                    {"type": "input_text", "text": "part 1 "},
                    {"type": "input_text", "text": "2"},
                ],
            },
        ],
        "tools": [
            {"type": "function", "name": "f", "parameters": {"type": "object"}},
            {"type": "web_search"},
        ],
    }
    request = decode_request(body)
    assert request.system_prompt == "A\n\nB"
    assert request.tools == (ToolSpec("f", "", {"type": "object"}),)
    url = {"type": "input_image", "image_url": "https://example.com/cat.png"}
    file = {"type": "input_file", "file_id": "file_1"}
    assert request.messages == (
        Message.user("hi"),
        Message.assistant("hello"),
        Message.user(
            [
                UnknownBlock({"role": "user", "content": [url]}, provider=PROVIDER),
                UnknownBlock({"role": "user", "content": [file]}, provider=PROVIDER),
            ]
        ),
        Message.assistant([UnknownBlock({"type": "item_reference", "id": "msg_1"}, PROVIDER)]),
        Message.user([ToolResult("c", "part 1 2")]),
    )
    # Re-encoded, the user's file and URL image stay user message items.
    items = encode_request(request, SETTINGS, stream=False).body["input"]
    assert items[2] == {"role": "user", "content": [url]}
    with pytest.raises(ProtocolError):
        decode_request({"input": 3})
    with pytest.raises(ProtocolError):
        decode_request({"input": ["x"]})


# -- 6. unit tests: non-streamed replies -----------------------------------------------------


def test_decode_text_calls_and_usage() -> None:
    body = reply(
        message_item("Let me ", "look."),
        call_item("call_1", "read", '{"path": "a"}'),
        call_item("call_2", "bash", ""),
        model="gpt-5.4-2026",
        usage={
            "input_tokens": 100,
            "input_tokens_details": {"cached_tokens": 80, "cache_write_tokens": 5},
            "output_tokens": 30,
            "output_tokens_details": {"reasoning_tokens": 12},
            "total_tokens": 130,
        },
    )
    completion = decode_response(body)
    assert completion.message.content == (
        Text("Let me "),
        Text("look."),
        ToolCall("call_1", "read", {"path": "a"}),
        ToolCall("call_2", "bash", {}),
    )
    assert completion.stop_reason is StopReason.TOOL_USE
    assert completion.model == "gpt-5.4-2026"
    assert completion.usage == Usage(
        input_tokens=100,
        output_tokens=30,
        cache_read_tokens=80,
        cache_write_tokens=5,
        reasoning_tokens=12,
    )


def test_missing_or_null_usage_is_zero() -> None:
    assert decode_response(reply(message_item("x"))).usage == Usage()
    assert decode_response(reply(message_item("x"), usage=None)).usage == Usage()
    weird = {"input_tokens": None, "output_tokens": -3, "input_tokens_details": None}
    assert decode_response(reply(usage=weird)).usage == Usage()


def test_reasoning_items() -> None:
    summary = {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [
            {"type": "summary_text", "text": "**A**"},
            {"type": "summary_text", "text": "B"},
        ],
        "encrypted_content": "gAAA",
    }
    deepseek = {
        "type": "reasoning",
        "id": "uuid-1",
        "summary": [],
        "content": [
            {"type": "reasoning_text", "text": "raw "},
            {"type": "reasoning_text", "text": "cot"},
        ],
    }
    empty: dict[str, Any] = {
        "type": "reasoning",
        "id": "rs_2",
        "summary": [],
        "encrypted_content": None,
    }
    message = decode_response(reply(summary, deepseek, empty, message_item("hi"))).message
    assert message.content[:3] == (
        Thinking("**A**\n\nB", signature="gAAA", provider=PROVIDER, id="rs_1"),
        Thinking("raw cot", provider=PROVIDER, id="uuid-1"),
        Thinking("", provider=PROVIDER, id="rs_2"),
    )


def test_refusal_parts() -> None:
    item = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "refusal", "refusal": "I can't help with that."}],
    }
    completion = decode_response(reply(item))
    assert completion.message.text == "I can't help with that."
    assert completion.stop_reason is StopReason.REFUSAL


def test_unknown_message_part_is_kept() -> None:
    part = {"type": "output_audio", "data": "..."}
    item = {"type": "message", "role": "assistant", "content": [part]}
    block = decode_response(reply(item)).message.content[0]
    assert block == UnknownBlock(
        {"type": "message", "role": "assistant", "content": [part]}, provider=PROVIDER
    )


def test_server_tool_items_are_unknown_blocks_not_tool_calls() -> None:
    web = {"type": "web_search_call", "id": "ws_1", "status": "completed"}
    completion = decode_response(reply(web, message_item("It's sunny.")))
    assert completion.message.tool_calls == ()
    assert completion.message.content[0] == UnknownBlock(web, provider=PROVIDER)
    assert completion.stop_reason is StopReason.END_TURN


@pytest.mark.parametrize(
    ("reason", "stop"),
    [
        ("max_output_tokens", StopReason.MAX_TOKENS),
        ("content_filter", StopReason.REFUSAL),
        ("something_new", StopReason.MAX_TOKENS),
        (None, StopReason.MAX_TOKENS),
    ],
)
def test_incomplete(reason: str | None, stop: StopReason) -> None:
    body = reply(
        message_item("partial"),
        status="incomplete",
        incomplete_details={"reason": reason} if reason else None,
    )
    assert decode_response(body).stop_reason is stop


def test_truncated_call_is_kept_with_empty_arguments() -> None:
    body = reply(
        call_item("call_1", "write", '{"path": "a", "content": "unfini'),
        status="incomplete",
        incomplete_details={"reason": "max_output_tokens"},
    )
    completion = decode_response(body)
    assert completion.message.tool_calls == (ToolCall("call_1", "write", {}),)
    assert completion.stop_reason is StopReason.MAX_TOKENS


@pytest.mark.parametrize("arguments", ['{"path": ', "[1, 2]", '"text"'])
def test_bad_arguments_in_a_complete_reply_are_a_protocol_error(arguments: str) -> None:
    with pytest.raises(ProtocolError, match="'read'"):
        decode_response(reply(call_item("call_1", "read", arguments)))


def test_arguments_as_an_object_are_accepted() -> None:
    item = {"type": "function_call", "call_id": "c", "name": "f", "arguments": {"a": 1}}
    assert decode_response(reply(item)).message.tool_calls == (ToolCall("c", "f", {"a": 1}),)


def test_unknown_status_is_end_turn() -> None:
    assert decode_response(reply(message_item("x"), status="complete")).stop_reason == "end_turn"
    body = json.dumps({"output": [message_item("x")]}).encode()  # no status at all
    assert decode_response(body).stop_reason is StopReason.END_TURN


@pytest.mark.parametrize(
    ("status", "match"),
    [("queued", "not finished"), ("in_progress", "not finished"), ("cancelled", "cancelled")],
)
def test_unfinished_statuses(status: str, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_response(reply(status=status))


def test_failed_response_raises_the_typed_error() -> None:
    body = reply(status="failed", error={"code": "rate_limit_exceeded", "message": "Slow down"})
    with pytest.raises(RateLimitError, match="Slow down") as info:
        decode_response(body)
    assert info.value.provider == PROVIDER
    assert info.value.status is None
    assert info.value.retryable


def test_error_object_in_a_200_body() -> None:
    body = b'{"error": {"message": "Internal error", "type": "server_error"}}'
    with pytest.raises(ServerError, match="Internal error"):
        decode_response(body)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'{"output": 5}',
        b'{"output": [3]}',
        b'{"output": [{"type": "function_call", "arguments": "{}"}]}',
        b"\xff\xfe",
    ],
)
def test_malformed_replies_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_response(body)
    assert info.value.provider == PROVIDER


# -- 6. unit tests: streams ------------------------------------------------------------------


def test_stream_text_and_end() -> None:
    deltas, decoder = feed(
        {
            "type": "response.created",
            "response": {"model": "gpt-5.4-2026", "status": "in_progress"},
        },
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "message", "id": "msg_1"},
        },
        {
            "type": "response.output_text.delta",
            "output_index": 0,
            "content_index": 0,
            "delta": "Hel",
        },
        {
            "type": "response.output_text.delta",
            "output_index": 0,
            "content_index": 0,
            "delta": "lo",
        },
        {
            "type": "response.output_text.done",
            "output_index": 0,
            "content_index": 0,
            "text": "Hello",
        },
        completed([message_item("Hello")], usage={"input_tokens": 3, "output_tokens": 2}),
    )
    assert deltas == [TextDelta(text="Hel"), TextDelta(text="lo")]
    completion = decoder.finish()
    assert completion.message == Message.assistant("Hello")
    assert completion.usage == Usage(input_tokens=3, output_tokens=2)
    assert completion.model == "gpt-5.4-2026"  # from response.created: completed had none
    assert decoder.finish() is completion


def test_stream_tool_call_indexes_count_function_calls_only() -> None:
    fc1 = call_item("call_a", "read", "")
    fc2 = call_item("call_b", "bash", "")
    deltas, decoder = feed(
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "reasoning", "id": "rs"},
        },
        {"type": "response.output_item.added", "output_index": 1, "item": {**fc1, "id": "fc_1"}},
        {"type": "response.function_call_arguments.delta", "output_index": 1, "delta": '{"pa'},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": 'th": 1}'},
        {
            "type": "response.function_call_arguments.done",
            "output_index": 1,
            "arguments": '{"path": 1}',
        },
        {"type": "response.output_item.added", "output_index": 2, "item": message_item()},
        {"type": "response.output_item.added", "output_index": 3, "item": fc2},
        {"type": "response.function_call_arguments.delta", "output_index": 3, "delta": "{}"},
        completed(
            [
                {"type": "reasoning", "id": "rs", "summary": []},
                {**fc1, "arguments": '{"path": 1}'},
                message_item(),
                {**fc2, "arguments": "{}"},
            ]
        ),
    )
    assert deltas == [
        ToolCallStarted(index=0, id="call_a", name="read"),
        ToolCallDelta(index=0, arguments='{"pa'),
        ToolCallDelta(index=0, arguments='th": 1}'),
        ToolCallStarted(index=1, id="call_b", name="bash"),
        ToolCallDelta(index=1, arguments="{}"),
    ]
    completion = decoder.finish()
    assert completion.message.tool_calls == (
        ToolCall("call_a", "read", {"path": 1}),
        ToolCall("call_b", "bash", {}),
    )
    assert completion.stop_reason is StopReason.TOOL_USE


def test_stream_catches_up_on_items_sent_whole() -> None:
    """Hosts that send whole items (no deltas), or only the final response."""
    fc = call_item("call_1", "read", '{"p": 2}')
    deltas, decoder = feed(
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": message_item("Hi ", "there"),
        },
        {"type": "response.function_call_arguments.done", "output_index": 1, "arguments": '{"p"'},
        completed(
            [
                message_item("Hi ", "there"),
                fc,
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "late"}]},
            ]
        ),
    )
    assert deltas == [
        TextDelta(text="Hi "),
        TextDelta(text="there"),
        ToolCallStarted(index=0, id="", name=""),  # args.done came with nothing else
        ToolCallDelta(index=0, arguments='{"p"'),
        ToolCallDelta(index=0, arguments=": 2}"),
        ThinkingDelta(text="late"),
    ]
    # The first started call had no id or name on the wire yet: the completion has them.
    assert decoder.finish().message.tool_calls == (ToolCall("call_1", "read", {"p": 2}),)


def test_stream_only_final_response() -> None:
    """Alloy 0.7.4's test: tool calls that arrive only in response.completed still count."""
    final = completed([message_item("ok"), call_item("c1", "read", '{"a": 1}')])
    deltas, decoder = feed(final)
    assert deltas == [
        TextDelta(text="ok"),
        ToolCallStarted(index=0, id="c1", name="read"),
        ToolCallDelta(index=0, arguments='{"a": 1}'),
    ]
    assert_deltas_add_up(deltas, decoder.finish())


def test_stream_reasoning_summary_parts_are_joined_like_the_final_text() -> None:
    def delta(summary_index: int, text: str) -> dict[str, Any]:
        return {
            "type": "response.reasoning_summary_text.delta",
            "output_index": 0,
            "summary_index": summary_index,
            "delta": text,
        }

    item = {
        "type": "reasoning",
        "id": "rs_1",
        "encrypted_content": "enc",
        "summary": [
            {"type": "summary_text", "text": "**One**"},
            {"type": "summary_text", "text": "Two"},
        ],
    }
    deltas, decoder = feed(
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "reasoning", "id": "rs_1", "summary": []},
        },
        delta(0, "**On"),
        delta(0, "e**"),
        delta(1, "Two"),
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        completed([item]),
    )
    assert deltas_thinking(deltas) == "**One**\n\nTwo"
    assert decoder.finish().message.content == (
        Thinking("**One**\n\nTwo", signature="enc", provider=PROVIDER, id="rs_1"),
    )


def test_stream_deepseek_reasoning_text() -> None:
    deltas, decoder = feed(
        {
            "type": "response.reasoning_text.delta",
            "output_index": 0,
            "content_index": 0,
            "delta": "We ",
        },
        {
            "type": "response.reasoning_text.delta",
            "output_index": 0,
            "content_index": 0,
            "delta": "think",
        },
        completed(
            [
                {
                    "type": "reasoning",
                    "id": "u",
                    "summary": [],
                    "content": [{"type": "reasoning_text", "text": "We think"}],
                }
            ]
        ),
    )
    assert deltas == [ThinkingDelta(text="We "), ThinkingDelta(text="think")]
    assert decoder.finish().message.content == (Thinking("We think", provider=PROVIDER, id="u"),)


def test_stream_openrouter_shape() -> None:
    """No ``event:`` lines, ``: OPENROUTER PROCESSING`` comments, ``data: [DONE]``."""
    raw = (
        b": OPENROUTER PROCESSING\n\n"
        b'data: {"type":"response.output_text.delta","output_index":0,"content_index":0,'
        b'"delta":"OK"}\n\n'
        b'data: {"type":"response.completed","response":{"status":"completed","output":'
        b'[{"type":"message","role":"assistant","content":[{"type":"output_text","text":"OK"}]}]}}'
        b"\n\ndata: [DONE]\n\n"
    )
    deltas, completion = run_stream(sse_events(raw))
    assert deltas == [TextDelta(text="OK")]
    assert completion.message.text == "OK"


def test_stream_event_name_used_when_json_has_no_type() -> None:
    event = SSEEvent(
        '{"output_index": 0, "content_index": 0, "delta": "x"}', event="response.output_text.delta"
    )
    assert StreamDecoder().feed(event) == [TextDelta(text="x")]


def test_stream_incomplete_is_the_end_marker() -> None:
    deltas, decoder = feed(
        {
            "type": "response.output_text.delta",
            "output_index": 0,
            "content_index": 0,
            "delta": "cut",
        },
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": call_item("c", "write", ""),
        },
        {"type": "response.function_call_arguments.delta", "output_index": 1, "delta": '{"pa'},
        {
            "type": "response.incomplete",
            "response": {
                "status": "incomplete",
                "incomplete_details": {"reason": "max_output_tokens"},
                "output": [message_item("cut"), call_item("c", "write", '{"pa')],
            },
        },
    )
    completion = decoder.finish()
    assert completion.stop_reason is StopReason.MAX_TOKENS
    assert completion.message.content == (Text("cut"), ToolCall("c", "write", {}))
    # The fragments streamed as they came, though they do not parse: the run does not execute
    # calls of a truncated turn.
    assert deltas_calls(deltas) == {0: ("c", "write", '{"pa')}


def test_stream_incomplete_without_status_field() -> None:
    _, decoder = feed({"type": "response.incomplete", "response": {"output": []}})
    assert decoder.finish().stop_reason is StopReason.MAX_TOKENS


def test_stream_invalid_arguments_in_a_complete_stream_is_a_protocol_error() -> None:
    _, decoder = feed(completed([call_item("c", "read", '{"broken"')]))
    with pytest.raises(ProtocolError, match="'read'"):
        decoder.finish()


def test_stream_error_event() -> None:
    error = {"type": "error", "code": "rate_limit_exceeded", "message": "Too many", "param": None}
    decoder = StreamDecoder()
    assert decoder.feed(
        SSEEvent(
            json.dumps(
                {
                    "type": "response.output_text.delta",
                    "output_index": 0,
                    "content_index": 0,
                    "delta": "par",
                }
            )
        )
    )
    with pytest.raises(RateLimitError, match="Too many") as info:
        decoder.feed(SSEEvent(json.dumps(error), event="error"))
    assert info.value.status is None
    assert info.value.error_type == "rate_limit_exceeded"
    assert info.value.provider == PROVIDER


def test_stream_error_event_with_nested_error() -> None:
    error = {"type": "error", "error": {"type": "server_error", "message": "oops"}}
    with pytest.raises(ServerError, match="oops"):
        StreamDecoder().feed(SSEEvent(json.dumps(error)))


def test_stream_response_failed() -> None:
    failed = {
        "type": "response.failed",
        "response": {
            "status": "failed",
            "error": {
                "code": "context_length_exceeded",
                "message": "Your input exceeds the context window",
            },
        },
    }
    with pytest.raises(ContextLengthExceeded, match="context window"):
        StreamDecoder().feed(SSEEvent(json.dumps(failed)))


def test_stream_bad_event_data_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="not valid JSON"):
        StreamDecoder().feed(SSEEvent("{oops", event="response.output_text.delta"))
    with pytest.raises(ProtocolError, match="not a JSON object"):
        StreamDecoder().feed(SSEEvent("[]"))
    with pytest.raises(ProtocolError, match="without a response"):
        StreamDecoder().feed(SSEEvent('{"type": "response.completed"}'))


def test_stream_cut_is_a_protocol_error() -> None:
    _, decoder = feed(
        {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "x"}
    )
    with pytest.raises(ProtocolError, match="stream ended before"):
        decoder.finish()
    with pytest.raises(ProtocolError):
        StreamDecoder().finish()


def test_stream_ignores_events_after_the_end_and_unknown_events() -> None:
    deltas, decoder = feed(
        {"type": "response.web_search_call.searching", "output_index": 0},
        {"type": "response.output_text.annotation.added", "output_index": 0},
        {"type": "keepalive"},
        completed([message_item("a")]),
        {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "b"},
    )
    assert deltas == [TextDelta(text="a")]
    assert decoder.finish().message.text == "a"


def test_stream_arguments_are_assembled_in_linear_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # No clock: count the characters the decoder hands to json.loads. Parsing every event once
    # and the joined arguments once (or a few times) is linear; parsing the arguments collected
    # so far on every fragment (or every few) is quadratic and hands json.loads about
    # pieces**2 / k characters. The wall-clock scaling is measured in benchmarks/bench_codecs.py.
    pieces = 20_000
    full = '{"text": "' + "ab" * pieces + '"}'
    events = [
        SSEEvent(
            json.dumps(
                {
                    "type": "response.output_item.added",
                    "output_index": 0,
                    "item": call_item("c", "write", ""),
                }
            )
        ),
        SSEEvent(
            '{"type":"response.function_call_arguments.delta","output_index":0,'
            '"delta":"{\\"text\\": \\""}'
        ),
        *[
            SSEEvent(
                '{"type":"response.function_call_arguments.delta","output_index":0,"delta":"ab"}'
            )
        ]
        * pieces,
        SSEEvent(
            '{"type":"response.function_call_arguments.delta","output_index":0,"delta":"\\"}"}'
        ),
        SSEEvent(json.dumps(completed([call_item("c", "write", full)]))),
    ]
    completion, parsed = decode_counting_json(monkeypatch, codec, events)
    assert completion.message.tool_calls[0].arguments == {"text": "ab" * pieces}
    per_event = sum(len(event.data) for event in events)
    assert parsed >= per_event + len(full)  # every event, and the arguments at least once
    assert parsed - per_event <= 3 * len(full), (parsed - per_event) / len(full)


# -- 6. unit tests: errors -------------------------------------------------------------------


def error_body(**error: Any) -> bytes:
    return json.dumps({"error": error}).encode()


def test_decode_error_openai_body_and_headers() -> None:
    body = error_body(
        message="Rate limit reached", type="requests", code="rate_limit_exceeded", param=None
    )
    headers = {
        "retry-after-ms": "1500",
        "x-request-id": "req_1",
        "x-ratelimit-remaining-requests": "0",
    }
    error = decode_error(429, headers, body)
    assert isinstance(error, RateLimitError)
    assert error.retryable
    assert (error.status, error.error_type, error.request_id) == (429, "requests", "req_1")
    assert error.retry_after == 1.5
    assert error.rate_limits == {"x-ratelimit-remaining-requests": "0"}
    assert "Rate limit reached" in str(error)


def test_decode_error_deepseek_octet_stream_400() -> None:
    body = error_body(
        message="No tool output found for tool call call-a.",
        type="invalid_request_error",
        param=None,
        code="invalid_request_error",
    )
    error = decode_error(400, {"content-type": "application/octet-stream"}, body)
    assert isinstance(error, InvalidRequestError)
    assert "No tool output found" in str(error)


@pytest.mark.parametrize(
    ("status", "body", "kind", "text"),
    [
        (
            401,
            error_body(
                message="Incorrect API key", type="invalid_request_error", code="invalid_api_key"
            ),
            AuthenticationError,
            "Incorrect API key",
        ),
        (
            400,
            error_body(message="maximum context length is 128000", code="context_length_exceeded"),
            ContextLengthExceeded,
            "maximum context",
        ),
        (
            503,
            error_body(message="overloaded", type="server_error", code="server_is_overloaded"),
            OverloadedError,
            "overloaded",
        ),
        (500, b'{"error": "upstream exploded"}', ServerError, "upstream exploded"),
        (502, b"<html>Bad Gateway</html>", ServerError, "Bad Gateway"),
        (503, b"", ServerError, "no details"),
        (
            400,
            b'{"message": "bare object", "type": "invalid_request_error"}',
            InvalidRequestError,
            "bare object",
        ),
        (400, b"[1]", InvalidRequestError, "[1]"),
    ],
)
def test_decode_error_shapes(
    status: int, body: bytes, kind: type[ProviderError], text: str
) -> None:
    error = decode_error(status, {}, body)
    assert type(error) is kind
    assert text in str(error)
    assert error.provider == PROVIDER
    assert error.status == status


# -- the module itself -----------------------------------------------------------------------


def test_codec_is_sans_io() -> None:
    tree = ast.parse(Path(codec.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"trio", "httpx", "httpx2", "anyio", "asyncio", "socket"}


def test_docstring_examples() -> None:
    results = doctest.testmod(codec, optionflags=doctest.ELLIPSIS)
    assert results.failed == 0
    assert results.attempted >= 10
    for name in codec.__all__:
        assert getattr(codec, name).__doc__ or name in {"PROVIDER", "PATH", "ERROR_PREFIX"}
