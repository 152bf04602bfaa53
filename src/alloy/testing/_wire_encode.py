"""Sans-IO response encoders: a scripted ``Reply`` as the exact bytes a provider would send.

Three wire formats, each as a JSON body or a Server-Sent Events stream shaped like the real
recordings in ``shared/wire/recorded/``:

- ``"anthropic"``: the Messages API (``POST /v1/messages``), see :func:`encode_anthropic`;
- ``"openai"``: the OpenAI Responses API (``POST /v1/responses``), see :func:`encode_responses`;
- ``"chat"``: OpenAI-compatible chat completions (``POST /v1/chat/completions``), see
  :func:`encode_chat`.

No I/O and no trio: ``alloy.testing.WireServer`` sends these bytes over loopback HTTP, and
property tests can feed them straight to a decoder::

    >>> body = encode_chat(text("hi"), model="m", stream=True, chunk_size=1)
    >>> body.endswith(b"data: [DONE]\\n\\n")
    True

Usage mapping (alloy ``Usage`` to the wire): ``Usage.input_tokens`` counts every input token,
cached ones included. Anthropic's wire ``input_tokens`` excludes cache reads and writes, so it is
``input_tokens - cache_read_tokens - cache_write_tokens`` there (never below 0), with the cache
counts in ``cache_read_input_tokens`` and ``cache_creation_input_tokens``. OpenAI's wire input
(``input_tokens`` / ``prompt_tokens``) includes them; cache reads go to ``cached_tokens``, cache
writes to ``cache_write_tokens`` (only sent when non-zero) and ``reasoning_tokens`` to the output
details. Anthropic has no reasoning token count on the wire.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, TypeAlias

import attrs

from .._messages import (
    Block,
    RedactedThinking,
    ServerToolCall,
    ServerToolResult,
    Text,
    Thinking,
    ToolCall,
    UnknownBlock,
    Usage,
)
from .._provider import StopReason
from ._scripted import Reply

__all__ = [
    "DEFAULT_MODELS",
    "PATH_SUFFIXES",
    "EncodedStream",
    "WireFormat",
    "check_blocks",
    "default_error_type",
    "encode",
    "encode_anthropic",
    "encode_chat",
    "encode_error",
    "encode_responses",
    "encode_stream",
    "encode_stream_error",
]

WireFormat: TypeAlias = Literal["anthropic", "openai", "chat"]

#: The model name a reply carries when neither the server nor the request names one.
DEFAULT_MODELS: Mapping[str, str] = {
    "anthropic": "claude-wire-1",
    "openai": "gpt-wire-1",
    "chat": "chat-wire-1",
}
#: The path each format's endpoint ends with (``/v1/messages``, ``/v1/responses``...).
PATH_SUFFIXES: Mapping[str, str] = {
    "anthropic": "/messages",
    "openai": "/responses",
    "chat": "/chat/completions",
}

_CREATED = 1_750_000_000

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_OPENAI_ERROR_TYPES = {
    401: "invalid_request_error",
    403: "permission_error",
    408: "timeout_error",
    429: "requests",
    503: "server_error",
}
_OPENAI_ERROR_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}

_CHAT_FINISH = {
    StopReason.END_TURN: "stop",
    StopReason.TOOL_USE: "tool_calls",
    StopReason.MAX_TOKENS: "length",
    StopReason.STOP_SEQUENCE: "stop",
    StopReason.REFUSAL: "content_filter",
    StopReason.PAUSE_TURN: "stop",
}
_RESPONSES_INCOMPLETE = {
    StopReason.MAX_TOKENS: "max_output_tokens",
    StopReason.REFUSAL: "content_filter",
}


@attrs.frozen
class EncodedStream:
    """A streamed reply as its SSE events, each one the bytes of one ``event:``/``data:`` record.

    ``events[:closing]`` is the content, ``events[closing:]`` the events that end the stream
    successfully (Anthropic ``message_delta`` + ``message_stop``, Responses
    ``response.completed``, chat's finish, usage and ``[DONE]`` chunks): a stream that fails in
    the middle sends the content, then an error event instead of those.

    >>> stream = encode_stream("chat", text("hi"), model="m")
    >>> b"".join(stream.events) == encode_chat(text("hi"), model="m", stream=True)
    True
    """

    events: tuple[bytes, ...]
    closing: int

    @property
    def body(self) -> bytes:
        """All events joined: the whole response body."""
        return b"".join(self.events)

    @property
    def content(self) -> tuple[bytes, ...]:
        """The events before the ones that close the stream."""
        return self.events[: self.closing]


# -- shared helpers ------------------------------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else _json(data)
    return f"{head}data: {payload}\n\n".encode()


def _pieces(content: str, size: int) -> list[str]:
    return [content[i : i + size] for i in range(0, len(content), size)]


def _check_chunk_size(chunk_size: int) -> None:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")


def _call_ids(blocks: Sequence[Block]) -> Iterator[tuple[Block, str]]:
    """Each block with the id its tool call has on the wire (unnamed calls: call_1, ...)."""
    number = 0
    for block in blocks:
        if isinstance(block, ToolCall):
            number += 1
            yield block, block.id or f"call_{number}"
        else:
            yield block, ""


def _unsupported(format: str, block: Block) -> ValueError:
    return ValueError(
        f"the {format} wire format cannot carry a {type(block).__name__} block in a reply"
    )


_CARRIES: Mapping[str, tuple[type, ...]] = {
    "anthropic": (
        Text,
        Thinking,
        RedactedThinking,
        ToolCall,
        ServerToolCall,
        ServerToolResult,
        UnknownBlock,
    ),
    "openai": (Text, Thinking, RedactedThinking, ToolCall, UnknownBlock),
    "chat": (Text, Thinking, ToolCall),
}


def check_blocks(format: WireFormat, blocks: Sequence[Block]) -> None:
    """Raise ``ValueError`` when ``format`` cannot carry one of ``blocks`` in a reply.

    Anthropic carries every assistant block; the Responses API all but server tool blocks; chat
    completions only text, thinking (without its signature) and tool calls.

    >>> check_blocks("chat", [RedactedThinking("opaque")])
    Traceback (most recent call last):
    ValueError: the chat wire format cannot carry a RedactedThinking block in a reply
    """
    carried = _CARRIES.get(format)
    if carried is None:
        raise ValueError(f"unknown wire format {format!r}; use 'anthropic', 'openai' or 'chat'")
    for block in blocks:
        if not isinstance(block, carried):
            raise _unsupported(format, block)


def _arguments(arguments: Mapping[str, Any], *, compact: bool) -> str:
    if compact:
        return _json(dict(arguments))
    return json.dumps(dict(arguments), ensure_ascii=False)


# -- Anthropic Messages --------------------------------------------------------------------------


def _anthropic_usage(usage: Usage) -> dict[str, Any]:
    cached = usage.cache_read_tokens + usage.cache_write_tokens
    return {
        "input_tokens": max(usage.input_tokens - cached, 0),
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "output_tokens": usage.output_tokens,
    }


def _anthropic_block(block: Block, call_id: str) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"type": "text", "text": block.text}
    if isinstance(block, Thinking):
        return {"type": "thinking", "thinking": block.text, "signature": block.signature or ""}
    if isinstance(block, RedactedThinking):
        return {"type": "redacted_thinking", "data": block.data}
    if isinstance(block, ToolCall):
        return {
            "type": "tool_use",
            "id": call_id,
            "name": block.name,
            "input": dict(block.arguments),
        }
    if isinstance(block, ServerToolCall):
        return {
            "type": "server_tool_use",
            "id": block.id,
            "name": block.name,
            "input": dict(block.arguments),
        }
    if isinstance(block, ServerToolResult):
        return {"type": block.kind, "tool_use_id": block.call_id, "content": block.content}
    if isinstance(block, UnknownBlock):
        return dict(block.data)
    raise _unsupported("anthropic", block)


def encode_anthropic(
    reply: Reply,
    *,
    model: str = DEFAULT_MODELS["anthropic"],
    stream: bool = False,
    chunk_size: int = 16,
    response_id: str = "msg_wire_1",
) -> bytes:
    """The Messages API response for ``reply``: a ``message`` JSON object, or its SSE stream.

    The stream is ``message_start`` (usage with ``output_tokens`` 1, like the real API),
    ``content_block_start``, a ``ping``, ``content_block_delta`` events (``text_delta`` pieces
    of ``chunk_size`` characters; ``input_json_delta`` fragments, the first one empty;
    ``thinking_delta`` then one ``signature_delta``), ``content_block_stop``, ``message_delta``
    (stop reason and cumulative usage) and ``message_stop``, each with its ``event:`` line.
    Tool calls without an id are numbered ``call_1``, ``call_2``... within the reply.

    >>> json.loads(encode_anthropic(text("hi"), model="claude-x"))["content"]
    [{'type': 'text', 'text': 'hi'}]
    >>> encode_anthropic(text("hi"), stream=True).startswith(b"event: message_start\\n")
    True
    """
    _check_chunk_size(chunk_size)
    if stream:
        return encode_stream(
            "anthropic", reply, model=model, chunk_size=chunk_size, response_id=response_id
        ).body
    message = _anthropic_message(reply, model, response_id)
    return _json(message).encode()


def _anthropic_message(reply: Reply, model: str, response_id: str) -> dict[str, Any]:
    usage = _anthropic_usage(reply.usage)
    usage["cache_creation"] = {
        "ephemeral_5m_input_tokens": reply.usage.cache_write_tokens,
        "ephemeral_1h_input_tokens": 0,
    }
    usage["service_tier"] = "standard"
    return {
        "id": response_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [_anthropic_block(block, call_id) for block, call_id in _call_ids(reply.blocks)],
        "stop_reason": str(reply.stop_reason),
        "stop_sequence": None,
        "usage": usage,
    }


def _anthropic_stream(reply: Reply, model: str, chunk_size: int, response_id: str) -> EncodedStream:
    start = _anthropic_message(reply, model, response_id)
    start["content"] = []
    start["stop_reason"] = None
    start["usage"]["output_tokens"] = min(1, reply.usage.output_tokens)
    events = [_sse({"type": "message_start", "message": start}, "message_start")]
    ping = _sse({"type": "ping"}, "ping")

    def delta(index: int, payload: dict[str, Any]) -> bytes:
        return _sse(
            {"type": "content_block_delta", "index": index, "delta": payload},
            "content_block_delta",
        )

    for index, (block, call_id) in enumerate(_call_ids(reply.blocks)):
        full = _anthropic_block(block, call_id)
        deltas: list[bytes] = []
        if isinstance(block, Text):
            first: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [
                delta(index, {"type": "text_delta", "text": piece})
                for piece in _pieces(block.text, chunk_size)
            ]
        elif isinstance(block, Thinking):
            first = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [
                delta(index, {"type": "thinking_delta", "thinking": piece})
                for piece in _pieces(block.text, chunk_size)
            ]
            if block.signature:
                deltas.append(
                    delta(index, {"type": "signature_delta", "signature": block.signature})
                )
        elif isinstance(block, ToolCall | ServerToolCall):
            first = {**full, "input": {}}
            encoded = _arguments(block.arguments, compact=False)
            deltas = [
                delta(index, {"type": "input_json_delta", "partial_json": piece})
                for piece in ["", *_pieces(encoded, chunk_size)]
            ]
        else:
            first = full  # redacted thinking, server tool results, unknown blocks: whole
        events.append(
            _sse(
                {"type": "content_block_start", "index": index, "content_block": first},
                "content_block_start",
            )
        )
        if index == 0:
            events.append(ping)
        events.extend(deltas)
        events.append(_sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
    if not reply.blocks:
        events.append(ping)
    closing = len(events)
    events.append(
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": str(reply.stop_reason), "stop_sequence": None},
                "usage": _anthropic_usage(reply.usage),
            },
            "message_delta",
        )
    )
    events.append(_sse({"type": "message_stop"}, "message_stop"))
    return EncodedStream(tuple(events), closing)


# -- OpenAI Responses ----------------------------------------------------------------------------


def _responses_usage(usage: Usage) -> dict[str, Any]:
    input_details: dict[str, Any] = {"cached_tokens": usage.cache_read_tokens}
    if usage.cache_write_tokens:
        input_details["cache_write_tokens"] = usage.cache_write_tokens
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": input_details,
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def _responses_items(reply: Reply, response_id: str, status: str) -> list[dict[str, Any]]:
    base = response_id.removeprefix("resp_")
    items: list[dict[str, Any]] = []
    for index, (block, call_id) in enumerate(_call_ids(reply.blocks)):
        if isinstance(block, Text):
            items.append(
                {
                    "id": f"msg_{base}_{index}",
                    "type": "message",
                    "status": status,
                    "content": [
                        {
                            "type": "output_text",
                            "annotations": [],
                            "logprobs": [],
                            "text": block.text,
                        }
                    ],
                    "role": "assistant",
                }
            )
        elif isinstance(block, Thinking):
            items.append(
                {
                    "id": block.id or f"rs_{base}_{index}",
                    "type": "reasoning",
                    "encrypted_content": block.signature,
                    "summary": (
                        [{"type": "summary_text", "text": block.text}] if block.text else []
                    ),
                }
            )
        elif isinstance(block, RedactedThinking):
            items.append(
                {
                    "id": f"rs_{base}_{index}",
                    "type": "reasoning",
                    "encrypted_content": block.data,
                    "summary": [],
                }
            )
        elif isinstance(block, ToolCall):
            items.append(
                {
                    "id": f"fc_{base}_{index}",
                    "type": "function_call",
                    "status": "completed",
                    "arguments": _arguments(block.arguments, compact=True),
                    "call_id": call_id,
                    "name": block.name,
                }
            )
        elif isinstance(block, UnknownBlock):
            items.append(dict(block.data))
        else:
            raise _unsupported("openai", block)
    return items


def _responses_object(
    reply: Reply, model: str, response_id: str, created: int, *, final: bool
) -> dict[str, Any]:
    reason = _RESPONSES_INCOMPLETE.get(reply.stop_reason)
    status = ("incomplete" if reason else "completed") if final else "in_progress"
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": {"reason": reason} if final and reason else None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": _responses_items(reply, response_id, "incomplete" if reason else "completed")
        if final
        else [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": _responses_usage(reply.usage) if final else None,
        "user": None,
        "metadata": {},
    }


def encode_responses(
    reply: Reply,
    *,
    model: str = DEFAULT_MODELS["openai"],
    stream: bool = False,
    chunk_size: int = 16,
    response_id: str = "resp_wire_1",
    created: int = _CREATED,
    final_output: bool = True,
) -> bytes:
    """The OpenAI Responses API response for ``reply``: a ``response`` object, or its stream.

    Output items: ``message`` (one per ``Text`` block, an ``output_text`` part),
    ``function_call`` (``call_id`` is the tool call's id), ``reasoning`` (a ``Thinking`` block:
    its text as one ``summary_text``, its signature as ``encrypted_content``; a
    ``RedactedThinking`` as an item with only ``encrypted_content``). ``max_tokens`` and
    ``refusal`` make the response ``incomplete`` (reason ``max_output_tokens`` /
    ``content_filter``); every other stop reason is ``completed``.

    The stream: ``response.created``, ``response.in_progress``, per item
    ``response.output_item.added``, its deltas (``response.output_text.delta``,
    ``response.function_call_arguments.delta``/``.done``,
    ``response.reasoning_summary_text.delta``... with their ``part``/``done`` events) and
    ``response.output_item.done``, then ``response.completed`` (or ``response.incomplete``)
    with the whole response and its usage (``final_output=False`` sends that response with
    ``"output": []``, as some hosts do). Every event has ``event:`` and ``sequence_number``.
    Item ids are numbered by position: ``msg_<id>_<i>``, ``fc_<id>_<i>`` and, for reasoning
    without an id of its own, ``rs_<id>_<i>`` (``<id>`` is ``response_id`` without ``resp_``).

    >>> json.loads(encode_responses(text("hi")))["output"][0]["content"][0]["text"]
    'hi'
    """
    _check_chunk_size(chunk_size)
    if stream:
        return _responses_stream(reply, model, chunk_size, response_id, created, final_output).body
    return _json(_responses_object(reply, model, response_id, created, final=True)).encode()


def _responses_stream(
    reply: Reply,
    model: str,
    chunk_size: int,
    response_id: str,
    created: int,
    final_output: bool,
) -> EncodedStream:
    _check_chunk_size(chunk_size)
    events: list[bytes] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append(_sse({"type": kind, **fields, "sequence_number": len(events)}, kind))

    started = _responses_object(reply, model, response_id, created, final=False)
    emit("response.created", response=started)
    emit("response.in_progress", response=started)
    final = _responses_object(reply, model, response_id, created, final=True)
    for index, (block, item) in enumerate(zip(reply.blocks, final["output"], strict=True)):
        item_id = item.get("id")
        if isinstance(block, Text):
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            where = {"item_id": item_id, "output_index": index, "content_index": 0}
            emit("response.content_part.added", **where, part=part)
            for piece in _pieces(block.text, chunk_size):
                emit("response.output_text.delta", **where, delta=piece, logprobs=[])
            emit("response.output_text.done", **where, text=block.text, logprobs=[])
            emit("response.content_part.done", **where, part={**part, "text": block.text})
        elif isinstance(block, Thinking):
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "summary": []},
            )
            if block.text:
                where = {"item_id": item_id, "output_index": index, "summary_index": 0}
                part = {"type": "summary_text", "text": ""}
                emit("response.reasoning_summary_part.added", **where, part=part)
                for piece in _pieces(block.text, chunk_size):
                    emit("response.reasoning_summary_text.delta", **where, delta=piece)
                emit("response.reasoning_summary_text.done", **where, text=block.text)
                emit(
                    "response.reasoning_summary_part.done",
                    **where,
                    part={**part, "text": block.text},
                )
        elif isinstance(block, ToolCall):
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            where = {"item_id": item_id, "output_index": index}
            for piece in _pieces(item["arguments"], chunk_size):
                emit("response.function_call_arguments.delta", **where, delta=piece)
            emit("response.function_call_arguments.done", **where, arguments=item["arguments"])
        else:
            emit("response.output_item.added", output_index=index, item=item)
        emit("response.output_item.done", output_index=index, item=item)
    closing = len(events)
    kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
    emit(kind, response=final if final_output else {**final, "output": []})
    return EncodedStream(tuple(events), closing)


# -- OpenAI-compatible chat completions ----------------------------------------------------------


def _chat_usage(usage: Usage) -> dict[str, Any]:
    prompt_details: dict[str, Any] = {"cached_tokens": usage.cache_read_tokens, "audio_tokens": 0}
    if usage.cache_write_tokens:
        prompt_details["cache_write_tokens"] = usage.cache_write_tokens
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {
            "reasoning_tokens": usage.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def encode_chat(
    reply: Reply,
    *,
    model: str = DEFAULT_MODELS["chat"],
    stream: bool = False,
    chunk_size: int = 16,
    response_id: str = "chatcmpl-wire-1",
    created: int = _CREATED,
    include_usage: bool = True,
    done: bool = True,
) -> bytes:
    """The chat completions response for ``reply``: a ``chat.completion``, or its chunk stream.

    The message has ``content`` (the ``Text`` blocks joined; ``null`` when there are none),
    ``reasoning_content`` (the ``Thinking`` text, as DeepSeek sends it; signatures cannot be
    carried) and ``tool_calls``. ``finish_reason``: ``stop``, ``tool_calls``, ``length`` or
    ``content_filter``.

    The stream: a first chunk with ``delta.role``, then chunks with ``delta.reasoning_content``,
    ``delta.content`` and ``delta.tool_calls`` (by ``index``; ``id``, ``type`` and the name only in
    the first fragment of a call), a chunk with ``finish_reason``, a usage chunk with
    ``choices: []`` (when ``include_usage``, as ``stream_options.include_usage`` asks), then
    ``data: [DONE]`` (unless ``done`` is false: some hosts end the stream without it). No
    ``event:`` lines.

    >>> json.loads(encode_chat(text("hi")))["choices"][0]["message"]["content"]
    'hi'
    """
    _check_chunk_size(chunk_size)
    if stream:
        return _chat_stream(
            reply, model, chunk_size, response_id, created, include_usage, done
        ).body
    check_blocks("chat", reply.blocks)
    texts = [block.text for block in reply.blocks if isinstance(block, Text)]
    thoughts = [block.text for block in reply.blocks if isinstance(block, Thinking)]
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": None,
        "annotations": [],
    }
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    calls = [
        {
            "id": call_id,
            "type": "function",
            "function": {
                "name": block.name,
                "arguments": _arguments(block.arguments, compact=True),
            },
        }
        for block, call_id in _call_ids(reply.blocks)
        if isinstance(block, ToolCall)
    ]
    if calls:
        message["tool_calls"] = calls
    completion = {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _CHAT_FINISH[reply.stop_reason],
            }
        ],
        "usage": _chat_usage(reply.usage),
        "service_tier": "default",
        "system_fingerprint": None,
    }
    return _json(completion).encode()


def _chat_stream(
    reply: Reply,
    model: str,
    chunk_size: int,
    response_id: str,
    created: int,
    include_usage: bool,
    done: bool,
) -> EncodedStream:
    _check_chunk_size(chunk_size)
    check_blocks("chat", reply.blocks)
    events: list[bytes] = []

    def chunk(delta: dict[str, Any] | None, finish: str | None = None) -> None:
        body: dict[str, Any] = {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": None,
            "choices": (
                []
                if delta is None
                else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            ),
        }
        if include_usage:
            body["usage"] = _chat_usage(reply.usage) if delta is None else None
        events.append(_sse(body))

    chunk({"role": "assistant", "content": "", "refusal": None})
    call_index = 0
    for block, call_id in _call_ids(reply.blocks):
        if isinstance(block, Text):
            for piece in _pieces(block.text, chunk_size):
                chunk({"content": piece})
        elif isinstance(block, Thinking):
            for piece in _pieces(block.text, chunk_size):
                chunk({"reasoning_content": piece})
        elif isinstance(block, ToolCall):
            arguments = _arguments(block.arguments, compact=True)
            pieces = _pieces(arguments, chunk_size)
            first = {
                "index": call_index,
                "id": call_id,
                "type": "function",
                "function": {"name": block.name, "arguments": ""},
            }
            chunk({"tool_calls": [first]})
            for piece in pieces:
                chunk({"tool_calls": [{"index": call_index, "function": {"arguments": piece}}]})
            call_index += 1
    closing = len(events)
    chunk({}, _CHAT_FINISH[reply.stop_reason])
    if include_usage:
        chunk(None)
    if done:
        events.append(_sse("[DONE]"))
    return EncodedStream(tuple(events), closing)


# -- all formats ---------------------------------------------------------------------------------


def encode(
    format: WireFormat,
    reply: Reply,
    *,
    model: str | None = None,
    stream: bool = False,
    chunk_size: int = 16,
    response_id: str | None = None,
    created: int = _CREATED,
    include_usage: bool = True,
    done: bool = True,
    final_output: bool = True,
) -> bytes:
    """The response body for ``reply`` in ``format`` (``"anthropic"``, ``"openai"``, ``"chat"``).

    >>> encode("openai", text("hi"), stream=True).startswith(b"event: response.created\\n")
    True
    """
    if stream:
        return encode_stream(
            format,
            reply,
            model=model,
            chunk_size=chunk_size,
            response_id=response_id,
            created=created,
            include_usage=include_usage,
            done=done,
            final_output=final_output,
        ).body
    model = model or DEFAULT_MODELS[format]
    if format == "anthropic":
        return encode_anthropic(
            reply, model=model, chunk_size=chunk_size, response_id=response_id or "msg_wire_1"
        )
    if format == "openai":
        return encode_responses(
            reply,
            model=model,
            chunk_size=chunk_size,
            response_id=response_id or "resp_wire_1",
            created=created,
        )
    if format == "chat":
        return encode_chat(
            reply,
            model=model,
            chunk_size=chunk_size,
            response_id=response_id or "chatcmpl-wire-1",
            created=created,
        )
    raise ValueError(f"unknown wire format {format!r}; use 'anthropic', 'openai' or 'chat'")


def encode_stream(
    format: WireFormat,
    reply: Reply,
    *,
    model: str | None = None,
    chunk_size: int = 16,
    response_id: str | None = None,
    created: int = _CREATED,
    include_usage: bool = True,
    done: bool = True,
    final_output: bool = True,
) -> EncodedStream:
    """The streamed response for ``reply`` in ``format``, one SSE event at a time.

    ``include_usage`` and ``done`` apply to ``"chat"`` (see :func:`encode_chat`),
    ``final_output`` to ``"openai"`` (see :func:`encode_responses`).

    >>> stream = encode_stream("anthropic", text("hello"), chunk_size=2)
    >>> [e.split(b"\\n")[0] for e in stream.events][:3]
    [b'event: message_start', b'event: content_block_start', b'event: ping']
    """
    _check_chunk_size(chunk_size)
    model = model or DEFAULT_MODELS.get(format, "wire-1")
    if format == "anthropic":
        return _anthropic_stream(reply, model, chunk_size, response_id or "msg_wire_1")
    if format == "openai":
        return _responses_stream(
            reply, model, chunk_size, response_id or "resp_wire_1", created, final_output
        )
    if format == "chat":
        return _chat_stream(
            reply,
            model,
            chunk_size,
            response_id or "chatcmpl-wire-1",
            created,
            include_usage,
            done,
        )
    raise ValueError(f"unknown wire format {format!r}; use 'anthropic', 'openai' or 'chat'")


def default_error_type(format: WireFormat, status: int) -> str:
    """The error ``type`` a provider sends with ``status`` in ``format``.

    >>> default_error_type("anthropic", 529), default_error_type("openai", 500)
    ('overloaded_error', 'server_error')
    """
    if format == "anthropic":
        known = _ANTHROPIC_ERROR_TYPES.get(status)
        return known or ("api_error" if status >= 500 else "invalid_request_error")
    known = _OPENAI_ERROR_TYPES.get(status)
    return known or ("server_error" if status >= 500 else "invalid_request_error")


def _error_body(
    format: WireFormat,
    message: str,
    error_type: str,
    code: str | None,
    request_id: str | None,
) -> dict[str, Any]:
    if format == "anthropic":
        body: dict[str, Any] = {"type": "error", "error": {"type": error_type, "message": message}}
        if request_id:
            body["request_id"] = request_id
        return body
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def encode_error(
    format: WireFormat,
    status: int,
    message: str,
    error_type: str | None = None,
    *,
    code: str | None = None,
    request_id: str | None = None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """An HTTP error reply in ``format``'s shape: ``(status, headers, body)``.

    Anthropic: ``{"type": "error", "error": {"type", "message"}, "request_id"}``; OpenAI
    (Responses and chat): ``{"error": {"message", "type", "param", "code"}}``. ``error_type``
    defaults to what the provider sends for ``status`` (``rate_limit_error``,
    ``overloaded_error``...); the OpenAI ``code`` defaults to ``invalid_api_key`` for 401 and
    ``rate_limit_exceeded`` for 429.

    >>> status, headers, body = encode_error("anthropic", 529, "Overloaded")
    >>> json.loads(body)
    {'type': 'error', 'error': {'type': 'overloaded_error', 'message': 'Overloaded'}}
    """
    if format not in PATH_SUFFIXES:
        raise ValueError(f"unknown wire format {format!r}; use 'anthropic', 'openai' or 'chat'")
    kind = error_type or default_error_type(format, status)
    if code is None and format != "anthropic" and error_type is None:
        code = _OPENAI_ERROR_CODES.get(status)
    body = _json(_error_body(format, message, kind, code, request_id)).encode()
    return status, [("content-type", "application/json")], body


def encode_stream_error(
    format: WireFormat,
    message: str,
    error_type: str = "api_error",
    *,
    code: str | None = None,
    sequence_number: int = 0,
) -> bytes:
    """The in-stream error event a provider sends when a stream fails after HTTP 200.

    Anthropic ``event: error`` with the error body; Responses ``event: error`` with ``code``,
    ``message`` and ``sequence_number``; chat a ``data:`` chunk holding ``{"error": {...}}``
    (as OpenAI-compatible hosts send it; Groq also names it ``event: error``).

    >>> encode_stream_error("anthropic", "Overloaded", "overloaded_error")
    b'event: error\\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\\n\\n'
    """
    if format == "anthropic":
        return _sse(_error_body(format, message, error_type, code, None), "error")
    if format == "openai":
        return _sse(
            {
                "type": "error",
                "code": code or error_type,
                "message": message,
                "param": None,
                "sequence_number": sequence_number,
            },
            "error",
        )
    if format == "chat":
        return _sse(_error_body(format, message, error_type, code, None), "error")
    raise ValueError(f"unknown wire format {format!r}; use 'anthropic', 'openai' or 'chat'")
