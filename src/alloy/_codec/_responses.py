"""The OpenAI Responses API (``POST /v1/responses``) as a sans-IO codec.

It speaks to api.openai.com and to the hosts that copy the API (OpenRouter, DeepSeek, Azure,
xAI...). No I/O here: ``encode_request`` builds an :class:`HttpRequest`, ``decode_response``
reads a JSON body, :class:`StreamDecoder` is fed SSE events, ``decode_error`` reads an error
reply. For fake servers and tests, ``decode_request`` reads a request body back into a
:class:`Request`; replies as the API sends them are encoded by
``alloy.testing._wire_encode.encode_responses``.

The request
-----------
``model``; ``instructions`` (the system prompt); ``input`` (the items below); ``tools`` as
``{"type": "function", "name", "description", "parameters", "strict": false}``; ``tool_choice``
and ``parallel_tool_calls`` when set; ``reasoning: {"effort", "summary"}`` with the keys that are
set; ``include: ["reasoning.encrypted_content"]`` (see below); ``store``; ``max_output_tokens``
when set; ``stream``; then ``settings.extra_body`` and last ``request.options`` (for example
``{"temperature": 0.2, "top_p": 0.9}``), merged key by key at the top level, so they win.

Blocks become input items in order:

- user ``Text``/``Image`` -> ``{"role": "user", "content": [{"type": "input_text", "text"},
  {"type": "input_image", "image_url": "data:<mime>;base64,<data>"}]}`` (consecutive parts share
  one message); an ``Image`` in an assistant message is dropped (the API has no such part).
- assistant ``Text`` -> ``{"type": "message", "role": "assistant", "content": [{"type":
  "output_text", "text"}]}`` (consecutive texts share one message).
- ``ToolCall`` -> ``{"type": "function_call", "call_id", "name", "arguments": "<JSON>"}``.
- ``ToolResult`` -> ``{"type": "function_call_output", "call_id", "output"}``. The wire has no
  error flag, so an error result's output is prefixed with ``"Error: "``; ``is_error`` is never
  lost (``decode_request`` reads the prefix back).
- ``Thinking`` with ``provider="openai"`` -> ``{"type": "reasoning", "summary": [{"type":
  "summary_text", "text"}] (or [] when the text is empty), "encrypted_content": signature}``.
  Without a signature (DeepSeek and gpt-oss hosts return raw reasoning text, not encrypted
  state) the text goes in ``"content": [{"type": "reasoning_text", "text"}]`` with ``"summary":
  []``; a block with neither text nor signature carries nothing and is dropped (re-sending its
  bare id with ``store=false`` is a 404 "Item not found").
  ``RedactedThinking`` with ``provider="openai"`` -> the same item with an empty summary.
  **Item ids are never sent.** The API pairs a reasoning item that has an ``id`` with the item
  that followed it in the original output, by *that* item's id ("Item 'rs_...' of type
  'reasoning' was provided without its required following item", recorded), and Alloy's ``Text``
  and ``ToolCall`` do not keep the ``msg_``/``fc_`` ids. Without ids the encrypted content alone
  carries the reasoning, which is how OpenAI's own Codex CLI replays its history with
  ``store=false``. ``Thinking.id`` is still decoded, for logs. (With ``store=True``, some hosts,
  Azure among them, want the item ids back; keep the default ``store=False``.)
- Reasoning from another provider (``Thinking``/``RedactedThinking`` whose ``provider`` is not
  ``"openai"``, including ``None``) is dropped: its signature means nothing here and its text
  was never this model's. ``UnknownBlock`` with ``provider="openai"`` (web search, file search,
  code interpreter, image generation, MCP, compaction items...) is re-sent verbatim; from any
  other provider it is dropped, as are ``ServerToolCall``/``ServerToolResult`` (Anthropic's).

``include: ["reasoning.encrypted_content"]`` is sent when ``include_encrypted_reasoning`` (the
default) and the request uses reasoning: ``reasoning_effort`` or ``reasoning_summary`` is set,
or the history holds signed OpenAI reasoning. Not always: models without reasoning (gpt-4o,
gpt-4.1) reject it ("Encrypted content is not supported with this model"). Whatever ``store``
says, since Alloy sends no item ids, encrypted content is the only way reasoning reaches the
next turn. A reasoning model that reasons by default while neither option is set returns
reasoning without encrypted content; that reasoning is not carried over (set
``reasoning_effort`` to keep it).

The reply
---------
``output`` items: ``message`` -> one ``Text`` per ``output_text`` part and per ``refusal`` part
(the latter makes the stop reason ``refusal``); ``function_call`` -> ``ToolCall(id=call_id,
name, arguments)`` (``""`` means ``{}``); ``reasoning`` -> ``Thinking(text, signature=
encrypted_content, provider="openai", id=item id)``, its text the summary texts joined with
``"\\n\\n"``, or when there is no summary the ``reasoning_text`` contents joined with ``""``
(DeepSeek); every other item type -> ``UnknownBlock(data=item, provider="openai")``: those are
tools the provider ran itself, kept for the history and never executed here. Not kept: text
``annotations`` (citations) and a message's ``phase``; ``Text`` has no place for them.

Stop reason: ``status: "incomplete"`` -> ``max_tokens`` (``incomplete_details.reason``
``"max_output_tokens"`` or unknown) or ``refusal`` (``"content_filter"``); otherwise
``refusal`` when a refusal part came, ``tool_use`` when there are function calls, else
``end_turn`` (also for a status this codec does not know, such as ``"complete"``).
``"failed"`` raises the typed error from ``error``; ``"queued"``/``"in_progress"`` (background
mode, which Alloy does not poll) and ``"cancelled"`` raise ``ProtocolError``.

Usage: ``input_tokens`` (OpenAI's count already includes cached tokens, as Alloy's does),
``output_tokens``, ``input_tokens_details.cached_tokens`` -> ``cache_read_tokens``,
``input_tokens_details.cache_write_tokens`` (when reported) -> ``cache_write_tokens``,
``output_tokens_details.reasoning_tokens`` -> ``reasoning_tokens``; missing or null -> 0.

Tool-call arguments that are not a JSON object raise ``ProtocolError`` naming the tool, except
when the reply was cut off (``max_tokens``): then the call is kept with ``{}`` as arguments (the
run does not execute calls of a truncated turn; it answers them with an error result).

Streaming
---------
Events are told apart by the ``type`` field of their JSON (OpenRouter sends no ``event:`` lines
and ends with ``data: [DONE]``, which is ignored). ``response.output_text.delta`` and
``response.refusal.delta`` -> ``TextDelta``; ``response.reasoning_summary_text.delta`` and
``response.reasoning_text.delta`` (DeepSeek) -> ``ThinkingDelta`` (with ``"\\n\\n"`` between
summary parts, as in the final text); a ``function_call`` item -> ``ToolCallStarted`` (``index``:
its position among the turn's function calls), ``response.function_call_arguments.delta`` ->
``ToolCallDelta``. ``response.output_item.done``, ``response.function_call_arguments.done`` and
the final response catch up on anything the deltas did not carry (hosts that send whole items
only), so the deltas always add up to the final message. ``response.completed`` and
``response.incomplete`` end the stream; the completion is built from the final response's
``output`` (falling back to the streamed items when a host sends it empty). ``response.failed``
and ``error`` events raise the typed error at once; a stream without its end marker makes
``finish()`` raise ``ProtocolError``. Argument fragments are kept in lists and joined once.

Errors: ``{"error": {"message", "type", "code", "param"}}`` (also a string ``error`` or a bare
object), parsed whatever the content type (DeepSeek serves its 400 as
``application/octet-stream``), and classified by ``error_from_status``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from .._errors import InvalidRequestError, ProtocolError, ProviderError
from .._events import Delta, TextDelta, ThinkingDelta, ToolCallDelta, ToolCallStarted
from .._messages import (
    Block,
    Image,
    Message,
    RedactedThinking,
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
from ._wire import HttpRequest, error_from_status, is_object, loads

__all__ = [
    "ERROR_PREFIX",
    "PATH",
    "PROVIDER",
    "ResponsesSettings",
    "StreamDecoder",
    "decode_error",
    "decode_request",
    "decode_response",
    "encode_request",
]

PROVIDER: Final = "openai"
"""The ``provider`` of errors, and of the ``Thinking``/``UnknownBlock`` blocks this codec makes."""

PATH: Final = "/v1/responses"
"""The API path, appended to the provider's ``api_url``."""

ERROR_PREFIX: Final = "Error: "
"""Prefixed to the output of a ``ToolResult`` with ``is_error=True`` (the wire has no flag)."""

_INCLUDE_REASONING: Final = "reasoning.encrypted_content"
_ITEM_TYPES: Final = frozenset(
    {"message", "function_call", "function_call_output", "reasoning"}
)  # the item types this codec maps to blocks; any other type is an UnknownBlock


@attrs.frozen(kw_only=True)
class ResponsesSettings:
    """The provider options that shape a Responses API request.

    ``tool_choice`` is ``"auto"``, ``"none"``, ``"required"`` or an object such as ``{"type":
    "function", "name": "read"}``; ``reasoning_effort`` is ``"none"``/``"minimal"``/``"low"``/
    ``"medium"``/``"high"``...; ``reasoning_summary`` is ``"auto"``, ``"concise"`` or
    ``"detailed"``. ``extra_body`` is merged into the body (before ``request.options``).

    ``api_key`` is left out of the repr, so logging the settings does not leak it.

    >>> ResponsesSettings(model="gpt-5.4", api_key="sk-secret", reasoning_effort="low").model
    'gpt-5.4'
    """

    model: str
    api_key: str | None = attrs.field(default=None, repr=False)
    max_output_tokens: int | None = None
    reasoning_effort: str | None = None
    reasoning_summary: str | None = None
    store: bool = False
    include_encrypted_reasoning: bool = True
    extra_headers: tuple[tuple[str, str], ...] = ()
    tool_choice: str | Mapping[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    extra_body: Mapping[str, Any] | None = None


# -- encoding a request ----------------------------------------------------------------------


def encode_request(request: Request, settings: ResponsesSettings, *, stream: bool) -> HttpRequest:
    """The HTTP request for ``request`` (the transport sends ``body`` as JSON).

    >>> http = encode_request(Request(messages=(Message.user("hi"),), system_prompt="Be brief."),
    ...                       ResponsesSettings(model="gpt-5.4", api_key="sk-1"), stream=True)
    >>> http.path, http.body["instructions"], http.body["input"]
    ('/v1/responses', 'Be brief.', [{'role': 'user', 'content': [{'type': 'input_text', 'text': 'hi'}]}])
    """
    items: list[dict[str, Any]] = []
    for message in request.messages:  # encoded again each turn: no second copy of a history
        items += _encode_message(message)
    body: dict[str, Any] = {"model": settings.model}
    if request.system_prompt:
        body["instructions"] = request.system_prompt
    body["input"] = items
    if request.tools:
        body["tools"] = [_encode_tool(spec) for spec in request.tools]
    if settings.tool_choice is not None:
        choice = settings.tool_choice
        body["tool_choice"] = choice if isinstance(choice, str) else dict(choice)
    if settings.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = settings.parallel_tool_calls
    reasoning: dict[str, Any] = {}
    if settings.reasoning_effort is not None:
        reasoning["effort"] = settings.reasoning_effort
    if settings.reasoning_summary is not None:
        reasoning["summary"] = settings.reasoning_summary
    if reasoning:
        body["reasoning"] = reasoning
    if settings.include_encrypted_reasoning and (reasoning or _has_signed_reasoning(request)):
        body["include"] = [_INCLUDE_REASONING]
    body["store"] = settings.store
    if settings.max_output_tokens is not None:
        body["max_output_tokens"] = settings.max_output_tokens
    body["stream"] = stream
    if settings.extra_body:
        body.update(settings.extra_body)
    body.update(request.options)
    headers: list[tuple[str, str]] = []
    if settings.api_key:
        headers.append(("Authorization", f"Bearer {settings.api_key}"))
    headers += settings.extra_headers
    return HttpRequest(path=PATH, headers=tuple(headers), body=body, stream=stream)


def _encode_tool(spec: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "name": spec.name,
        "description": spec.description,
        "parameters": dict(spec.input_schema),
        "strict": False,
    }


def _has_signed_reasoning(request: Request) -> bool:
    for message in request.messages:
        if message.role != "assistant":
            continue
        for block in message.content:
            if type(block) is Thinking and block.provider == PROVIDER and block.signature:
                return True
            if type(block) is RedactedThinking and block.provider == PROVIDER:
                return True
    return False


def _encode_message(message: Message) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] | None = None  # the content of the open message item
    user = message.role == "user"
    for block in message.content:
        part: dict[str, Any]
        if isinstance(block, Text):
            part = {"type": "input_text" if user else "output_text", "text": block.text}
        elif isinstance(block, Image) and user:
            url = f"data:{block.media_type};base64,{block.data}"
            part = {"type": "input_image", "image_url": url}
        else:
            parts = None
            item = _encode_block(block)
            if item is not None:
                items.append(item)
            continue
        if parts is None:
            parts = []
            if user:
                items.append({"role": "user", "content": parts})
            else:
                items.append({"type": "message", "role": "assistant", "content": parts})
        parts.append(part)
    return items


def _encode_block(block: Block) -> dict[str, Any] | None:
    """The input item of a block that is not message content, or None to drop it."""
    if isinstance(block, ToolCall):
        return {
            "type": "function_call",
            "call_id": block.id,
            "name": block.name,
            "arguments": _dump_arguments(block),
        }
    if isinstance(block, ToolResult):
        output = ERROR_PREFIX + block.content if block.is_error else block.content
        return {"type": "function_call_output", "call_id": block.call_id, "output": output}
    if isinstance(block, Thinking):
        if block.provider != PROVIDER:
            return None
        if block.signature:
            summary = [{"type": "summary_text", "text": block.text}] if block.text else []
            return {"type": "reasoning", "summary": summary, "encrypted_content": block.signature}
        if block.text:
            return {
                "type": "reasoning",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": block.text}],
            }
        return None
    if isinstance(block, RedactedThinking):
        if block.provider != PROVIDER or not block.data:
            return None
        return {"type": "reasoning", "summary": [], "encrypted_content": block.data}
    if isinstance(block, UnknownBlock):
        return dict(block.data) if block.provider == PROVIDER else None
    return None  # an Image in an assistant message, Anthropic's server tool blocks


def _json_default(value: object) -> Any:
    if is_object(value):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _dump_arguments(call: ToolCall) -> str:
    try:
        return json.dumps(call.arguments, ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(
            f"{PROVIDER}: cannot encode the arguments of tool call {call.id!r} ({call.name}) as "
            f"JSON: {exc}",
            provider=PROVIDER,
        ) from exc


# -- decoding a reply ------------------------------------------------------------------------


def decode_response(body: bytes) -> Completion:
    """The completion in a non-streamed 200 reply.

    Raises ``ProtocolError`` for a body that is not a Responses object, and the typed
    ``ProviderError`` for an error object (``"status": "failed"`` or a bare ``{"error": ...}``).

    >>> decode_response(b'{"status": "completed", "output": [{"type": "message", "content": '
    ...                 b'[{"type": "output_text", "text": "hi"}]}]}').message.text
    'hi'
    """
    response = _load_object(body, "response body")
    if response.get("error") and response.get("status") not in ("completed", "incomplete"):
        raise _error_from_object(response, status=None, body=body)  # also "status": "failed"
    return _completion(response)


def _load_object(data: bytes | str, what: str) -> dict[str, Any]:
    try:
        value = loads(data)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(
            f"{PROVIDER}: the {what} is not valid JSON ({exc}): {_preview(data)}",
            provider=PROVIDER,
            body=_text(data),
        ) from exc
    if not isinstance(value, dict):
        raise ProtocolError(
            f"{PROVIDER}: the {what} is not a JSON object: {_preview(data)}",
            provider=PROVIDER,
            body=_text(data),
        )
    return value


def _text(data: bytes | str) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def _preview(data: bytes | str) -> str:
    text = _text(data)
    return repr(text[:200] + ("..." if len(text) > 200 else ""))


def _protocol(message: str) -> ProtocolError:
    return ProtocolError(f"{PROVIDER}: {message}", provider=PROVIDER)


def _completion(response: Mapping[str, Any], output: Sequence[Any] | None = None) -> Completion:
    """The completion of a finished response object (``output`` overrides its items)."""
    status = response.get("status")
    if status == "failed":
        raise _error_from_object(response, status=None, body=json.dumps(response))
    if status in ("queued", "in_progress"):
        raise _protocol(
            f"the response is not finished (status {status!r}): background responses, which "
            "must be polled, are not supported"
        )
    if status == "cancelled":
        raise _protocol("the response was cancelled")
    if output is None:
        output = response.get("output")
        if output is None:
            output = []
        if not isinstance(output, list):
            raise _protocol(f"'output' is not a list: {_preview(json.dumps(output))}")
    truncated: StopReason | None = None
    if status == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if is_object(details) else None
        truncated = StopReason.REFUSAL if reason == "content_filter" else StopReason.MAX_TOKENS
    blocks, refused = _decode_output(output, truncated=truncated is StopReason.MAX_TOKENS)
    if truncated is not None:
        stop = truncated
    elif refused:
        stop = StopReason.REFUSAL
    elif ToolCall in map(type, blocks):
        stop = StopReason.TOOL_USE
    else:
        stop = StopReason.END_TURN
    model = response.get("model")
    return Completion(
        message=Message("assistant", blocks),
        stop_reason=stop,
        usage=_decode_usage(response.get("usage")),
        model=model if isinstance(model, str) else None,
    )


def _decode_output(output: Iterable[Any], *, truncated: bool) -> tuple[list[Block], bool]:
    blocks: list[Block] = []
    refused = False
    for item in output:
        if not is_object(item):
            raise _protocol(f"an output item is not an object: {_preview(json.dumps(item))}")
        kind = item.get("type")
        if kind == "message":
            for part in _list(item.get("content")):
                text, refusal = _part_text(part)
                if text is not None:
                    blocks.append(Text(text))
                    refused = refused or refusal
                else:
                    data = {"type": "message", "role": "assistant", "content": [part]}
                    blocks.append(UnknownBlock(data=data, provider=PROVIDER))
        elif kind == "function_call":
            blocks.append(_decode_call(item, truncated=truncated))
        elif kind == "reasoning":
            blocks.append(_decode_reasoning(item))
        else:
            blocks.append(UnknownBlock(data=dict(item), provider=PROVIDER))
    return blocks, refused


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _part_text(part: object) -> tuple[str | None, bool]:
    """The text of a message content part and whether it is a refusal; None if not text."""
    if is_object(part):
        kind = part.get("type")
        if kind in ("output_text", "input_text", "text"):
            text = part.get("text")
            return (text if isinstance(text, str) else ""), False
        if kind == "refusal":
            refusal = part.get("refusal")
            return (refusal if isinstance(refusal, str) else ""), True
    return None, False


def _decode_call(item: Mapping[str, Any], *, truncated: bool) -> ToolCall:
    call_id = item.get("call_id")
    if not isinstance(call_id, str):
        call_id = item.get("id")
    name = item.get("name")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise _protocol(f"a function_call without call_id or name: {_preview(json.dumps(item))}")
    return ToolCall(call_id, name, _parse_arguments(item.get("arguments"), name, truncated))


def _parse_arguments(raw: object, name: str, truncated: bool) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if is_object(raw):
        return dict(raw)
    if isinstance(raw, str):
        try:
            value = loads(raw)
        except (ValueError, RecursionError) as exc:
            if truncated:
                return {}
            raise _protocol(
                f"the arguments of tool call {name!r} are not valid JSON: {exc}"
            ) from exc
        if isinstance(value, dict):
            return value
    if truncated:
        return {}
    raise _protocol(f"the arguments of tool call {name!r} are not a JSON object: {raw!r:.200}")


def _reasoning_text(item: Mapping[str, Any]) -> str:
    summary = _list(item.get("summary"))
    if summary:
        return "\n\n".join(_str_field(part, "text") for part in summary)
    return "".join(
        _str_field(part, "text")
        for part in _list(item.get("content"))
        if is_object(part) and part.get("type") in ("reasoning_text", "text")
    )


def _str_field(value: object, key: str) -> str:
    if is_object(value):
        field = value.get(key)
        if isinstance(field, str):
            return field
    return ""


def _decode_reasoning(item: Mapping[str, Any]) -> Thinking:
    signature = item.get("encrypted_content")
    item_id = item.get("id")
    return Thinking(
        _reasoning_text(item),
        signature=signature if isinstance(signature, str) and signature else None,
        provider=PROVIDER,
        id=item_id if isinstance(item_id, str) else None,
    )


def _count(value: object) -> int:
    if type(value) is int:  # the usual case, first
        return value if value > 0 else 0
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _decode_usage(usage: object) -> Usage:
    if not is_object(usage):
        return Usage()
    inputs = usage.get("input_tokens_details")
    outputs = usage.get("output_tokens_details")
    inputs = inputs if is_object(inputs) else {}
    outputs = outputs if is_object(outputs) else {}
    return Usage(
        input_tokens=_count(usage.get("input_tokens")),
        output_tokens=_count(usage.get("output_tokens")),
        cache_read_tokens=_count(inputs.get("cached_tokens")),
        cache_write_tokens=_count(inputs.get("cache_write_tokens")),
        reasoning_tokens=_count(outputs.get("reasoning_tokens")),
    )


# -- errors ----------------------------------------------------------------------------------


def _error_fields(value: object) -> tuple[str | None, str | None, str | None]:
    """(type, message, code) of an error object, a ``{"error": ...}`` wrapper or a string."""
    if isinstance(value, str):
        return None, value or None, None
    if not is_object(value):
        return None, None, None
    inner = value.get("error")
    if isinstance(inner, str):
        return None, inner or None, None
    if is_object(inner):
        value = inner
    kind, message, code = value.get("type"), value.get("message"), value.get("code")
    if kind == "error":  # the event's own type, not the error's
        kind = None
    return (
        kind if isinstance(kind, str) and kind else None,
        message if isinstance(message, str) and message else None,
        code if isinstance(code, str) and code else None,
    )


def _error_from_object(
    value: object,
    *,
    status: int | None,
    body: bytes | str,
    headers: Mapping[str, str] | None = None,
) -> ProviderError:
    kind, message, code = _error_fields(value)
    return error_from_status(
        provider=PROVIDER,
        status=status,
        headers=headers,
        body=body,
        error_type=kind,
        message=message,
        code=code,
    )


def decode_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    """The typed error for an HTTP error reply (header names lower-case).

    >>> decode_error(429, {"retry-after": "2"},
    ...              b'{"error": {"message": "Slow down", "type": "rate_limit_error"}}')
    RateLimitError('openai: HTTP 429 rate_limit_error: Slow down')
    """
    try:
        value: object = json.loads(body) if body.strip() else None
    except (ValueError, RecursionError):
        value = None
    return _error_from_object(value, status=status, body=body, headers=headers)


# -- streaming -------------------------------------------------------------------------------


@attrs.define
class _Slot:
    """What the stream said so far about the output item at one ``output_index``."""

    item: dict[str, Any] | None = None  # output_item.added, then replaced by output_item.done
    done: bool = False
    texts: dict[int, list[str]] = attrs.field(factory=dict)  # content_index -> text pieces
    arguments: list[str] = attrs.field(factory=list)
    tool_index: int | None = None
    thinking: list[str] = attrs.field(factory=list)
    summary_index: int | None = None  # the summary part the thinking pieces are in


def _catch_up(pieces: list[str], final: str) -> str:
    """The part of ``final`` the ``pieces`` streamed so far lack (``""`` if none or diverged).

    Joins the pieces once and keeps the joined string, so repeated calls stay linear.
    """
    streamed = pieces[0] if len(pieces) == 1 else "".join(pieces)
    if len(final) > len(streamed) and final.startswith(streamed):
        pieces[:] = [final]
        return final[len(streamed) :]
    pieces[:] = [streamed] if streamed else []
    return ""


class StreamDecoder:
    """Decodes one streamed reply: feed it every SSE event, then call ``finish``.

    >>> decoder = StreamDecoder()
    >>> decoder.feed(SSEEvent('{"type": "response.output_text.delta", "output_index": 0, '
    ...                       '"content_index": 0, "delta": "Hi"}'))
    [TextDelta(text='Hi', seq=0, turn=0)]
    >>> decoder.feed(SSEEvent('{"type": "response.completed", "response": {"status": '
    ...                       '"completed", "output": []}}'))
    []
    >>> decoder.finish().message.text
    'Hi'
    """

    def __init__(self) -> None:
        self._slots: dict[int, _Slot] = {}
        self._by_item_id: dict[str, int] = {}  # item id -> output_index
        self._tool_count = 0
        self._response: dict[str, Any] | None = None  # the final response, once it came
        self._model: str | None = None
        self._completion: Completion | None = None

    def feed(self, event: SSEEvent) -> list[Delta]:
        """Decode one SSE event into the deltas it carries.

        Raises the typed ``ProviderError`` for ``error`` and ``response.failed`` events and
        ``ProtocolError`` for an event that is not a JSON object.
        """
        # The hot path: one call per streamed token. ``data.isspace()`` stops at the first
        # non-space character, where ``data.strip()`` would copy the whole event.
        data = event.data
        if not data or data == "[DONE]" or data.isspace():
            return []
        try:
            payload = loads(data)  # json.loads, faster
        except (ValueError, RecursionError):
            payload = None
        if type(payload) is not dict:  # _load_object raises the typed error
            payload = _load_object(data, f"{event.event or 'stream'} event")
        kind = payload.get("type")
        if type(kind) is not str:
            kind = event.event
        if self._response is not None:
            return []  # nothing after the end marker counts
        if kind == "response.output_text.delta":
            # The most frequent event, inlined (``_text_delta`` does the same).
            delta = payload.get("delta")
            if type(delta) is not str or not delta:
                return []
            index = payload.get("output_index")
            slot = self._slots.get(index) if type(index) is int else None
            if slot is None:
                slot = self._slot(payload)
            index = payload.get("content_index")
            key = index if isinstance(index, int) else 0
            pieces = slot.texts.get(key)
            if pieces is None:
                slot.texts[key] = [delta]
            else:
                pieces.append(delta)
            return [TextDelta(text=delta)]
        if kind == "response.function_call_arguments.delta":
            return self._arguments_delta(payload)
        handler = _HANDLERS.get(kind)
        if handler is not None:
            return handler(self, payload)
        if kind == "response.failed":
            response = payload.get("response")
            raise _error_from_object(
                response.get("error") if is_object(response) else payload,
                status=None,
                body=data,
            )
        if kind == "error":
            raise _error_from_object(payload, status=None, body=data)
        if kind in ("response.created", "response.in_progress", "response.queued"):
            response = payload.get("response")
            if is_object(response) and isinstance(response.get("model"), str):
                self._model = response["model"]
        return []  # content_part.*, *.done echoes, annotations, server tool progress...

    def finish(self) -> Completion:
        """The completion, once the stream has ended.

        Raises ``ProtocolError`` if the stream ended before ``response.completed`` (or
        ``response.incomplete``).
        """
        if self._completion is not None:
            return self._completion
        if self._response is None:
            raise _protocol(
                "stream ended before response.completed (the reply is incomplete; the "
                "connection was probably cut)"
            )
        output = self._response.get("output")
        if not isinstance(output, list) or not output:
            output = self._streamed_output()
        completion = _completion(self._response, output)
        if completion.model is None and self._model is not None:
            completion = attrs.evolve(completion, model=self._model)
        self._completion = completion
        return completion

    # -- event handlers ----------------------------------------------------------------------

    def _slot(self, data: Mapping[str, Any]) -> _Slot:
        index = data.get("output_index")
        if not isinstance(index, int):
            item_id = data.get("item_id")
            found = self._by_item_id.get(item_id) if isinstance(item_id, str) else None
            index = found if found is not None else -1
        slot = self._slots.get(index)
        if slot is None:
            slot = self._slots[index] = _Slot()
        return slot

    def _text_delta(self, data: Mapping[str, Any]) -> list[Delta]:
        delta = data.get("delta")
        if not isinstance(delta, str) or not delta:
            return []
        index = data.get("content_index")
        self._slot(data).texts.setdefault(index if isinstance(index, int) else 0, []).append(delta)
        return [TextDelta(text=delta)]

    def _start_call(self, slot: _Slot, item: Mapping[str, Any]) -> list[Delta]:
        if slot.tool_index is not None:
            return []
        call_id = item.get("call_id")
        if not isinstance(call_id, str):
            call_id = item.get("id")
        call_id = call_id if isinstance(call_id, str) else ""
        slot.tool_index = self._tool_count
        self._tool_count += 1
        name = item.get("name")
        return [
            ToolCallStarted(
                index=slot.tool_index, id=call_id, name=name if isinstance(name, str) else ""
            )
        ]

    def _arguments_delta(self, data: Mapping[str, Any]) -> list[Delta]:
        delta = data.get("delta")
        if not isinstance(delta, str) or not delta:
            return []
        slot = self._slot(data)
        deltas: list[Delta] = []
        if slot.tool_index is None:  # no output_item.added came for it
            deltas += self._start_call(slot, slot.item or {})
        slot.arguments.append(delta)
        assert slot.tool_index is not None
        deltas.append(ToolCallDelta(index=slot.tool_index, arguments=delta))
        return deltas

    def _arguments_done(self, data: Mapping[str, Any]) -> list[Delta]:
        arguments = data.get("arguments")
        slot = self._slot(data)
        if not isinstance(arguments, str):
            return []
        deltas: list[Delta] = []
        if slot.tool_index is None:
            deltas += self._start_call(slot, slot.item or data)
        missing = _catch_up(slot.arguments, arguments)
        if missing:
            assert slot.tool_index is not None
            deltas.append(ToolCallDelta(index=slot.tool_index, arguments=missing))
        return deltas

    def _summary_delta(self, data: Mapping[str, Any]) -> list[Delta]:
        delta = data.get("delta")
        if not isinstance(delta, str) or not delta:
            return []
        slot = self._slot(data)
        index = data.get("summary_index")
        index = index if isinstance(index, int) else 0
        current = 0 if slot.summary_index is None else slot.summary_index
        text = delta
        if index > current:  # a new summary part: the final text joins parts with "\n\n"
            text = "\n\n" * (index - current) + delta
        slot.summary_index = max(index, current)
        slot.thinking.append(text)
        return [ThinkingDelta(text=text)]

    def _reasoning_text_delta(self, data: Mapping[str, Any]) -> list[Delta]:
        delta = data.get("delta")
        if not isinstance(delta, str) or not delta:
            return []
        self._slot(data).thinking.append(delta)
        return [ThinkingDelta(text=delta)]

    def _item(self, data: Mapping[str, Any], *, done: bool) -> list[Delta]:
        item = data.get("item")
        if not is_object(item):
            return []
        slot = self._slot(data)
        index = data.get("output_index")
        item_id = item.get("id")
        if isinstance(item_id, str) and isinstance(index, int):
            self._by_item_id[item_id] = index
        if slot.done and not done:
            return []
        slot.item = dict(item)
        slot.done = done
        if item.get("type") == "function_call":
            deltas = self._start_call(slot, item)
            if done or item.get("arguments"):
                deltas += self._catch_up_item(slot, item)
            return deltas
        return self._catch_up_item(slot, item) if done else []

    def _catch_up_item(self, slot: _Slot, item: Mapping[str, Any]) -> list[Delta]:
        """Deltas for whatever of a finished ``item`` was not streamed."""
        kind = item.get("type")
        deltas: list[Delta] = []
        if kind == "message":
            for index, part in enumerate(_list(item.get("content"))):
                text, _ = _part_text(part)
                if text:
                    missing = _catch_up(slot.texts.setdefault(index, []), text)
                    if missing:
                        deltas.append(TextDelta(text=missing))
        elif kind == "function_call":
            deltas += self._start_call(slot, item)
            arguments = item.get("arguments")
            if is_object(arguments):
                arguments = json.dumps(arguments, ensure_ascii=False)
            if isinstance(arguments, str):
                missing = _catch_up(slot.arguments, arguments)
                if missing:
                    assert slot.tool_index is not None
                    deltas.append(ToolCallDelta(index=slot.tool_index, arguments=missing))
        elif kind == "reasoning":
            missing = _catch_up(slot.thinking, _reasoning_text(item))
            if missing:
                deltas.append(ThinkingDelta(text=missing))
        return deltas

    def _end(self, data: Mapping[str, Any]) -> list[Delta]:
        response = data.get("response")
        if not is_object(response):
            raise _protocol(f"{data.get('type')} event without a response object")
        self._response = dict(response)
        if data.get("type") == "response.incomplete" and "status" not in response:
            self._response["status"] = "incomplete"
        output = response.get("output")
        deltas: list[Delta] = []
        if isinstance(output, list):
            for index, item in enumerate(output):
                if is_object(item):
                    deltas += self._catch_up_item(self._final_slot(index, item), item)
        return deltas

    def _final_slot(self, index: int, item: Mapping[str, Any]) -> _Slot:
        """The streamed slot of the final response's ``output[index]``: the one at that
        ``output_index``, else one that streamed the same item id or call id, else a new one."""
        slot = self._slots.get(index)
        if slot is not None and (slot.item is None or slot.item.get("type") == item.get("type")):
            return slot
        for key in ("id", "call_id"):
            value = item.get(key)
            if isinstance(value, str) and value:
                for other in self._slots.values():
                    if other.item is not None and other.item.get(key) == value:
                        return other
        slot = self._slots[-1000 - index] = _Slot()  # never streamed: kept out of the fallback
        return slot

    def _streamed_output(self) -> list[dict[str, Any]]:
        """The output items as streamed, for a final response that came without them."""
        output: list[dict[str, Any]] = []
        for index in sorted(i for i in self._slots if i >= 0):
            slot = self._slots[index]
            item = dict(slot.item) if slot.item is not None else None
            if slot.done and item is not None:
                output.append(item)
                continue
            kind = item.get("type") if item is not None else None
            if kind == "function_call" or (kind is None and slot.arguments):
                item = item or {"type": "function_call"}
                item["arguments"] = "".join(slot.arguments)
            elif kind == "reasoning" or (kind is None and slot.thinking):
                item = item or {"type": "reasoning"}
                text = "".join(slot.thinking)
                item["summary"] = [{"type": "summary_text", "text": text}] if text else []
                item.pop("content", None)
            elif kind == "message" or (kind is None and slot.texts):
                item = item or {"type": "message", "role": "assistant"}
                item["content"] = [
                    {"type": "output_text", "text": "".join(slot.texts[i])}
                    for i in sorted(slot.texts)
                ]
            if item is not None:
                output.append(item)
        return output


# The events ``feed`` hands to a method (the rarer ones; the text and argument deltas are
# tested first). A table instead of a chain of comparisons: the events that carry nothing (code
# interpreter progress, ``*.done`` echoes) then cost one lookup, not a dozen string comparisons.
_HANDLERS: Final[dict[str, Callable[[StreamDecoder, dict[str, Any]], list[Delta]]]] = {
    "response.refusal.delta": StreamDecoder._text_delta,
    "response.reasoning_summary_text.delta": StreamDecoder._summary_delta,
    "response.reasoning_text.delta": StreamDecoder._reasoning_text_delta,
    "response.output_item.added": lambda decoder, data: decoder._item(data, done=False),
    "response.output_item.done": lambda decoder, data: decoder._item(data, done=True),
    "response.function_call_arguments.done": StreamDecoder._arguments_done,
    "response.completed": StreamDecoder._end,
    "response.incomplete": StreamDecoder._end,
}


# -- the other side: reading a request (fake servers, tests) ---------------------------------


def decode_request(body: Mapping[str, Any]) -> Request:
    """The conversation in a Responses request body: the inverse of ``encode_request``.

    ``instructions`` (or ``system``/``developer`` input items, joined with blank lines) become
    the system prompt; consecutive items of one role become one message (``function_call_output``
    items are the user's, reasoning/function calls/other typed items the assistant's); an output
    starting with ``ERROR_PREFIX`` is an error result; function tools become ``ToolSpec``. Other
    body fields are not read. Raises ``ProtocolError`` for input it cannot read.

    >>> decode_request({"instructions": "Be brief.", "input": "hi"}).messages
    (Message(role='user', content=(Text(text='hi'),)),)
    """
    raw_input = body.get("input", [])
    if isinstance(raw_input, str):
        raw_input = [{"role": "user", "content": raw_input}]
    if not isinstance(raw_input, list):
        raise _protocol("'input' is neither a string nor a list")
    system: list[str] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        system.append(instructions)
    messages: list[Message] = []
    role: str | None = None
    blocks: list[Block] = []
    for item in raw_input:
        if not is_object(item):
            raise _protocol(f"an input item is not an object: {item!r:.200}")
        item_role, item_blocks = _decode_input_item(item, system)
        if not item_blocks:
            continue
        if item_role != role and blocks:
            messages.append(Message(role, blocks))  # type: ignore[arg-type]
            blocks = []
        role = item_role
        blocks += item_blocks
    if blocks:
        messages.append(Message(role, blocks))  # type: ignore[arg-type]
    tools = tuple(
        ToolSpec(tool["name"], tool.get("description") or "", tool.get("parameters") or {})
        for tool in _list(body.get("tools"))
        if is_object(tool) and tool.get("type") == "function"
    )
    return Request(messages=tuple(messages), system_prompt="\n\n".join(system) or None, tools=tools)


def _decode_input_item(item: Mapping[str, Any], system: list[str]) -> tuple[str, list[Block]]:
    kind = item.get("type")
    role = item.get("role")
    if kind == "message" or (kind is None and isinstance(role, str)):
        content = item.get("content")
        parts = [{"type": "input_text", "text": content}] if isinstance(content, str) else content
        if role in ("system", "developer"):
            system.append("".join(_str_field(part, "text") for part in _list(parts)))
            return "user", []
        if role == "assistant":
            blocks, _ = _decode_output([{"type": "message", "content": parts}], truncated=False)
            return "assistant", blocks
        return "user", [_decode_user_part(part) for part in _list(parts)]
    if kind == "function_call_output":
        call_id = item.get("call_id")
        output = item.get("output")
        if isinstance(output, list):
            output = "".join(_str_field(part, "text") for part in output)
        if not isinstance(call_id, str) or not isinstance(output, str):
            raise _protocol(f"a function_call_output without call_id or output: {item!r:.200}")
        if output.startswith(ERROR_PREFIX):
            return "user", [ToolResult(call_id, output[len(ERROR_PREFIX) :], is_error=True)]
        return "user", [ToolResult(call_id, output)]
    if kind in _ITEM_TYPES:
        blocks, _ = _decode_output([item], truncated=False)
        return "assistant", blocks
    return "assistant", [UnknownBlock(data=dict(item), provider=PROVIDER)]


def _decode_user_part(part: object) -> Block:
    if is_object(part):
        kind = part.get("type")
        if kind in ("input_text", "text", "output_text"):
            return Text(_str_field(part, "text"))
        if kind == "input_image":
            url = part.get("image_url")
            if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
                media_type, _, data = url[len("data:") :].partition(";base64,")
                return Image(media_type=media_type, data=data)
        # A file, an image by URL...: kept as a user message item of its own, re-sent as is.
        return UnknownBlock(data={"role": "user", "content": [dict(part)]}, provider=PROVIDER)
    raise _protocol(f"a message content part is not an object: {part!r:.200}")
