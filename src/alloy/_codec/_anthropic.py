"""Sans-IO codec for the Anthropic Messages API (``POST /v1/messages``).

Three pure pieces: :func:`encode_request` turns a :class:`~alloy.Request` into an
:class:`~alloy._codec._wire.HttpRequest`; :func:`decode_response` turns a non-streamed 200 body into
a :class:`~alloy.Completion`; :class:`StreamDecoder` is fed the SSE events of a streamed reply,
returns the deltas as they come and ends with the same ``Completion``. :func:`decode_error`
turns an HTTP error reply into the typed :class:`~alloy.ProviderError`. No trio, no HTTP client.

Blocks, both ways (``wire`` is the Anthropic content block)::

    Text(text)                      <-> {"type": "text", "text"}            (citations dropped)
    Image(media_type, data)         <-> {"type": "image", "source": {"type": "base64", ...}}
    ToolCall(id, name, arguments)   <-> {"type": "tool_use", "id", "name", "input"}
    ToolResult(call_id, content)    <-> {"type": "tool_result", "tool_use_id", "content",
                                         "is_error": true only when set}
    Thinking(text, signature)       <-> {"type": "thinking", "thinking", "signature"}
    RedactedThinking(data)          <-> {"type": "redacted_thinking", "data"}
    ServerToolCall(id, name, args)  <-> {"type": "server_tool_use", "id", "name", "input"}
    ServerToolResult(id, kind, c)   <-> {"type": kind, "tool_use_id", "content"}   (any *_tool_result)
    UnknownBlock(data)              <-> data, verbatim (mcp_tool_use, compaction, document...)

Decisions, each tested in ``tests/test_codec_anthropic.py``:

- **Provenance.** Decoded ``Thinking``, ``RedactedThinking`` and ``UnknownBlock`` carry
  ``provider="anthropic"``. When encoding, a ``Thinking`` is sent only if its provider is
  ``"anthropic"`` and it has a signature; a ``RedactedThinking`` or ``UnknownBlock`` only if its
  provider is ``"anthropic"``. Anything else (another API's reasoning, ``provider=None``) is
  dropped: the API verifies signatures and would reject a foreign one, and plain reasoning text
  sent back as a ``text`` block would read as something the assistant said.
- **Server tool blocks are kept exact.** A ``server_tool_use`` or ``*_tool_result`` block that
  carries more than its standard fields (a ``caller`` other than ``{"type": "direct"}``, the
  programmatic-tool-calling link) is kept as an ``UnknownBlock`` so that it is re-sent byte for
  byte. ``mcp_tool_use``/``mcp_tool_result`` are always ``UnknownBlock``. A ``tool_use`` is always a
  ``ToolCall`` (the run must answer it); its ``caller`` field is not kept.
- **Alternation.** The API wants user and assistant turns to alternate, so consecutive alloy
  messages of one role become one wire message; in a user wire message the ``tool_result``
  blocks are moved (stably) before the other blocks, as the API requires. Empty and
  whitespace-only ``Text`` blocks are dropped (the API rejects them), and so is a message left
  with no blocks.
- **Prompt caching** (``cache=True``): ``cache_control: {"type": "ephemeral"}`` on the system
  prompt (sent as one text block), on the last tool, and on the last cacheable block (text,
  image, tool_use, tool_result, server_tool_use, document) of the last message: three of the
  API's four breakpoints.
- **Stop reasons**: ``end_turn``, ``tool_use``, ``max_tokens``, ``stop_sequence``, ``refusal`` and
  ``pause_turn`` map to the ``StopReason`` of the same name; ``model_context_window_exceeded`` is
  ``max_tokens`` (the reply was cut off) and ``compaction`` is ``pause_turn`` (the server paused
  after compacting; sending the conversation back continues it). Any other value, or none, is
  ``tool_use`` when the message has client tool calls and ``end_turn`` otherwise: never a crash.
- **Usage.** Anthropic's ``input_tokens`` excludes the cached prompt, so
  ``Usage.input_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens``;
  ``cache_read_tokens = cache_read_input_tokens``; ``cache_write_tokens =
  cache_creation_input_tokens``; ``output_tokens`` as is; ``reasoning_tokens =
  output_tokens_details.thinking_tokens`` when reported. In a stream, ``message_delta.usage`` is
  cumulative and may restate input and cache counts that differ from ``message_start``: every
  field takes its last reported value, nothing is added up.
- **Tool-call JSON in a stream** is collected as fragments and parsed once, when the stream
  ends. An empty string means the ``input`` of ``content_block_start`` (``{}``). Invalid JSON (or
  JSON that is not an object) raises ``ProtocolError`` naming the tool, except when the reply
  was cut off (``max_tokens``, ``model_context_window_exceeded``, or a ``refusal`` that stopped
  it mid-call): then the call is kept with ``arguments={"_raw": "<the partial JSON>"}``; the run
  answers a truncated turn's calls with an error result and never runs them.
- **Errors**: an ``event: error`` in a stream, or an error object in a 200 body, raises the
  typed error (``overloaded_error`` -> ``OverloadedError``...) through ``error_from_status``; a
  stream that ends before ``message_stop`` raises ``ProtocolError`` from ``finish()``.

>>> settings = AnthropicSettings(model="claude-sonnet-4-6", api_key="sk-ant-...")
>>> http = encode_request(Request(messages=(Message.user("hi"),)), settings, stream=False)
>>> http.path, http.body["messages"]
('/v1/messages', [{'role': 'user', 'content': [{'type': 'text', 'text': 'hi'}]}])
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs

from .._errors import ConfigError, ProtocolError, ProviderError
from .._events import Delta, TextDelta, ThinkingDelta, ToolCallDelta, ToolCallStarted
from .._messages import (
    Block,
    Image,
    Message,
    RedactedThinking,
    ServerToolCall,
    ServerToolResult,
    Text,
    Thinking,
    ToolCall,
    ToolResult,
    UnknownBlock,
    Usage,
)
from .._provider import Completion, Request, StopReason
from .._tools._tool import ToolSpec
from ._sse import SSEEvent
from ._wire import HttpRequest, error_from_status, is_object, loads, request_id

__all__ = [
    "CODE_EXECUTION_BETAS",
    "CODE_EXECUTION_TOOL",
    "PATH",
    "PROVIDER",
    "AnthropicSettings",
    "StreamDecoder",
    "decode_error",
    "decode_response",
    "encode_request",
]

PROVIDER = "anthropic"
"""The ``provider`` of this codec's errors and of the blocks it decodes."""

PATH = "/v1/messages"
"""The API path requests are sent to."""

CODE_EXECUTION_TOOL: Mapping[str, str] = MappingProxyType(
    {"type": "code_execution_20260120", "name": "code_execution"}
)
"""The server tool entry ``code_execution=True`` appends to ``tools`` (the version recorded live)."""

CODE_EXECUTION_BETAS: tuple[str, ...] = ()
"""Betas ``code_execution=True`` adds to ``anthropic-beta``: none, ``code_execution_20260120``
is generally available (the live recording sends it with no code-execution beta; the old
``code-execution-2025-08-25`` beta belongs to ``code_execution_20250825``)."""

_EPHEMERAL = "ephemeral"
_CACHEABLE = frozenset(
    {"text", "image", "tool_use", "tool_result", "server_tool_use", "document", "search_result"}
)
_TOOL_CHOICE_TYPES = frozenset({"auto", "any", "none"})


# -- settings ------------------------------------------------------------------------------


def _to_str_tuple(value: str | Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _to_header_pairs(
    value: Mapping[str, str] | Iterable[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    pairs = value.items() if isinstance(value, Mapping) else value
    return tuple((str(name), str(text)) for name, text in pairs)


def _check_model(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"model must be a non-empty string, got {value!r}")


def _check_positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None and attribute.name == "thinking_budget":
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{attribute.name} must be a positive integer, got {value!r}")


def _check_tool_choice(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None or (isinstance(value, str) and value):
        return
    if isinstance(value, Mapping) and isinstance(value.get("type"), str):
        return
    raise ConfigError(
        "tool_choice must be 'auto', 'any', 'none', a tool name or a mapping with a 'type', "
        f"got {value!r}"
    )


@attrs.frozen(kw_only=True)
class AnthropicSettings:
    """The provider options that shape an Anthropic Messages request.

    - ``api_key``: sent as ``x-api-key`` (no header when ``None``; hidden from ``repr``).
    - ``max_tokens``: the output cap; ``api_version``: the ``anthropic-version`` header.
    - ``betas``: ``anthropic-beta`` names; with any ``anthropic-beta`` entries of ``extra_headers``
      (comma-separated values allowed) they become one header, trimmed, de-duplicated, in order.
    - ``extra_headers``: more headers, sent after ours; one with the name of a header we set
      (``x-api-key``, ``anthropic-version``...) replaces it.
    - ``thinking_budget``: enables extended thinking with that many budget tokens.
    - ``cache``: prompt-caching breakpoints on the system prompt, the last tool, the last message.
    - ``code_execution``: adds Anthropic's server-side code execution tool (``CODE_EXECUTION_TOOL``).
    - ``tool_choice``: ``"auto"``, ``"any"``, ``"none"``, a tool name, or a mapping sent as is;
      sent only when the request has tools.
    - ``extra_body``: more top-level body fields (``request.options`` still win over them).

    >>> AnthropicSettings(model="claude-sonnet-4-6", thinking_budget=2048, cache=True).max_tokens
    4096
    """

    model: str = attrs.field(validator=_check_model)
    api_key: str | None = attrs.field(default=None, repr=False)
    max_tokens: int = attrs.field(default=4096, validator=_check_positive)
    api_version: str = "2023-06-01"
    betas: tuple[str, ...] = attrs.field(default=(), converter=_to_str_tuple)
    extra_headers: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_to_header_pairs)
    thinking_budget: int | None = attrs.field(default=None, validator=_check_positive)
    cache: bool = False
    code_execution: bool = False
    tool_choice: str | Mapping[str, Any] | None = attrs.field(
        default=None, validator=_check_tool_choice
    )
    extra_body: Mapping[str, Any] | None = None


# -- encoding ------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """``value`` with every mapping a ``dict`` (what ``json.dumps`` needs); dicts pass as is."""
    if type(value) is dict:
        return value
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _encode_text(block: Text) -> dict[str, Any] | None:
    # The API rejects empty and whitespace-only text blocks.
    return {"type": "text", "text": block.text} if block.text.strip() else None


def _encode_tool_call(block: ToolCall) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": block.id,
        "name": block.name,
        "input": _plain(block.arguments),
    }


def _encode_tool_result(block: ToolResult) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": block.call_id,
        "content": block.content,
    }
    if block.is_error:
        wire["is_error"] = True
    return wire


def _encode_image(block: Image) -> dict[str, Any]:
    source = {"type": "base64", "media_type": block.media_type, "data": block.data}
    return {"type": "image", "source": source}


def _encode_thinking(block: Thinking) -> dict[str, Any] | None:
    if block.provider != PROVIDER or block.signature is None:
        return None
    return {"type": "thinking", "thinking": block.text, "signature": block.signature}


def _encode_redacted(block: RedactedThinking) -> dict[str, Any] | None:
    if block.provider != PROVIDER:
        return None
    return {"type": "redacted_thinking", "data": block.data}


def _encode_server_call(block: ServerToolCall) -> dict[str, Any]:
    return {
        "type": "server_tool_use",
        "id": block.id,
        "name": block.name,
        "input": _plain(block.arguments),
    }


def _encode_server_result(block: ServerToolResult) -> dict[str, Any]:
    return {"type": block.kind, "tool_use_id": block.call_id, "content": _plain(block.content)}


def _encode_unknown(block: UnknownBlock) -> dict[str, Any] | None:
    if block.provider != PROVIDER:
        return None
    return {key: _plain(item) for key, item in block.data.items()}


_ENCODERS: dict[type[Any], Callable[[Any], dict[str, Any] | None]] = {
    Text: _encode_text,
    ToolCall: _encode_tool_call,
    ToolResult: _encode_tool_result,
    Image: _encode_image,
    Thinking: _encode_thinking,
    RedactedThinking: _encode_redacted,
    ServerToolCall: _encode_server_call,
    ServerToolResult: _encode_server_result,
    UnknownBlock: _encode_unknown,
}


def _encode_block(block: Block) -> dict[str, Any] | None:
    """The wire block for ``block``, or ``None`` when it is not sent to this API."""
    encoder = _ENCODERS.get(type(block))
    if encoder is None:  # a subclass: find its base
        for cls, candidate in _ENCODERS.items():
            if isinstance(block, cls):
                return candidate(block)
        raise TypeError(f"not a content block: {block!r}")
    return encoder(block)


def _results_first(content: list[dict[str, Any]]) -> None:
    """Move the tool_result blocks of a user message before its other blocks, in order."""
    seen_other = False
    for block in content:
        if block.get("type") != "tool_result":
            seen_other = True
        elif seen_other:
            results = [b for b in content if b.get("type") == "tool_result"]
            others = [b for b in content if b.get("type") != "tool_result"]
            content[:] = results + others
            return


def _encode_messages(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """The wire ``messages``: blocks encoded, empty messages dropped, same roles merged."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        blocks = []
        for block in message.content:
            encoded = _encode_block(block)
            if encoded is not None:
                blocks.append(encoded)
        if not blocks:
            continue
        if wire and wire[-1]["role"] == message.role:
            wire[-1]["content"].extend(blocks)
        else:
            wire.append({"role": message.role, "content": blocks})
    for message_wire in wire:
        if message_wire["role"] == "user":
            _results_first(message_wire["content"])
    return wire


def _encode_tool(spec: ToolSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "description": spec.description,
        "input_schema": _plain(spec.input_schema),
    }


def _tool_choice(choice: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(choice, str):
        if choice in _TOOL_CHOICE_TYPES:
            return {"type": choice}
        return {"type": "tool", "name": choice}
    return _plain(dict(choice))  # type: ignore[no-any-return]


def _merge_betas(values: Iterable[str]) -> str:
    seen: dict[str, None] = {}
    for value in values:
        for name in value.split(","):
            name = name.strip()
            if name:
                seen.setdefault(name, None)
    return ",".join(seen)


def _headers(settings: AnthropicSettings) -> tuple[tuple[str, str], ...]:
    headers: dict[str, tuple[str, str]] = {}
    if settings.api_key:
        headers["x-api-key"] = ("x-api-key", settings.api_key)
    headers["anthropic-version"] = ("anthropic-version", settings.api_version)
    betas = list(settings.betas)
    extra: list[tuple[str, str]] = []
    for name, value in settings.extra_headers:
        if name.lower() == "anthropic-beta":
            betas.append(value)
        else:
            extra.append((name, value))
    if settings.code_execution:
        betas.extend(CODE_EXECUTION_BETAS)
    merged = _merge_betas(betas)
    if merged:
        headers["anthropic-beta"] = ("anthropic-beta", merged)
    for name, value in extra:
        headers[name.lower()] = (name, value)
    return tuple(headers.values())


def _mark_last_block(messages: list[dict[str, Any]]) -> None:
    """Put a cache breakpoint on the last cacheable block of the last message."""
    content = messages[-1]["content"]
    for position in range(len(content) - 1, -1, -1):
        if content[position].get("type") in _CACHEABLE:
            content[position] = {**content[position], "cache_control": {"type": _EPHEMERAL}}
            return


def encode_request(request: Request, settings: AnthropicSettings, *, stream: bool) -> HttpRequest:
    """The HTTP request for ``request``: ``POST /v1/messages`` with headers and JSON body.

    The body holds ``model``, ``max_tokens``, ``system``, ``messages``, ``tools``,
    ``tool_choice``, ``thinking`` and ``stream`` as the settings say; then ``settings.extra_body``
    and last ``request.options`` are merged in at the top level, so options such as
    ``temperature``, ``top_p``, ``top_k``, ``stop_sequences`` or ``metadata`` reach the wire
    (and may override anything above). No ``content-type``: the transport sends JSON.

    >>> http = encode_request(
    ...     Request(messages=(Message.user("hi"),), system_prompt="Be brief.",
    ...             options={"temperature": 0}),
    ...     AnthropicSettings(model="claude-sonnet-4-6", api_key="k"), stream=True)
    >>> http.headers
    (('x-api-key', 'k'), ('anthropic-version', '2023-06-01'))
    >>> {key: http.body[key] for key in ("system", "stream", "temperature")}
    {'system': 'Be brief.', 'stream': True, 'temperature': 0}
    """
    body: dict[str, Any] = {"model": settings.model, "max_tokens": settings.max_tokens}
    if request.system_prompt:
        if settings.cache:
            body["system"] = [
                {
                    "type": "text",
                    "text": request.system_prompt,
                    "cache_control": {"type": _EPHEMERAL},
                }
            ]
        else:
            body["system"] = request.system_prompt
    messages = _encode_messages(request.messages)
    if settings.cache and messages:
        _mark_last_block(messages)
    body["messages"] = messages
    tools = [_encode_tool(spec) for spec in request.tools]
    if settings.code_execution:
        tools.append(dict(CODE_EXECUTION_TOOL))
    if tools:
        if settings.cache:
            tools[-1]["cache_control"] = {"type": _EPHEMERAL}
        body["tools"] = tools
        if settings.tool_choice is not None:
            body["tool_choice"] = _tool_choice(settings.tool_choice)
    if settings.thinking_budget is not None:
        body["thinking"] = {"type": "enabled", "budget_tokens": settings.thinking_budget}
    if stream:
        body["stream"] = True
    if settings.extra_body:
        body.update(settings.extra_body)
    if request.options:
        body.update(request.options)
    return HttpRequest(
        method="POST", path=PATH, headers=_headers(settings), body=body, stream=stream
    )


# -- decoding ------------------------------------------------------------------------------


def _protocol_error(message: str, body: str | None = None) -> ProtocolError:
    return ProtocolError(f"{PROVIDER}: {message}", provider=PROVIDER, body=body)


def _field(wire: Mapping[str, Any], key: str, kind: type[Any], what: str) -> Any:
    value = wire.get(key)
    if type(value) is not kind:
        got = "missing" if value is None else f"a {type(value).__name__}"
        raise _protocol_error(f"{what}: field {key!r} should be a {kind.__name__}, it is {got}")
    return value


_SERVER_CALL_KEYS = frozenset({"type", "id", "name", "input"})
_SERVER_RESULT_KEYS = frozenset({"type", "tool_use_id", "content"})
_NOT_SERVER_RESULTS = frozenset({"mcp_tool_result"})


def _standard(wire: Mapping[str, Any], keys: frozenset[str]) -> bool:
    """True when ``wire`` has exactly ``keys`` (plus, at most, the default direct caller)."""
    extra = wire.keys() - keys
    if extra and (extra != {"caller"} or wire["caller"] != {"type": "direct"}):
        return False
    return len(wire) - len(extra) == len(keys)


def _decode_tool_result(wire: dict[str, Any]) -> Block:
    content = wire.get("content", "")
    if isinstance(content, list) and all(
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        for part in content
    ):
        content = "".join(part["text"] for part in content)
    call_id = wire.get("tool_use_id")
    if not isinstance(content, str) or not isinstance(call_id, str):
        return UnknownBlock(wire, provider=PROVIDER)  # e.g. tool_reference results
    return ToolResult(call_id, content, is_error=wire.get("is_error") is True)


def _decode_image(wire: dict[str, Any]) -> Block:
    source = wire.get("source")
    if (
        isinstance(source, dict)
        and source.get("type") == "base64"
        and isinstance(source.get("media_type"), str)
        and isinstance(source.get("data"), str)
        and wire.keys() <= {"type", "source", "cache_control"}
    ):
        return Image(source["media_type"], source["data"])
    return UnknownBlock(wire, provider=PROVIDER)  # URL and file sources


def _decode_block(wire: Any) -> Block:
    """The alloy block for one wire content block (response or request side)."""
    if type(wire) is not dict:
        raise _protocol_error(f"a content block should be an object, got {wire!r:.100}")
    kind = wire.get("type")
    if kind == "text":
        return Text(_field(wire, "text", str, "text block"))
    if kind == "tool_use":
        what = "tool_use block"
        arguments = wire.get("input", {})
        if type(arguments) is not dict:
            raise _protocol_error(f"{what}: field 'input' should be an object")
        return ToolCall(_field(wire, "id", str, what), _field(wire, "name", str, what), arguments)
    if kind == "thinking":
        signature = wire.get("signature")
        return Thinking(
            _field(wire, "thinking", str, "thinking block"),
            signature=signature if isinstance(signature, str) else None,
            provider=PROVIDER,
        )
    if kind == "redacted_thinking":
        return RedactedThinking(_field(wire, "data", str, "redacted_thinking block"), PROVIDER)
    if kind == "server_tool_use":
        if (
            _standard(wire, _SERVER_CALL_KEYS)
            and isinstance(wire["id"], str)
            and isinstance(wire["name"], str)
            and type(wire["input"]) is dict
        ):
            return ServerToolCall(wire["id"], wire["name"], wire["input"])
    elif kind == "tool_result":
        return _decode_tool_result(wire)
    elif isinstance(kind, str) and kind.endswith("_tool_result"):
        if (
            kind not in _NOT_SERVER_RESULTS
            and _standard(wire, _SERVER_RESULT_KEYS)
            and isinstance(wire["tool_use_id"], str)
        ):
            return ServerToolResult(wire["tool_use_id"], kind, wire["content"])
    elif kind == "image":
        return _decode_image(wire)
    return UnknownBlock(wire, provider=PROVIDER)


def _decode_content(content: Sequence[Any]) -> tuple[Block, ...]:
    """The alloy blocks for a wire ``content`` list (a response's, or a request message's).

    >>> _decode_content([{"type": "text", "text": "hi"}, {"type": "container_upload",
    ...                  "file_id": "f1"}])
    (Text(text='hi'), UnknownBlock(data={'type': 'container_upload', 'file_id': 'f1'}, provider='anthropic'))
    """
    return tuple(_decode_block(block) for block in content)


_STOP_REASONS: dict[str, StopReason] = {
    "end_turn": StopReason.END_TURN,
    "tool_use": StopReason.TOOL_USE,
    "max_tokens": StopReason.MAX_TOKENS,
    "stop_sequence": StopReason.STOP_SEQUENCE,
    "refusal": StopReason.REFUSAL,
    "pause_turn": StopReason.PAUSE_TURN,
    "model_context_window_exceeded": StopReason.MAX_TOKENS,
    "compaction": StopReason.PAUSE_TURN,
}
_TRUNCATED = frozenset({"max_tokens", "model_context_window_exceeded", "refusal"})


def _stop_reason(raw: Any, message: Message) -> StopReason:
    mapped = _STOP_REASONS.get(raw) if isinstance(raw, str) else None
    if mapped is not None:
        return mapped
    return StopReason.TOOL_USE if message.tool_calls else StopReason.END_TURN


def _count(raw: Mapping[str, Any], key: str) -> int:
    value = raw.get(key)
    return value if type(value) is int and value > 0 else 0


def _usage(raw: Any) -> Usage:
    """Alloy's ``Usage`` from an Anthropic ``usage`` object (see the module docstring)."""
    if not is_object(raw):
        return Usage()
    cache_read = _count(raw, "cache_read_input_tokens")
    cache_write = _count(raw, "cache_creation_input_tokens")
    details = raw.get("output_tokens_details")
    reasoning = _count(details, "thinking_tokens") if is_object(details) else 0
    return Usage(
        input_tokens=_count(raw, "input_tokens") + cache_read + cache_write,
        output_tokens=_count(raw, "output_tokens"),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
    )


def _error_event(
    payload: Mapping[str, Any], text: str, headers: Mapping[str, str]
) -> ProviderError:
    """The typed error for an error object found with HTTP 200 (in a stream or a body)."""
    error = payload.get("error")
    error_type = message = None
    if isinstance(error, Mapping):
        error_type = error.get("type") if isinstance(error.get("type"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else None
    elif isinstance(error, str):
        message = error
    return error_from_status(
        provider=PROVIDER,
        status=None,
        headers=_with_request_id(headers, payload),
        body=text,
        error_type=error_type,
        message=message,
    )


def _with_request_id(headers: Mapping[str, str], payload: Mapping[str, Any]) -> Mapping[str, str]:
    """``headers``, plus the body's ``request_id`` when no header carries one."""
    body_id = payload.get("request_id")
    if isinstance(body_id, str) and body_id and not request_id(headers):
        return {**headers, "request-id": body_id}
    return headers


def _text(body: bytes | str) -> str:
    """The body as text, for error messages (decoded only when an error needs it)."""
    return body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else str(body)


def decode_response(body: bytes) -> Completion:
    """The completion in a non-streamed 200 reply.

    Raises ``ProtocolError`` when the body is not JSON or has no ``content`` list, and the typed
    error (``OverloadedError``...) when it holds an error object instead of a message.

    >>> completion = decode_response(b'{"type": "message", "role": "assistant", "model": "m",'
    ...     b' "content": [{"type": "text", "text": "Hi!"}], "stop_reason": "end_turn",'
    ...     b' "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 90}}')
    >>> completion.message.text, completion.stop_reason, completion.usage.input_tokens
    ('Hi!', <StopReason.END_TURN: 'end_turn'>, 100)
    """
    try:
        payload = loads(body)
    except ValueError as exc:
        raise _protocol_error(f"the reply is not JSON ({exc})", _text(body)[:2000]) from exc
    if type(payload) is not dict:
        raise _protocol_error("the reply is not a JSON object", _text(body)[:2000])
    if payload.get("type") == "error" or ("error" in payload and "content" not in payload):
        raise _error_event(payload, _text(body), {})
    content = payload.get("content")
    if type(content) is not list:
        raise _protocol_error("the reply has no 'content' list", _text(body)[:2000])
    message = Message("assistant", _decode_content(content))
    model = payload.get("model")
    return Completion(
        message=message,
        stop_reason=_stop_reason(payload.get("stop_reason"), message),
        usage=_usage(payload.get("usage")),
        model=model if isinstance(model, str) else None,
    )


def decode_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    """The typed error for an HTTP error reply.

    Reads Anthropic's ``{"type": "error", "error": {"type": ..., "message": ...}}`` (also a
    string ``error``, or a bare ``message``); anything else (an HTML page, ``Bad Gateway``) is
    kept as the body. The request id comes from the ``request-id`` header, else from the body.

    >>> error = decode_error(529, {"request-id": "req_1"},
    ...     b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')
    >>> type(error).__name__, error.error_type, error.request_id, error.retryable
    ('OverloadedError', 'overloaded_error', 'req_1', True)
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    error_type = message = code = None
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, Mapping):
            error_type = error.get("type") if isinstance(error.get("type"), str) else None
            message = error.get("message") if isinstance(error.get("message"), str) else None
            code = error.get("code") if isinstance(error.get("code"), str) else None
        elif isinstance(error, str):
            message = error
        elif isinstance(payload.get("message"), str):
            message = payload["message"]
        lowered = dict(_with_request_id(lowered, payload))
    return error_from_status(
        provider=PROVIDER,
        status=status,
        headers=lowered,
        body=body,
        error_type=error_type,
        message=message,
        code=code,
    )


# -- streaming -----------------------------------------------------------------------------


class _Block:
    """One content block being streamed: its start object and the fragments that follow."""

    __slots__ = ("call", "kind", "parts", "signature", "wire")

    def __init__(self, kind: str, wire: dict[str, Any], call: int | None) -> None:
        self.kind = kind
        self.wire = wire
        self.call = call  # position among the client tool calls, for tool_use blocks
        self.parts: list[str] = []  # text, thinking or JSON fragments, joined once at the end
        self.signature: list[str] = []


_TEXT_KINDS = frozenset({"text", "thinking", "redacted_thinking"})


class StreamDecoder:
    """Decodes one streamed reply: feed it every SSE event, then call :meth:`finish`.

    ``feed`` returns the deltas the event carries: ``TextDelta`` for ``text_delta``,
    ``ThinkingDelta`` for ``thinking_delta``, ``ToolCallStarted`` when a ``tool_use`` block
    starts and ``ToolCallDelta`` for each ``input_json_delta`` fragment of one. Their ``index`` is
    the call's position among the client tool calls of this reply (0, 1, ...), not the content
    block index (which also counts text, thinking and server tool blocks). Server tool blocks,
    redacted thinking and unknown blocks produce no deltas; they arrive whole in
    ``content_block_start`` (server tool input through ``input_json_delta``) and appear in the
    final message. ``ping`` and ``citations_delta`` are ignored, and so are event and delta types
    this codec does not know. ``event: error`` raises the typed error.

    ``headers`` (the reply's, lower-case names) give in-stream errors their request id and
    rate-limit headers.

    >>> decoder = StreamDecoder()
    >>> events = [SSEEvent(json.dumps(e), event=e["type"]) for e in [
    ...     {"type": "message_start", "message": {"model": "m", "usage": {"input_tokens": 9}}},
    ...     {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ...     {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    ...     {"type": "content_block_stop", "index": 0},
    ...     {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
    ...      "usage": {"input_tokens": 9, "output_tokens": 2}},
    ...     {"type": "message_stop"}]]
    >>> [delta for event in events for delta in decoder.feed(event)]
    [TextDelta(text='Hi', seq=0, turn=0)]
    >>> decoder.finish().usage
    Usage(input_tokens=9, output_tokens=2, cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0)
    """

    __slots__ = (
        "_blocks",
        "_calls",
        "_headers",
        "_model",
        "_started",
        "_stop_reason",
        "_stopped",
        "_usage",
    )

    def __init__(self, *, headers: Mapping[str, str] | None = None) -> None:
        self._headers: Mapping[str, str] = headers or {}
        self._blocks: dict[int, _Block] = {}
        self._calls = 0
        self._model: str | None = None
        self._stop_reason: Any = None
        self._usage: dict[str, Any] = {}
        self._started = False
        self._stopped = False

    def feed(self, event: SSEEvent) -> list[Delta]:
        """The deltas in one SSE event; raises the typed error for an ``error`` event."""
        data = event.data
        if not data or data == "[DONE]":
            return []
        # The hot path: one call per streamed token (``loads`` is json.loads, faster).
        try:
            payload = loads(data)
        except ValueError as exc:
            raise _protocol_error(f"a stream event is not JSON ({exc})", data[:2000]) from exc
        if type(payload) is not dict:
            raise _protocol_error("a stream event is not a JSON object", data[:2000])
        kind = payload.get("type") or event.event
        if kind == "content_block_delta":
            # The usual deltas, inlined; anything else, and every malformed delta, goes to
            # ``_delta``, which checks everything and raises the errors.
            index = payload.get("index")
            delta = payload.get("delta")
            if type(index) is int and type(delta) is dict:
                block = self._blocks.get(index)
                if block is not None:
                    delta_kind = delta.get("type")
                    if delta_kind == "text_delta":
                        text = delta.get("text")
                        if block.kind == "text" and type(text) is str:
                            block.parts.append(text)
                            return [TextDelta(text=text)] if text else []
                    elif delta_kind == "input_json_delta":
                        fragment = delta.get("partial_json")
                        if block.call is not None and type(fragment) is str:
                            if not fragment:
                                return []
                            block.parts.append(fragment)
                            return [ToolCallDelta(index=block.call, arguments=fragment)]
                    elif delta_kind == "thinking_delta":
                        text = delta.get("thinking")
                        if block.kind == "thinking" and type(text) is str:
                            block.parts.append(text)
                            return [ThinkingDelta(text=text)] if text else []
            return self._delta(payload)
        if kind == "content_block_start":
            return self._start(payload)
        if kind == "content_block_stop":
            return self._stop(payload)
        if kind == "message_start":
            message = payload.get("message")
            if type(message) is dict:
                model = message.get("model")
                self._model = model if isinstance(model, str) else None
                self._take_usage(message.get("usage"))
            self._started = True
        elif kind == "message_delta":
            delta = payload.get("delta")
            if type(delta) is dict and delta.get("stop_reason") is not None:
                self._stop_reason = delta["stop_reason"]
            self._take_usage(payload.get("usage"))
        elif kind == "message_stop":
            self._stopped = True
        elif kind == "error":
            raise _error_event(payload, data, self._headers)
        return []

    def finish(self) -> Completion:
        """The whole reply; ``ProtocolError`` if the stream ended before ``message_stop`` or a
        tool call's JSON is invalid (see the module docstring for truncated replies)."""
        if not self._stopped:
            where = "message_stop" if self._started else "message_start"
            raise _protocol_error(f"stream ended before {where}")
        truncated = self._stop_reason in _TRUNCATED
        content = [self._build(self._blocks[index], truncated) for index in sorted(self._blocks)]
        message = Message("assistant", content)
        return Completion(
            message=message,
            stop_reason=_stop_reason(self._stop_reason, message),
            usage=_usage(self._usage),
            model=self._model,
        )

    # -- internals ---------------------------------------------------------------------------

    def _take_usage(self, usage: Any) -> None:
        # Cumulative counts: the last reported value of each field wins; nothing is summed.
        if type(usage) is dict:
            for key, value in usage.items():
                if value is not None:
                    self._usage[key] = value

    def _block(self, payload: dict[str, Any]) -> _Block:
        index = payload.get("index")
        block = self._blocks.get(index) if type(index) is int else None
        if block is None:
            raise _protocol_error(
                f"{payload.get('type')} for content block {index!r}, never started"
            )
        return block

    def _start(self, payload: dict[str, Any]) -> list[Delta]:
        index = payload.get("index")
        start = payload.get("content_block")
        if (
            type(index) is not int
            or type(start) is not dict
            or not isinstance(start.get("type"), str)
        ):
            raise _protocol_error(f"malformed content_block_start: {payload!r:.200}")
        if index in self._blocks:
            raise _protocol_error(f"content block {index} started twice")
        kind: str = start["type"]
        block = _Block(kind, dict(start), None)
        self._blocks[index] = block
        if kind == "text" or kind == "thinking":
            # Text that comes with the start (normally ""): part of the block and of the deltas.
            text = start.get(kind)
            if isinstance(text, str) and text:
                block.parts.append(text)
                return [TextDelta(text=text) if kind == "text" else ThinkingDelta(text=text)]
        elif kind == "tool_use":
            what = "tool_use block"
            call_id = _field(start, "id", str, what)
            name = _field(start, "name", str, what)
            block.call = self._calls
            self._calls += 1
            return [ToolCallStarted(index=block.call, id=call_id, name=name)]
        return []

    def _delta(self, payload: dict[str, Any]) -> list[Delta]:
        block = self._block(payload)
        delta = payload.get("delta")
        if type(delta) is not dict:
            raise _protocol_error(f"content_block_delta without a delta object: {payload!r:.200}")
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            if block.kind != "text" or type(text) is not str:
                raise _protocol_error(f"text_delta for a {block.kind} block: {delta!r:.200}")
            block.parts.append(text)
            return [TextDelta(text=text)] if text else []
        if kind == "input_json_delta":
            fragment = delta.get("partial_json")
            if block.kind in _TEXT_KINDS or type(fragment) is not str:
                raise _protocol_error(f"input_json_delta for a {block.kind} block: {delta!r:.200}")
            if not fragment:
                return []
            block.parts.append(fragment)
            if block.call is not None:
                return [ToolCallDelta(index=block.call, arguments=fragment)]
            return []
        if kind == "thinking_delta":
            text = delta.get("thinking")
            if block.kind != "thinking" or type(text) is not str:
                raise _protocol_error(f"thinking_delta for a {block.kind} block: {delta!r:.200}")
            block.parts.append(text)
            return [ThinkingDelta(text=text)] if text else []
        if kind == "signature_delta":
            signature = delta.get("signature")
            if block.kind != "thinking" or type(signature) is not str:
                raise _protocol_error(f"signature_delta for a {block.kind} block: {delta!r:.200}")
            block.signature.append(signature)
        return []  # citations_delta and delta types from the future

    def _stop(self, payload: dict[str, Any]) -> list[Delta]:
        block = self._block(payload)
        if block.call is not None and not block.parts:
            # Arguments that came whole in content_block_start: one delta, so deltas add up.
            arguments = block.wire.get("input")
            if isinstance(arguments, dict) and arguments:
                return [ToolCallDelta(index=block.call, arguments=json.dumps(arguments))]
        return []

    def _build(self, block: _Block, truncated: bool) -> Block:
        wire = block.wire
        kind = block.kind
        if kind == "text":
            wire["text"] = "".join(block.parts)
        elif kind == "thinking":
            wire["thinking"] = "".join(block.parts)
            if block.signature:
                start = wire.get("signature")
                wire["signature"] = (start if isinstance(start, str) else "") + "".join(
                    block.signature
                )
        elif block.parts:
            raw = "".join(block.parts)
            try:
                arguments = loads(raw)
            except ValueError:
                arguments = None
            if type(arguments) is not dict:
                if not truncated:
                    name = wire.get("name", kind)
                    raise _protocol_error(
                        f"invalid JSON in the input of {kind} {name!r} "
                        f"(id {wire.get('id')!r}): {raw[:200]!r}"
                    )
                arguments = {"_raw": raw}
            wire["input"] = arguments
        return _decode_block(wire)


_REQUEST_FIELDS = frozenset({"model", "messages", "system", "tools", "stream"})


def decode_request(body: Mapping[str, Any]) -> Request:
    """The ``Request`` a Messages request body describes (what a fake server received).

    The inverse of :func:`encode_request` up to its documented losses; body fields other than
    model, messages, system, tools and stream go to ``options``.

    >>> request = decode_request({"model": "m", "max_tokens": 5, "system": "Be brief.",
    ...     "messages": [{"role": "user", "content": "hi"}]})
    >>> request.system_prompt, request.messages[0].text, request.options
    ('Be brief.', 'hi', {'max_tokens': 5})
    """
    system = body.get("system")
    if isinstance(system, list):
        system = "".join(part.get("text", "") for part in system if isinstance(part, Mapping))
    messages: list[Message] = []
    for wire in body.get("messages") or ():
        if not isinstance(wire, Mapping) or wire.get("role") not in ("user", "assistant"):
            raise _protocol_error(
                f"a request message should have role user or assistant: {wire!r:.100}"
            )
        content = wire.get("content")
        blocks = (Text(content),) if isinstance(content, str) else _decode_content(content or ())
        messages.append(Message(wire["role"], blocks))
    tools = tuple(
        ToolSpec(tool["name"], tool.get("description", ""), tool.get("input_schema", {}))
        for tool in body.get("tools") or ()
        if isinstance(tool, Mapping) and "input_schema" in tool
    )
    return Request(
        messages=tuple(messages),
        system_prompt=system if isinstance(system, str) else None,
        tools=tools,
        options={k: v for k, v in body.items() if k not in _REQUEST_FIELDS},
    )
