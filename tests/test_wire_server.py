"""alloy.testing.WireServer: a fake LLM server over real loopback HTTP, in three wire formats.

Driven with a raw ``httpx2.AsyncClient`` (no provider class): JSON and streamed replies shaped like
the real recordings in ``shared/wire/recorded/``, recorded requests, keep-alive, HTTP errors,
streams cut or stalled mid-way, in-stream errors, malformed bodies, script exhaustion, and a clean
shutdown that leaves no task behind. Real sockets, so the real clock: every network test runs
under a generous ``trio.fail_after`` and makes no timing assertion beyond "it still works".
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio

import alloy
from alloy._codec._sse import SSEDecoder, SSEEvent
from alloy.testing import Fail, call, error, reply, text, tool_call
from alloy.testing._wire_encode import (
    encode_anthropic,
    encode_chat,
    encode_error,
    encode_responses,
    encode_stream,
)
from alloy.testing._wire_server import (
    RecordedRequest,
    WireServer,
    cut,
    http_error,
    raw,
    stall,
    stream_error,
)
from support import count_tasks

FORMATS = ("anthropic", "openai", "chat")
PATHS = {"anthropic": "/v1/messages", "openai": "/v1/responses", "chat": "/v1/chat/completions"}
RECORDED = Path(__file__).resolve().parents[2] / "shared" / "wire" / "recorded"
DIRS = {"anthropic": "anthropic-messages", "openai": "openai-responses", "chat": "openai-chat"}
# One recorded non-streamed 200 reply per format whose top-level keys we reproduce exactly.
JSON_SAMPLES = {
    "anthropic": "anthropic.test_output__test_mixed_tools_no_output__0.json",
    "openai": "test_openai_responses__test_openai_responses_model_retry__0.json",
    "chat": "test_openai__test_document_as_binary_content_input_with_tool__0.json",
}
# Event types no recording has, checked against the shape of their sibling.
UNRECORDED = {"response.incomplete": "response.completed"}
needs_recordings = pytest.mark.skipif(
    not RECORDED.is_dir(), reason="shared/wire/recorded is not present"
)

THOUGHTFUL = reply(
    alloy.Thinking("Let me look at the file first.", signature="sig-abc"),
    "Reading it now: ünïcode ✓",
    call("read", {"path": "notes.txt", "limit": 10}),
    call("bash", {"command": "ls -la"}),
    usage=alloy.Usage(input_tokens=120, output_tokens=30, cache_read_tokens=40, reasoning_tokens=7),
)


def body_for(format: str, *, stream: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "test-model", "stream": stream, **extra}
    if format == "chat":
        body["messages"] = [{"role": "user", "content": "hi"}]
        if stream:
            body["stream_options"] = {"include_usage": True}
    elif format == "openai":
        body["input"] = [{"role": "user", "content": "hi"}]
    else:
        body["messages"] = [{"role": "user", "content": "hi"}]
        body["max_tokens"] = 100
    return body


@asynccontextmanager
async def client_for(
    server: WireServer, *, read_timeout: float = 5.0
) -> AsyncIterator[httpx2.AsyncClient]:
    timeout = httpx2.Timeout(5.0, read=read_timeout)
    async with httpx2.AsyncClient(base_url=server.url, timeout=timeout, trust_env=False) as client:
        yield client


def sse_events(body: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return decoder.feed(body) + decoder.close()


def payloads(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(event.data) for event in sse_events(body) if not event.is_done]


def reassemble(format: str, body: bytes) -> dict[str, Any]:
    """Text, thinking and tool calls put back together from a streamed body's deltas."""
    out: dict[str, Any] = {"text": "", "thinking": "", "signature": None, "calls": {}}
    calls: dict[Any, dict[str, str]] = out["calls"]
    for data in payloads(body):
        kind = data.get("type")
        if format == "anthropic":
            if kind == "content_block_start" and data["content_block"]["type"] == "tool_use":
                block = data["content_block"]
                calls[data["index"]] = {"id": block["id"], "name": block["name"], "args": ""}
            elif kind == "content_block_delta":
                delta = data["delta"]
                if delta["type"] == "text_delta":
                    out["text"] += delta["text"]
                elif delta["type"] == "thinking_delta":
                    out["thinking"] += delta["thinking"]
                elif delta["type"] == "signature_delta":
                    out["signature"] = delta["signature"]
                elif delta["type"] == "input_json_delta":
                    calls[data["index"]]["args"] += delta["partial_json"]
        elif format == "openai":
            if kind == "response.output_item.added" and data["item"]["type"] == "function_call":
                item = data["item"]
                calls[item["id"]] = {"id": item["call_id"], "name": item["name"], "args": ""}
            elif kind == "response.output_item.done" and data["item"]["type"] == "reasoning":
                out["signature"] = data["item"]["encrypted_content"]
            elif kind == "response.output_text.delta":
                out["text"] += data["delta"]
            elif kind == "response.reasoning_summary_text.delta":
                out["thinking"] += data["delta"]
            elif kind == "response.function_call_arguments.delta":
                calls[data["item_id"]]["args"] += data["delta"]
        else:
            for choice in data.get("choices", ()):
                delta = choice["delta"]
                out["text"] += delta.get("content") or ""
                out["thinking"] += delta.get("reasoning_content") or ""
                for fragment in delta.get("tool_calls", ()):
                    if "id" in fragment:
                        calls[fragment["index"]] = {
                            "id": fragment["id"],
                            "name": fragment["function"]["name"],
                            "args": "",
                        }
                    calls[fragment["index"]]["args"] += fragment["function"]["arguments"]
    out["calls"] = [(c["id"], c["name"], json.loads(c["args"])) for c in calls.values()]
    return out


def recorded(format: str) -> list[dict[str, Any]]:
    files = sorted((RECORDED / DIRS[format]).glob("*.json"))
    return [json.loads(path.read_text()) for path in files]


# -- replies, JSON and streamed ------------------------------------------------------------------


@pytest.mark.parametrize("format", FORMATS)
async def test_json_reply(format: str) -> None:
    with trio.fail_after(10):
        async with WireServer([THOUGHTFUL], format=format) as server, client_for(server) as client:
            response = await client.post(PATHS[format], json=body_for(format))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    data = response.json()
    if format == "anthropic":
        assert data["type"] == "message" and data["model"] == "test-model"
        assert [b["type"] for b in data["content"]] == ["thinking", "text", "tool_use", "tool_use"]
        assert data["content"][0]["signature"] == "sig-abc"
        assert [b.get("id") for b in data["content"][2:]] == ["call_1", "call_2"]
        assert data["content"][2]["input"] == {"path": "notes.txt", "limit": 10}
        assert data["stop_reason"] == "tool_use"
        assert response.headers["request-id"] == "req_wire_1"
    elif format == "openai":
        assert data["object"] == "response" and data["status"] == "completed"
        kinds = [item["type"] for item in data["output"]]
        assert kinds == ["reasoning", "message", "function_call", "function_call"]
        assert data["output"][0]["encrypted_content"] == "sig-abc"
        assert data["output"][0]["summary"][0]["text"] == "Let me look at the file first."
        assert data["output"][1]["content"][0]["text"] == "Reading it now: ünïcode ✓"
        assert [item["call_id"] for item in data["output"][2:]] == ["call_1", "call_2"]
        assert json.loads(data["output"][3]["arguments"]) == {"command": "ls -la"}
        assert response.headers["x-request-id"] == "req_wire_1"
    else:
        assert data["object"] == "chat.completion"
        choice = data["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        assert choice["message"]["content"] == "Reading it now: ünïcode ✓"
        assert choice["message"]["reasoning_content"] == "Let me look at the file first."
        calls = choice["message"]["tool_calls"]
        assert [(c["id"], c["function"]["name"]) for c in calls] == [
            ("call_1", "read"),
            ("call_2", "bash"),
        ]


@pytest.mark.parametrize("format", FORMATS)
async def test_streamed_reply(format: str) -> None:
    with trio.fail_after(10):
        async with (
            WireServer([THOUGHTFUL], format=format, chunk_size=4) as server,
            client_for(server) as client,
        ):
            chunks: list[bytes] = []
            request = body_for(format, stream=True)
            async with client.stream("POST", PATHS[format], json=request) as response:
                async for chunk in response.aiter_raw():
                    chunks.append(chunk)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["transfer-encoding"] == "chunked"
    body = b"".join(chunks)
    events = sse_events(body)
    assert len(events) > 10
    back = reassemble(format, body)
    assert back["text"] == "Reading it now: ünïcode ✓"
    assert back["thinking"] == "Let me look at the file first."
    assert back["calls"] == [
        ("call_1", "read", {"path": "notes.txt", "limit": 10}),
        ("call_2", "bash", {"command": "ls -la"}),
    ]
    if format == "anthropic":
        names = [event.event for event in events]
        assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
        assert "ping" in names
        assert all(json.loads(e.data)["type"] == e.event for e in events)
        assert back["signature"] == "sig-abc"
        argument_deltas = [
            d for d in payloads(body) if d.get("delta", {}).get("type") == "input_json_delta"
        ]
        assert len(argument_deltas) > 4  # several fragments per call
        assert payloads(body)[-2]["delta"]["stop_reason"] == "tool_use"
    elif format == "openai":
        names = [event.event for event in events]
        assert names[:2] == ["response.created", "response.in_progress"]
        assert names[-1] == "response.completed"
        assert "response.function_call_arguments.done" in names
        data = payloads(body)
        assert [d["sequence_number"] for d in data] == list(range(len(data)))
        assert back["signature"] == "sig-abc"
        completed = data[-1]["response"]
        assert completed["usage"]["input_tokens_details"]["cached_tokens"] == 40
        assert completed["usage"]["output_tokens_details"]["reasoning_tokens"] == 7
    else:
        assert all(event.event == "" for event in events)
        assert events[-1].is_done
        data = payloads(body)
        assert data[-1]["choices"] == [] and data[-1]["usage"]["prompt_tokens"] == 120
        assert data[-2]["choices"][0]["finish_reason"] == "tool_calls"
        assert data[0]["choices"][0]["delta"]["role"] == "assistant"


@needs_recordings
@pytest.mark.parametrize("format", FORMATS)
async def test_json_reply_has_the_recorded_top_level_keys(format: str) -> None:
    sample = json.loads((RECORDED / DIRS[format] / JSON_SAMPLES[format]).read_text())
    recorded_keys = set(json.loads(sample["response"]["body"]))
    for item in (THOUGHTFUL, text("plain"), tool_call("read", {"path": "a"})):
        ours = json.loads(encode_for(format, item, stream=False))
        assert set(ours) == recorded_keys


def encode_for(format: str, item: alloy.testing.Reply, *, stream: bool) -> bytes:
    if format == "anthropic":
        return encode_anthropic(item, stream=stream, chunk_size=3)
    if format == "openai":
        return encode_responses(item, stream=stream, chunk_size=3)
    return encode_chat(item, stream=stream, chunk_size=3)


@needs_recordings
@pytest.mark.parametrize("format", FORMATS)
async def test_stream_events_have_recorded_shapes(format: str) -> None:
    """Every event we stream has the same top-level keys as a recorded event of its type."""
    shapes: dict[str, set[frozenset[str]]] = {}
    for exchange in recorded(format):
        if not exchange["stream"] or exchange["response"]["status"] != 200:
            continue
        for event in sse_events(exchange["response"]["body"].encode()):
            try:
                data = json.loads(event.data)
            except ValueError:
                continue
            if isinstance(data, dict):
                keys = frozenset(data) - {"obfuscation"}
                shapes.setdefault(data.get("type", "chunk"), set()).add(keys)
    items: list[alloy.testing.Reply] = [THOUGHTFUL, text("cut short", stop_reason="max_tokens")]
    if format != "chat":
        items.append(reply(alloy.RedactedThinking("opaque"), "after redacted"))
    for item in items:
        for data in payloads(encode_for(format, item, stream=True)):
            kind = data.get("type", "chunk")
            kind = UNRECORDED.get(kind, kind)
            assert frozenset(data) in shapes.get(kind, set()), (kind, sorted(data))


@needs_recordings
async def test_nested_stream_objects_have_recorded_keys() -> None:
    anthropic = payloads(encode_anthropic(THOUGHTFUL, stream=True))[0]["message"]
    recorded_start = next(
        json.loads(event.data)["message"]
        for exchange in recorded("anthropic")
        if exchange["stream"]
        for event in sse_events(exchange["response"]["body"].encode())
        if event.event == "message_start"
    )
    assert set(anthropic) <= set(recorded_start) | {"stop_details"}
    assert set(anthropic["usage"]) <= set(recorded_start["usage"])
    sample = json.loads((RECORDED / DIRS["openai"] / JSON_SAMPLES["openai"]).read_text())
    completed = payloads(encode_responses(THOUGHTFUL, stream=True))[-1]["response"]
    assert set(completed) == set(json.loads(sample["response"]["body"]))


# -- usage, stop reasons, errors (sans-IO) -------------------------------------------------------


def test_usage_mapping() -> None:
    usage = alloy.Usage(
        input_tokens=100, output_tokens=9, cache_read_tokens=30, cache_write_tokens=20
    )
    item = reply("hi", usage=usage)
    anthropic = json.loads(encode_anthropic(item))["usage"]
    assert anthropic["input_tokens"] == 50  # Anthropic's wire input excludes cache reads/writes
    assert anthropic["cache_read_input_tokens"] == 30
    assert anthropic["cache_creation_input_tokens"] == 20
    assert anthropic["output_tokens"] == 9
    streamed = payloads(encode_anthropic(item, stream=True))
    assert streamed[0]["message"]["usage"]["input_tokens"] == 50
    assert streamed[-2]["usage"] == {
        "input_tokens": 50,
        "cache_creation_input_tokens": 20,
        "cache_read_input_tokens": 30,
        "output_tokens": 9,
    }
    responses = json.loads(encode_responses(item))["usage"]
    assert responses["input_tokens"] == 100  # OpenAI's includes them
    assert responses["input_tokens_details"] == {"cached_tokens": 30, "cache_write_tokens": 20}
    assert responses["total_tokens"] == 109
    chat = json.loads(encode_chat(item))["usage"]
    assert chat["prompt_tokens"] == 100 and chat["completion_tokens"] == 9
    assert chat["prompt_tokens_details"]["cached_tokens"] == 30


def test_stop_reasons() -> None:
    item = text("cut off mid-sen", stop_reason="max_tokens")
    assert json.loads(encode_anthropic(item))["stop_reason"] == "max_tokens"
    incomplete = json.loads(encode_responses(item))
    assert incomplete["status"] == "incomplete"
    assert incomplete["incomplete_details"] == {"reason": "max_output_tokens"}
    assert payloads(encode_responses(item, stream=True))[-1]["type"] == "response.incomplete"
    assert json.loads(encode_chat(item))["choices"][0]["finish_reason"] == "length"
    assert json.loads(encode_chat(text("ok")))["choices"][0]["finish_reason"] == "stop"


def test_error_bodies() -> None:
    status, headers, body = encode_error("anthropic", 429, "Slow down")
    assert status == 429 and ("content-type", "application/json") in headers
    assert json.loads(body) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Slow down"},
    }
    for format in ("openai", "chat"):
        _, _, body = encode_error(format, 400, "too long", code="context_length_exceeded")
        assert json.loads(body) == {
            "error": {
                "message": "too long",
                "type": "invalid_request_error",
                "param": None,
                "code": "context_length_exceeded",
            }
        }
    _, _, body = encode_error("openai", 401, "bad key")
    assert json.loads(body)["error"]["code"] == "invalid_api_key"
    _, _, body = encode_error("anthropic", 529, "Overloaded", "overloaded_error")
    assert json.loads(body)["error"]["type"] == "overloaded_error"


def test_encoders_split_text_and_number_unnamed_calls() -> None:
    stream = encode_stream("anthropic", text("abcdefghij"), chunk_size=3)
    pieces = [
        d["delta"]["text"]
        for d in payloads(stream.body)
        if d.get("delta", {}).get("type") == "text_delta"
    ]
    assert pieces == ["abc", "def", "ghi", "j"]
    item = reply(call("a"), call("b", id="mine"), call("c"))
    ids = [b["id"] for b in json.loads(encode_anthropic(item))["content"]]
    assert ids == ["call_1", "mine", "call_3"]
    with pytest.raises(ValueError, match="chunk_size"):
        encode_chat(text("x"), chunk_size=0)


def test_stream_options_for_hosts_that_send_less() -> None:
    # Chat: no usage chunk and no [DONE]; the finish chunk ends the stream.
    with_done = encode_stream("chat", THOUGHTFUL, include_usage=False)
    bare = encode_stream("chat", THOUGHTFUL, include_usage=False, done=False)
    assert with_done.events == (*bare.events, b"data: [DONE]\n\n")
    assert len(bare.events) == bare.closing + 1
    (finish,) = payloads(bare.events[-1])
    assert finish["choices"][0]["finish_reason"] == "tool_calls" and "usage" not in finish
    assert encode_chat(THOUGHTFUL, stream=True, include_usage=False, done=False) == bare.body
    # Responses: the final response without its output (the items came in the stream).
    kept = payloads(encode_responses(THOUGHTFUL, stream=True))[-1]["response"]
    empty = payloads(encode_responses(THOUGHTFUL, stream=True, final_output=False))[-1]["response"]
    assert len(kept["output"]) == 4 and empty["output"] == []
    assert {**kept, "output": []} == empty
    assert encode_stream("openai", THOUGHTFUL, final_output=False).body == encode_responses(
        THOUGHTFUL, stream=True, final_output=False
    )


def test_blocks_a_format_cannot_carry_are_refused_up_front() -> None:
    with pytest.raises(ValueError, match=r"script\[1\].*chat.*RedactedThinking"):
        WireServer([text("ok"), reply(alloy.RedactedThinking("opaque"))], format="chat")
    with pytest.raises(ValueError, match="unknown wire format"):
        WireServer([], format="grpc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"script\[0\]"):
        WireServer([42])  # type: ignore[list-item]


# -- requests, keep-alive, concurrency -----------------------------------------------------------


async def test_requests_are_recorded() -> None:
    with trio.fail_after(10):
        async with (
            WireServer(["one", "two"], format="anthropic") as server,
            client_for(server) as client,
        ):
            await client.post(
                "/v1/messages?beta=true",
                json=body_for("anthropic"),
                headers={"X-Api-Key": "sk-test", "Anthropic-Version": "2023-06-01"},
            )
            await client.post("/v1/messages", json=body_for("anthropic", stream=True))
    first, second = server.requests
    assert isinstance(first, RecordedRequest)
    assert first.method == "POST" and first.path == "/v1/messages" and first.query == "beta=true"
    assert first.headers["x-api-key"] == "sk-test"
    assert first.headers["anthropic-version"] == "2023-06-01"
    assert first.body == body_for("anthropic")
    assert json.loads(first.raw) == first.body
    assert first.stream is False and second.stream is True
    assert server.remaining == 0


@pytest.mark.parametrize("format", FORMATS)
async def test_connection_is_reused(format: str) -> None:
    with trio.fail_after(10):
        async with (
            WireServer(["a", "b", "c"], format=format) as server,
            client_for(server) as client,
        ):
            for index in range(3):
                request = body_for(format, stream=index == 1)
                response = await client.post(PATHS[format], json=request)
                assert response.status_code == 200
    assert server.connections == 1
    assert len(server.requests) == 3
    assert server.errors == []


async def test_parallel_connections_take_items_in_order() -> None:
    replies = [text(f"reply {n}") for n in range(4)]
    answers: list[str] = []
    with trio.fail_after(10):
        async with (
            WireServer(replies, format="chat", latency=0.02) as server,
            client_for(server) as client,
        ):

            async def ask() -> None:
                response = await client.post(PATHS["chat"], json=body_for("chat"))
                answers.append(response.json()["choices"][0]["message"]["content"])

            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(ask)
    assert sorted(answers) == [f"reply {n}" for n in range(4)]
    assert server.connections == 4


async def test_tool_calls_are_numbered_across_the_script() -> None:
    script = [tool_call("read", {"path": "a"}), tool_call("read", {"path": "b"}, id="own")]
    script.append(reply(call("x"), call("y")))
    with trio.fail_after(10):
        async with WireServer(script, format="openai") as server, client_for(server) as client:
            ids = []
            for _ in range(3):
                response = await client.post(PATHS["openai"], json=body_for("openai"))
                ids += [i["call_id"] for i in response.json()["output"] if "call_id" in i]
    assert ids == ["call_1", "own", "call_2", "call_3"]


async def test_chat_usage_chunk_follows_stream_options() -> None:
    with trio.fail_after(10):
        async with (
            WireServer(["hello", "hello"], format="chat") as server,
            client_for(server) as client,
        ):
            plain = {"model": "m", "messages": [], "stream": True}
            without = await client.post(PATHS["chat"], json=plain)
            with_usage = await client.post(
                PATHS["chat"], json={**plain, "stream_options": {"include_usage": True}}
            )
    assert all("usage" not in d for d in payloads(without.content))
    assert payloads(with_usage.content)[-1]["usage"]["total_tokens"] == 15
    assert sse_events(without.content)[-1].is_done


# -- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize("format", FORMATS)
async def test_fail_item_is_an_http_error(format: str) -> None:
    limited = alloy.RateLimitError(
        "Too many requests", status=429, retry_after=2, rate_limits={"x-ratelimit-remaining": "0"}
    )
    with trio.fail_after(10):
        async with (
            WireServer([Fail(error=limited), "after"], format=format) as server,
            client_for(server) as client,
        ):
            response = await client.post(PATHS[format], json=body_for(format))
            recovered = await client.post(PATHS[format], json=body_for(format))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.headers["x-ratelimit-remaining"] == "0"
    data = response.json()
    if format == "anthropic":
        assert data["type"] == "error"
        assert data["error"] == {"type": "rate_limit_error", "message": "Too many requests"}
    else:
        assert data["error"]["message"] == "Too many requests"
        assert data["error"]["code"] == "rate_limit_exceeded"
    assert recovered.status_code == 200
    assert server.connections == 1  # an error reply keeps the connection alive


async def test_fail_items_by_error_class() -> None:
    script = [
        error(alloy.AuthenticationError("bad key")),
        error(alloy.OverloadedError("Overloaded", retry_after=0.25)),
        error(alloy.ContextLengthExceeded("maximum context length exceeded")),
        error("scripted failure"),
        error(alloy.ProtocolError("garbled")),
    ]
    with trio.fail_after(10):
        async with WireServer(script, format="openai") as server, client_for(server) as client:
            responses = [
                await client.post(PATHS["openai"], json=body_for("openai")) for _ in script
            ]
    statuses = [r.status_code for r in responses]
    assert statuses == [401, 503, 400, 500, 200]
    assert responses[1].headers["retry-after-ms"] == "250"
    assert responses[1].headers["retry-after"] == "1"
    assert responses[2].json()["error"]["code"] == "context_length_exceeded"
    with pytest.raises(json.JSONDecodeError):
        responses[4].json()


async def test_connection_error_drops_the_connection() -> None:
    script = [error(alloy.ProviderConnectionError("reset")), "after"]
    with trio.fail_after(10):
        async with WireServer(script, format="anthropic") as server, client_for(server) as client:
            with pytest.raises(httpx2.TransportError):
                await client.post(PATHS["anthropic"], json=body_for("anthropic"))
            response = await client.post(PATHS["anthropic"], json=body_for("anthropic"))
    assert response.json()["content"][0]["text"] == "after"
    assert server.errors == []


async def test_http_error_item() -> None:
    script = [
        http_error(529, "Overloaded", headers={"retry-after": "3"}),
        http_error(400, "prompt is too long: 210000 tokens > 200000 maximum"),
    ]
    with trio.fail_after(10):
        async with WireServer(script, format="anthropic") as server, client_for(server) as client:
            overloaded = await client.post(PATHS["anthropic"], json=body_for("anthropic"))
            too_long = await client.post(PATHS["anthropic"], json=body_for("anthropic"))
    assert overloaded.status_code == 529 and overloaded.headers["retry-after"] == "3"
    assert overloaded.json()["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert overloaded.json()["request_id"] == overloaded.headers["request-id"]
    assert too_long.status_code == 400
    assert too_long.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(ValueError, match="4xx or 5xx"):
        http_error(200, "fine")


@pytest.mark.parametrize("format", FORMATS)
async def test_cut_mid_stream(format: str) -> None:
    full = encode_stream(format, THOUGHTFUL, model="test-model", chunk_size=16).body
    with trio.fail_after(10):
        async with (
            WireServer([cut(THOUGHTFUL, 300), "next"], format=format) as server,
            client_for(server) as client,
        ):
            received = bytearray()
            request = body_for(format, stream=True)
            with pytest.raises(httpx2.RemoteProtocolError):
                async with client.stream("POST", PATHS[format], json=request) as response:
                    async for chunk in response.aiter_raw():
                        received += chunk
            after = await client.post(PATHS[format], json=body_for(format))
    assert response.status_code == 200
    assert len(received) == 300
    assert bytes(received) == full[:300]
    assert after.status_code == 200
    assert server.connections == 2  # the cut connection is gone; the client opened another
    assert server.errors == []


async def test_cut_json_body() -> None:
    with trio.fail_after(10):
        async with (
            WireServer([cut(text("x" * 500))], format="chat") as server,
            client_for(server) as client,
        ):
            with pytest.raises(httpx2.RemoteProtocolError):
                await client.post(PATHS["chat"], json=body_for("chat"))
    assert server.errors == []


async def test_stall_mid_stream() -> None:
    script = [stall("a slow answer", 50), stall("a late answer", 50, seconds=0.05)]
    with trio.fail_after(10):
        async with (
            WireServer(script, format="anthropic") as server,
            client_for(server, read_timeout=0.3) as client,
        ):
            request = body_for("anthropic", stream=True)
            with pytest.raises(httpx2.ReadTimeout):
                await client.post(PATHS["anthropic"], json=request)
            late = await client.post(PATHS["anthropic"], json=request)
    assert reassemble("anthropic", late.content)["text"] == "a late answer"
    assert math.isinf(stall("x").seconds)


async def test_raw_bytes() -> None:
    broken = b'{"id": "msg_1", "content": [{"type": "text", "te'
    sse = b"event: message_start\ndata: {not json}\n\n"
    script = [
        raw(200, broken),
        raw(200, sse, {"content-type": "text/event-stream"}),
        raw(502, b"<html>Bad Gateway</html>", [("content-type", "text/html")]),
    ]
    with trio.fail_after(10):
        async with WireServer(script, format="anthropic") as server, client_for(server) as client:
            first = await client.post(PATHS["anthropic"], json=body_for("anthropic"))
            second = await client.post(PATHS["anthropic"], json=body_for("anthropic"))
            third = await client.post(PATHS["anthropic"], json=body_for("anthropic"))
    assert first.content == broken and first.headers["content-type"] == "application/json"
    assert second.content == sse and second.headers["content-type"] == "text/event-stream"
    assert third.status_code == 502 and third.text == "<html>Bad Gateway</html>"
    assert server.connections == 1


@pytest.mark.parametrize("format", FORMATS)
async def test_stream_error_event(format: str) -> None:
    item = stream_error(text("partial answer"), "Overloaded", error_type="overloaded_error")
    with trio.fail_after(10):
        async with WireServer([item, item], format=format) as server, client_for(server) as client:
            streamed = await client.post(PATHS[format], json=body_for(format, stream=True))
            plain = await client.post(PATHS[format], json=body_for(format))
    assert streamed.status_code == 200
    events = sse_events(streamed.content)
    assert events[-1].event == "error"
    last = json.loads(events[-1].data)
    assert "Overloaded" in json.dumps(last)
    assert reassemble(format, streamed.content)["text"] == "partial answer"
    finished = {"message_stop", "response.completed", "response.incomplete"}
    assert not any(event.event in finished or event.is_done for event in events)
    assert plain.status_code == 500


# -- latency, exhaustion, misuse -----------------------------------------------------------------


async def test_latency_and_chunk_delay_still_work() -> None:
    script = [text("hello there"), delay_reply()]
    with trio.fail_after(10):
        async with (
            WireServer(script, format="chat", latency=0.02, chunk_delay=0.005) as server,
            client_for(server) as client,
        ):
            streamed = await client.post(PATHS["chat"], json=body_for("chat", stream=True))
            delayed = await client.post(PATHS["chat"], json=body_for("chat"))
    assert reassemble("chat", streamed.content)["text"] == "hello there"
    assert delayed.json()["choices"][0]["message"]["content"] == "later"


def delay_reply() -> alloy.testing.Reply:
    from alloy.testing import delay

    item = delay(0.02, text("later"))
    assert isinstance(item, alloy.testing.Reply)
    return item


@pytest.mark.parametrize("format", FORMATS)
async def test_script_exhausted(format: str) -> None:
    with trio.fail_after(10):
        async with WireServer(["only one"], format=format) as server, client_for(server) as client:
            await client.post(PATHS[format], json=body_for(format))
            response = await client.post(PATHS[format], json=body_for(format))
    assert response.status_code == 500
    assert "WireServer script exhausted" in response.text
    assert "request 2" in response.text
    assert server.remaining == 0


async def test_wrong_path_method_or_body_do_not_use_the_script() -> None:
    with trio.fail_after(10):
        async with WireServer(["kept"], format="openai") as server, client_for(server) as client:
            wrong_path = await client.post("/v1/chat/completions", json=body_for("openai"))
            wrong_method = await client.get("/v1/responses")
            not_json = await client.post("/v1/responses", content=b"{nope")
            assert server.remaining == 1
            good = await client.post("/proxy/v1/responses", json=body_for("openai"))
    assert wrong_path.status_code == 404 and "/responses" in wrong_path.json()["error"]["message"]
    assert wrong_method.status_code == 405
    assert not_json.status_code == 400 and server.requests[2].body is None
    assert server.requests[2].raw == b"{nope"
    assert good.status_code == 200 and server.remaining == 0


async def test_extend_and_url_outside_the_block() -> None:
    server = WireServer([], format="chat")
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
    server.extend(["added later"])
    assert server.remaining == 1
    with trio.fail_after(10):
        async with server:
            assert server.url.startswith("http://127.0.0.1:") and server.port > 0
            async with client_for(server) as client:
                response = await client.post(PATHS["chat"], json=body_for("chat"))
    assert response.json()["choices"][0]["message"]["content"] == "added later"


# -- shutdown ------------------------------------------------------------------------------------


async def test_clean_shutdown_leaves_no_tasks() -> None:
    before = count_tasks()
    with trio.fail_after(10):
        async with WireServer([stall("never finished", 20), "ok"], format="anthropic") as server:
            assert count_tasks() > before
            async with client_for(server, read_timeout=0.2) as client:
                with pytest.raises(httpx2.ReadTimeout):
                    await client.post(PATHS["anthropic"], json=body_for("anthropic", stream=True))
                await client.post(PATHS["anthropic"], json=body_for("anthropic"))
    assert count_tasks() == before
    assert server.errors == []


async def test_client_disconnecting_mid_response_does_not_disturb_the_server() -> None:
    long = text("word " * 200)
    payload = json.dumps(body_for("chat", stream=True)).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
    ).encode()
    with trio.fail_after(10):
        async with WireServer([long, "still here"], format="chat", chunk_delay=0.01) as server:
            socket = await trio.open_tcp_stream("127.0.0.1", server.port)
            await socket.send_all(head + payload)
            assert (await socket.receive_some(65536)).startswith(b"HTTP/1.1 200 ")
            await socket.aclose()  # hang up in the middle of the stream
            await trio.sleep(0.1)
            async with client_for(server) as client:
                after = await client.post(PATHS["chat"], json=body_for("chat"))
    assert after.json()["choices"][0]["message"]["content"] == "still here"
    assert server.connections == 2
    assert server.errors == []


async def test_cancellation_stops_the_server() -> None:
    before = count_tasks()
    with trio.fail_after(10):
        with trio.move_on_after(0.2) as scope:
            async with (
                WireServer([stall("x", 10)], format="openai") as server,
                client_for(server) as client,
            ):
                await client.post(PATHS["openai"], json=body_for("openai", stream=True))
    assert scope.cancelled_caught
    assert count_tasks() == before
    assert server.errors == []


async def test_an_error_in_the_block_propagates_bare() -> None:
    with trio.fail_after(10), pytest.raises(KeyError, match="boom"):
        async with WireServer(["x"], format="anthropic"):
            await trio.lowlevel.checkpoint()
            raise KeyError("boom")
