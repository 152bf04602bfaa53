"""Sans-IO codec for OpenAI-compatible Chat Completions (``POST /v1/chat/completions``).

One codec for every host that speaks the chat format: OpenAI, Ollama, OpenRouter, DeepSeek, Groq,
vLLM, Mistral, Cerebras, HuggingFace's router, z.ai, Gemini's OpenAI-compatible endpoint... It
encodes a :class:`~alloy.Request` into an :class:`~alloy._codec._wire.HttpRequest` and decodes a
JSON reply (:func:`decode_response`), a streamed reply (:class:`StreamDecoder`) or an error reply
(:func:`decode_error`). It does no I/O and imports neither trio nor an HTTP client.

Request (:func:`encode_request`)
--------------------------------
``POST {chat_path}``; ``Authorization: Bearer <api_key>`` only when a key is set, then
``extra_headers``. The body, in this order: ``model``, ``messages``, ``tools`` (only when there
are tools, each ``{"type": "function", "function": {"name", "description", "parameters"}}``, with
``tool_choice`` and ``parallel_tool_calls`` when set), ``max_tokens`` (only when set), ``stream``,
``stream_options: {"include_usage": true}`` (when streaming and ``include_usage``), then
``extra_body``, then ``request.options`` merged last (``temperature``, ``top_p``,
``max_completion_tokens``, ``response_format``, ``reasoning_effort``...: any body field). A
``tools`` list given there is appended to the function tools instead of replacing them: that is
how a host's own tools are asked for (OpenRouter's ``{"type": "openrouter:web_search"}``).

Messages:

- the system prompt is the first message, ``{"role": "system", "content": prompt}``;
- a user message becomes one ``{"role": "tool", "tool_call_id", "content"}`` message per
  ``ToolResult`` (in order, first: they must follow the assistant's ``tool_calls``), then one
  ``{"role": "user"}`` message for its text and images: a string when it holds only text (the
  ``Text`` blocks joined with ``""``, as ``Message.text`` joins them), otherwise a list of parts,
  ``{"type": "text"}`` and ``{"type": "image_url", "image_url": {"url": "data:<type>;base64,..."}}``;
- the chat format has no error flag on tool results: an ``is_error`` result is sent as
  ``"Error: <content>"`` so the model still sees that the call failed;
- an assistant message becomes ``{"role": "assistant", "content": <text or null>,
  "tool_calls": [{"id", "type": "function", "function": {"name", "arguments": <JSON string>}}]}``;
- reasoning: ``Thinking`` blocks this codec decoded (``provider == "chat"``, or no provider and no
  signature) are sent back as ``reasoning_content`` only when ``ChatSettings.send_reasoning`` is
  on; then every assistant message carries the field (``""`` when it had no reasoning). DeepSeek's
  thinking mode requires it between tool calls of one turn; most other hosts reject or ignore it,
  so it is off by default. Reasoning signed by another wire format (Anthropic, Responses) and
  ``RedactedThinking`` are never sent: the chat format cannot carry them;
- ``UnknownBlock`` with ``provider == "chat"`` is re-sent verbatim as a content part (an
  ``input_audio`` or ``file`` part, an image given by URL); then the message's content is a list of
  parts. ``UnknownBlock`` from another provider, ``ServerToolCall`` and ``ServerToolResult`` are
  dropped: no chat host can run or replay another API's server tools;
- a message left with nothing to send (say, only reasoning) is skipped.

Reply (:func:`decode_response`, :class:`StreamDecoder`)
-------------------------------------------------------
The first choice (``index`` 0) is read; other choices (``n > 1``) are ignored.

- ``content``: a string, or Mistral's list of parts where ``{"type": "text"}`` is text and
  ``{"type": "thinking", "thinking": [...]}`` is reasoning (other parts are kept as
  ``UnknownBlock(provider="chat")``);
- ``reasoning_content`` (DeepSeek, z.ai) or ``reasoning`` (OpenRouter, Groq, Ollama, Cerebras)
  becomes ``Thinking(text, provider="chat")``. ``<think>`` tags inside ``content`` are left as
  text, as the hosts sent them. OpenRouter's ``reasoning_details`` (signed reasoning of the
  upstream model), Gemini's ``thought_signature`` and ``annotations`` are not kept;
- ``refusal`` (OpenAI) becomes text and the stop reason ``refusal``;
- ``tool_calls`` become ``ToolCall`` blocks: ``arguments`` is a JSON string (``""`` or ``null``
  means ``{}``; a host that sends an object is taken as is). A call without an id (Gemini sends
  ``""``) gets ``"call_<reply id>_<position>"`` so its result can still be matched to it. Legacy
  ``function_call`` is read as one tool call;
- arguments that are not a JSON object raise ``ProtocolError`` naming the tool, unless the reply
  was cut off (``finish_reason: "length"``): then the call is kept with ``{"_raw": "<text>"}`` and
  the run answers it with an error result instead of running it.
- the blocks come in this order: reasoning and text as they arrived (adjacent pieces of one kind
  joined), then the tool calls by position.

Stop reasons: ``stop`` -> ``end_turn``; ``tool_calls``/``function_call`` -> ``tool_use``;
``length``/``model_length`` -> ``max_tokens``; ``content_filter`` -> ``refusal``. Tool calls are
honoured whatever the host says: a reply with tool calls and ``finish_reason: "stop"`` (or none,
or an unknown value) is ``tool_use``, and ``tool_calls`` without any call is ``end_turn``. vLLM's
string ``stop_reason`` (the stop string that ended the reply) gives ``stop_sequence``. Unknown
values map to ``end_turn``: the reply is kept, never lost to an unexpected word.

Usage (``Usage``): ``input_tokens`` = ``prompt_tokens`` (the chat format counts cached tokens in
it); ``output_tokens`` = ``completion_tokens``; ``cache_read_tokens`` =
``prompt_tokens_details.cached_tokens``, else DeepSeek's ``prompt_cache_hit_tokens``;
``cache_write_tokens`` = ``prompt_tokens_details.cache_write_tokens`` (OpenRouter);
``reasoning_tokens`` = ``completion_tokens_details.reasoning_tokens``. Missing counts are 0. A
stream's usage is the last ``usage`` object on the wire, wherever it is: in the final
``choices: []`` chunk, in the finish chunk, in a chunk after it, or in Groq's ``x_groq.usage``.

Streams: ``data:`` chunks end with ``data: [DONE]``. ``delta.content`` gives ``TextDelta``;
``delta.reasoning_content``/``delta.reasoning`` give ``ThinkingDelta``; ``delta.tool_calls`` are
assembled by ``index``, so parallel calls may interleave. A call's ``ToolCallStarted`` comes when
its name is known (fragments that came earlier follow it at once); a repeated or ``null`` id or
name never replaces a known one; a *different* id at a known index starts a new call (hosts that
send every call at index 0); deltas without ``index`` continue the last call unless they bring a
new id. ``ToolCallStarted.index`` is the call's position in the turn (0, 1, ...), whatever
the wire's indexes were. Argument fragments are kept in a list and joined once at the end.

The end of a stream is ``[DONE]`` or, for hosts that omit it, a chunk with a ``finish_reason``:
:meth:`StreamDecoder.finish` raises ``ProtocolError`` ("stream ended before the reply was
complete") only when neither came. An ``error`` object in a chunk, or Groq's ``event: error``
(sent with HTTP 200 after partial output), raises the typed error at once.

Errors (:func:`decode_error`): ``{"error": {"message", "type", "code"}}``, ``{"error": "text"}``,
``{"message": ...}``, ``{"detail": ...}``, a list of those (Gemini), or any non-JSON body, are
classified by :func:`~alloy._codec._wire.error_from_status`. Gemini's ``status``
(``"RESOURCE_EXHAUSTED"``) stands in for a missing ``type``; OpenRouter's ``metadata.raw`` is
added to the message. An error inside a 200 reply or a stream has no HTTP status of its own; when
its object names one (OpenRouter ``"code": 429``, Groq ``"status_code": 400``) it is classified as
that status, so a rate limit stays a ``RateLimitError``.

For fake servers and tests, the other direction too: :func:`decode_request` turns a received
request body back into a ``Request``. Replies as a chat host sends them are encoded by
``alloy.testing._wire_encode.encode_chat``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn

import attrs

from .._errors import ProtocolError, ProviderError
from .._events import Delta, TextDelta, ThinkingDelta, ToolCallDelta, ToolCallStarted
from .._messages import (
    Block,
    Image,
    Message,
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
from ._wire import HttpRequest, Memo, error_from_status, is_object, loads

__all__ = [
    "PROVIDER",
    "ChatSettings",
    "StreamDecoder",
    "decode_error",
    "decode_request",
    "decode_response",
    "encode_request",
]

PROVIDER = "chat"
"""The ``provider`` of this codec's errors and of the ``Thinking``/``UnknownBlock`` it decodes."""

_ERROR_PREFIX = "Error: "

_FINISH_REASONS: dict[str, StopReason] = {
    "stop": StopReason.END_TURN,
    "eos": StopReason.END_TURN,
    "end_turn": StopReason.END_TURN,
    "tool_calls": StopReason.TOOL_USE,
    "function_call": StopReason.TOOL_USE,
    "tool_use": StopReason.TOOL_USE,
    "length": StopReason.MAX_TOKENS,
    "max_tokens": StopReason.MAX_TOKENS,
    "model_length": StopReason.MAX_TOKENS,
    "content_filter": StopReason.REFUSAL,
    "refusal": StopReason.REFUSAL,
    "stop_sequence": StopReason.STOP_SEQUENCE,
}

# -- settings ------------------------------------------------------------------------------------


def _header_pairs(value: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((str(name), str(item)) for name, item in value)


@attrs.frozen(kw_only=True)
class ChatSettings:
    """The provider options that shape a chat request.

    - ``model``: the host's model name.
    - ``api_key``: sent as ``Authorization: Bearer <key>``; ``None`` (a local Ollama or vLLM)
      sends no ``Authorization`` header.
    - ``chat_path``: the path of the endpoint (Gemini: ``"/v1beta/openai/chat/completions"``,
      OpenRouter: ``"/api/v1/chat/completions"``, DeepSeek: ``"/chat/completions"``).
    - ``max_tokens``: the output limit, sent only when set (OpenAI's reasoning models want
      ``max_completion_tokens`` instead: pass it in ``Request.options``).
    - ``include_usage``: ask for usage in streams (``stream_options``); turn it off for a host
      that rejects ``stream_options``.
    - ``send_reasoning``: send this codec's ``Thinking`` back as ``reasoning_content``
      (DeepSeek's thinking mode with tools needs it).
    - ``extra_headers``: more headers, after ``Authorization``.
    - ``tool_choice``, ``parallel_tool_calls``: sent when set and the request has tools.
    - ``extra_body``: more body fields, merged before ``Request.options``.

    >>> ChatSettings(model="llama3.2").chat_path
    '/v1/chat/completions'
    >>> ChatSettings(model="deepseek-reasoner", api_key="sk-...", send_reasoning=True).send_reasoning
    True
    """

    model: str
    api_key: str | None = None
    chat_path: str = "/v1/chat/completions"
    max_tokens: int | None = None
    include_usage: bool = True
    send_reasoning: bool = False
    extra_headers: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_header_pairs)
    tool_choice: str | Mapping[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    extra_body: Mapping[str, Any] | None = None


# -- encoding ------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """``value`` as dicts and lists only (mapping proxies and tuples would not serialise)."""
    if is_object(value):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _json_default(value: object) -> Any:
    if is_object(value):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _sends_reasoning(block: Thinking) -> bool:
    """Whether a thinking block is plain chat reasoning (not another API's signed reasoning)."""
    if block.provider == PROVIDER:
        return True
    return block.provider is None and block.signature is None


def _image_part(block: Image) -> dict[str, Any]:
    return {
        "type": "image_url",
        "image_url": {"url": f"data:{block.media_type};base64,{block.data}"},
    }


def _tool_call_wire(block: ToolCall) -> dict[str, Any]:
    return {
        "id": block.id,
        "type": "function",
        "function": {"name": block.name, "arguments": _dumps(block.arguments)},
    }


def _encode_user(message: Message) -> list[dict[str, Any]]:
    wire: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    only_text = True
    for block in message.content:
        kind = type(block)
        if kind is ToolResult:
            assert isinstance(block, ToolResult)
            result = _ERROR_PREFIX + block.content if block.is_error else block.content
            wire.append({"role": "tool", "tool_call_id": block.call_id, "content": result})
        elif kind is Text:
            assert isinstance(block, Text)
            if block.text:
                parts.append({"type": "text", "text": block.text})
        elif kind is Image:
            assert isinstance(block, Image)
            parts.append(_image_part(block))
            only_text = False
        elif kind is UnknownBlock:
            assert isinstance(block, UnknownBlock)
            if block.provider == PROVIDER:
                parts.append(_plain(block.data))
                only_text = False
        # Thinking, tool calls and server tool blocks have no place in a user message.
    if parts:
        content: Any = "".join(part["text"] for part in parts) if only_text else parts
        wire.append({"role": "user", "content": content})
    return wire


def _encode_assistant(message: Message, *, send_reasoning: bool) -> dict[str, Any] | None:
    texts: list[str] = []
    parts: list[dict[str, Any]] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    has_unknown = False
    for block in message.content:
        kind = type(block)
        if kind is Text:
            assert isinstance(block, Text)
            if block.text:
                texts.append(block.text)
                parts.append({"type": "text", "text": block.text})
        elif kind is ToolCall:
            assert isinstance(block, ToolCall)
            calls.append(_tool_call_wire(block))
        elif kind is Thinking:
            assert isinstance(block, Thinking)
            if _sends_reasoning(block):
                reasoning.append(block.text)
        elif kind is UnknownBlock:
            assert isinstance(block, UnknownBlock)
            if block.provider == PROVIDER:
                parts.append(_plain(block.data))
                has_unknown = True
        # RedactedThinking, ServerToolCall, ServerToolResult: the chat format cannot carry them.
    content: Any = parts if has_unknown else ("".join(texts) or None)
    if content is None and not calls:
        return None
    wire: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        wire["tool_calls"] = calls
    if send_reasoning:
        wire["reasoning_content"] = "".join(reasoning)
    return wire


def _encode_messages(request: Request, settings: ChatSettings) -> list[dict[str, Any]]:
    wire: list[dict[str, Any]] = []
    if request.system_prompt:
        wire.append({"role": "system", "content": request.system_prompt})
    # Messages are encoded again on every turn: remembering their wire forms saved a few µs a
    # turn but kept a second copy of every agent's whole history alive (2.5 KiB a
    # conversation at 1,000 agents); tools, shared by every conversation, are remembered.
    for message in request.messages:
        if message.role == "assistant":
            encoded = _encode_assistant(message, send_reasoning=settings.send_reasoning)
            if encoded is not None:
                wire.append(encoded)
        else:
            wire += _encode_user(message)
    return wire


def _tool_wire(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": _plain(tool.input_schema),
        },
    }


# A tool's wire form is built (its schema deep-copied) once per ToolSpec, not on every turn.
_tool_wire_memo: Memo[ToolSpec, dict[str, Any]] = Memo(_tool_wire)


def _merge(body: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Merge extra body fields; a ``tools`` list is added after the function tools."""
    for key, value in extra.items():
        if key == "tools" and isinstance(value, list | tuple):
            body["tools"] = [*body.get("tools", ()), *_plain(value)]
        else:
            body[key] = _plain(value)


def encode_request(request: Request, settings: ChatSettings, *, stream: bool) -> HttpRequest:
    """The chat completions request for ``request``.

    ``request.options`` is merged last into the body, so any body field can be set per run
    (``{"temperature": 0.2, "top_p": 0.9, "response_format": {...}}``) and overrides the
    settings. One exception: a ``tools`` list (in ``extra_body`` or the options) is added after
    the function tools, for a host's own tools (OpenRouter's
    ``{"type": "openrouter:web_search"}``).

    The body's message and tool dicts may be shared with a cache (a conversation's next turn
    encodes only its new messages): do not mutate them.

    >>> http = encode_request(Request(messages=(Message.user("hi"),), system_prompt="Be brief."),
    ...                       ChatSettings(model="llama3.2"), stream=True)
    >>> http.path, http.body["messages"][0]
    ('/v1/chat/completions', {'role': 'system', 'content': 'Be brief.'})
    >>> http.body["stream_options"]
    {'include_usage': True}
    """
    body: dict[str, Any] = {
        "model": settings.model,
        "messages": _encode_messages(request, settings),
    }
    if request.tools:
        body["tools"] = [_tool_wire_memo(tool) for tool in request.tools]
        if settings.tool_choice is not None:
            body["tool_choice"] = _plain(settings.tool_choice)
        if settings.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = settings.parallel_tool_calls
    if settings.max_tokens is not None:
        body["max_tokens"] = settings.max_tokens
    body["stream"] = stream
    if stream and settings.include_usage:
        body["stream_options"] = {"include_usage": True}
    for extra in (settings.extra_body, request.options):
        if extra:
            _merge(body, extra)
    headers: list[tuple[str, str]] = []
    if settings.api_key:
        headers.append(("authorization", f"Bearer {settings.api_key}"))
    headers.extend(settings.extra_headers)
    return HttpRequest(path=settings.chat_path, headers=tuple(headers), body=body, stream=stream)


# -- shared decoding helpers -----------------------------------------------------------------------


def _protocol_error(message: str, body: str | None = None) -> ProtocolError:
    return ProtocolError(f"{PROVIDER}: {message}", provider=PROVIDER, body=body)


def _count(value: object) -> int:
    """A token count from the wire: a non-negative int, anything else is 0."""
    if type(value) is int:  # the usual case, first
        return value if value > 0 else 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(int(value), 0)


def _usage(raw: Mapping[str, Any]) -> Usage:
    prompt_details = raw.get("prompt_tokens_details")
    if not is_object(prompt_details):
        prompt_details = {}
    completion_details = raw.get("completion_tokens_details")
    if not is_object(completion_details):
        completion_details = {}
    cached = prompt_details.get("cached_tokens")
    if cached is None:
        cached = raw.get("prompt_cache_hit_tokens")  # DeepSeek
    if cached is None:
        cached = raw.get("cached_tokens")  # HuggingFace's router
    return Usage(
        input_tokens=_count(raw.get("prompt_tokens")),
        output_tokens=_count(raw.get("completion_tokens")),
        cache_read_tokens=_count(cached),
        cache_write_tokens=_count(prompt_details.get("cache_write_tokens")),
        reasoning_tokens=_count(completion_details.get("reasoning_tokens")),
    )


def _stop_reason(
    finish_reason: object, *, has_tool_calls: bool, refused: bool, stop_string: bool
) -> StopReason:
    mapped = (
        _FINISH_REASONS.get(finish_reason, StopReason.END_TURN)
        if isinstance(finish_reason, str)
        else StopReason.END_TURN
    )
    if mapped is StopReason.TOOL_USE and not has_tool_calls:
        mapped = StopReason.END_TURN
    if mapped is StopReason.END_TURN:
        if has_tool_calls:
            return StopReason.TOOL_USE
        if refused:
            return StopReason.REFUSAL
        if stop_string:
            return StopReason.STOP_SEQUENCE
    return mapped


def _is_truncated(finish_reason: object) -> bool:
    return isinstance(finish_reason, str) and _FINISH_REASONS.get(finish_reason) is (
        StopReason.MAX_TOKENS
    )


def _synthetic_id(response_id: str | None, position: int) -> str:
    return f"call_{response_id}_{position}" if response_id else f"call_{position}"


def _arguments(raw: object, name: str, *, truncated: bool) -> dict[str, Any]:
    """A tool call's arguments from the wire (a JSON string, or an object on some hosts)."""
    if raw is None:
        return {}
    if is_object(raw):
        return dict(raw)
    if not isinstance(raw, str):
        raise _protocol_error(
            f"tool call {name!r}: arguments must be a JSON string, got {type(raw).__name__}"
        )
    if not raw.strip():
        return {}
    try:
        value = loads(raw)
    except ValueError:
        value = raw
    if isinstance(value, dict):
        return value
    if value is None:
        return {}
    if truncated:
        return {"_raw": raw}
    raise _protocol_error(
        f"tool call {name!r}: arguments are not a JSON object: {raw[:200]!r}", body=raw
    )


def _part_text(value: object) -> str:
    """The text of a content part's payload: a string, or a list of text parts (Mistral)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        pieces: list[str] = []
        for item in value:
            if isinstance(item, str):
                pieces.append(item)
            elif is_object(item) and isinstance(item.get("text"), str):
                pieces.append(item["text"])
        return "".join(pieces)
    return ""


def _reasoning_field(holder: Mapping[str, Any]) -> str:
    """``reasoning_content`` (DeepSeek, z.ai) or ``reasoning`` (OpenRouter, Groq, Ollama)."""
    value = holder.get("reasoning_content")
    if isinstance(value, str) and value:
        return value
    value = holder.get("reasoning")
    if isinstance(value, str):
        return value
    return ""


class _Segments:
    """Reasoning, text and unknown content parts in the order they came, adjacent pieces of one
    kind joined at the end. Appending is O(1); the text is joined once."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        # ("text" | "thinking", [pieces]) or ("unknown", UnknownBlock)
        self._items: list[tuple[str, Any]] = []

    def add(self, kind: str, text: str) -> None:
        if not text:
            return
        if self._items and self._items[-1][0] == kind:
            self._items[-1][1].append(text)
        else:
            self._items.append((kind, [text]))

    def add_unknown(self, part: Mapping[str, Any]) -> None:
        self._items.append(("unknown", UnknownBlock(data=dict(part), provider=PROVIDER)))

    def add_content(self, content: object) -> list[Delta]:
        """A ``content`` value: a string or a list of parts. Returns the deltas it makes."""
        deltas: list[Delta] = []
        if isinstance(content, str):
            if content:
                self.add("text", content)
                deltas.append(TextDelta(text=content))
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, str):
                    self.add("text", part)
                    if part:
                        deltas.append(TextDelta(text=part))
                    continue
                if not is_object(part):
                    raise _protocol_error(f"content part is not an object: {part!r}")
                kind = part.get("type")
                if kind == "text":
                    text = _part_text(part.get("text"))
                    self.add("text", text)
                    if text:
                        deltas.append(TextDelta(text=text))
                elif kind == "thinking":
                    text = _part_text(part.get("thinking"))
                    self.add("thinking", text)
                    if text:
                        deltas.append(ThinkingDelta(text=text))
                else:
                    self.add_unknown(part)
        elif content is not None:
            raise _protocol_error(f"content must be a string or a list, got {content!r}")
        return deltas

    def blocks(self) -> list[Block]:
        blocks: list[Block] = []
        for kind, value in self._items:
            if kind == "text":
                blocks.append(Text("".join(value)))
            elif kind == "thinking":
                blocks.append(Thinking("".join(value), provider=PROVIDER))
            else:
                blocks.append(value)
        return blocks


# -- errors --------------------------------------------------------------------------------------


def _optional_str(value: object) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float):
        return str(value)
    return None


def _status_hint(*values: object) -> int | None:
    """An HTTP status named inside an error object (``"code": 429``, ``"status_code": 400``)."""
    for value in values:
        if isinstance(value, bool):
            continue
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int) and 400 <= value <= 599:
            return value
    return None


def _error_fields(payload: object) -> tuple[str | None, str | None, str | None, int | None]:
    """``(type, message, code, status named in the object)`` from an error body of any shape."""
    while isinstance(payload, list) and payload:
        payload = payload[0]
    if isinstance(payload, str):
        return None, payload or None, None, None
    if not is_object(payload):
        return None, None, None, None
    error = payload.get("error", payload)
    if isinstance(error, list) and error:
        return _error_fields(error)
    if isinstance(error, str):
        # {"error": "model not found"} (Ollama, HuggingFace)
        return (
            _optional_str(payload.get("type")),
            error or None,
            _optional_str(payload.get("code")),
            _status_hint(payload.get("code"), payload.get("status_code")),
        )
    if not is_object(error):
        return None, None, None, None
    message = error.get("message")
    if not isinstance(message, str):
        message = error.get("detail")  # FastAPI servers (vLLM): {"detail": ...}
    if isinstance(message, str):
        text: str | None = message or None
    elif message is None:
        text = None
    else:
        text = _dumps(message)
    metadata = error.get("metadata")
    if is_object(metadata) and isinstance(metadata.get("raw"), str) and metadata["raw"]:
        raw = metadata["raw"]
        text = f"{text} ({raw})" if text else raw
    error_type = _optional_str(error.get("type"))
    status_word = error.get("status")
    if error_type is None and isinstance(status_word, str) and not status_word.isdigit():
        error_type = status_word or None  # Gemini: "RESOURCE_EXHAUSTED", "INVALID_ARGUMENT"
    code = _optional_str(error.get("code"))
    hint = _status_hint(error.get("code"), error.get("status_code"), error.get("status"))
    return error_type, text, code, hint


def decode_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    """The typed error for an HTTP error reply (``headers`` with lower-case names).

    >>> error = decode_error(429, {"retry-after": "2"},
    ...                      b'{"error": {"message": "slow down", "type": "rate_limit_exceeded"}}')
    >>> type(error).__name__, error.retry_after, error.error_type
    ('RateLimitError', 2.0, 'rate_limit_exceeded')
    >>> type(decode_error(404, {}, b'{"error": "model \\'llama9\\' not found"}')).__name__
    'NotFoundError'
    """
    try:
        payload: object = json.loads(body)
    except ValueError:
        payload = None
    error_type, message, code, _ = _error_fields(payload)
    return error_from_status(
        provider=PROVIDER,
        status=status,
        headers=headers,
        body=body,
        error_type=error_type,
        message=message,
        code=code,
    )


def _raise_in_band(payload: object, body: str) -> NoReturn:
    """Raise the typed error for an error object inside a 200 reply or a stream."""
    error_type, message, code, hint = _error_fields(payload)
    raise error_from_status(
        provider=PROVIDER,
        status=hint,
        body=body,
        error_type=error_type,
        message=message,
        code=code,
    )


# -- non-streamed replies ------------------------------------------------------------------------


def _first_choice(choices: Sequence[Any]) -> Mapping[str, Any] | None:
    first: Mapping[str, Any] | None = None
    for choice in choices:
        if not is_object(choice):
            raise _protocol_error(f"a choice is not an object: {choice!r}")
        index = choice.get("index", 0)
        if index == 0 or index is None:
            return choice
        if first is None:
            first = choice
    return first


def _tool_call(
    item: object, position: int, response_id: str | None, *, truncated: bool, request: bool
) -> ToolCall:
    if not is_object(item):
        raise _protocol_error(f"a tool call is not an object: {item!r}")
    function = item.get("function")
    if not is_object(function):
        raise _protocol_error(f"tool call {position} has no 'function' object: {item!r}")
    name = function.get("name")
    if not isinstance(name, str) or not (name or request):
        raise _protocol_error(f"tool call {position} has no name: {item!r}")
    call_id = item.get("id")
    if not isinstance(call_id, str):
        call_id = ""
    if not call_id and not request:
        call_id = _synthetic_id(response_id, position)
    arguments = _arguments(function.get("arguments"), name, truncated=truncated)
    return ToolCall(call_id, name, arguments)


def _decode_message(
    message: Mapping[str, Any],
    finish_reason: object,
    response_id: str | None,
    *,
    request: bool = False,
) -> tuple[list[Block], bool]:
    """The blocks of a reply's ``message``, and whether it was a refusal.

    ``request``: the message is part of a request (``decode_request``): ids stay as sent and
    arguments that are not a JSON object are kept as ``{"_raw": ...}``."""
    segments = _Segments()
    segments.add("thinking", _reasoning_field(message))
    segments.add_content(message.get("content"))
    refusal = message.get("refusal")
    refused = isinstance(refusal, str) and bool(refusal)
    if refused:
        assert isinstance(refusal, str)
        segments.add("text", refusal)
    blocks = segments.blocks()
    truncated = request or _is_truncated(finish_reason)
    raw_calls = message.get("tool_calls")
    if isinstance(raw_calls, list) and raw_calls:
        for position, item in enumerate(raw_calls):
            blocks.append(
                _tool_call(item, position, response_id, truncated=truncated, request=request)
            )
    elif raw_calls is not None and not isinstance(raw_calls, list):
        raise _protocol_error(f"'tool_calls' is not a list: {raw_calls!r}")
    else:
        legacy = message.get("function_call")
        if is_object(legacy):
            legacy_call = {"function": legacy}
            blocks.append(
                _tool_call(legacy_call, 0, response_id, truncated=truncated, request=request)
            )
    return blocks, refused


def decode_response(body: bytes) -> Completion:
    """The completion in a non-streamed 200 reply.

    Raises ``ProtocolError`` for a body that is not a chat completion, and the typed error for
    an ``error`` object inside the reply.

    >>> completion = decode_response(b'{"model": "m", "choices": [{"index": 0, "finish_reason":'
    ...     b' "stop", "message": {"role": "assistant", "content": "Hi!"}}],'
    ...     b' "usage": {"prompt_tokens": 9, "completion_tokens": 2}}')
    >>> completion.message.text, completion.stop_reason, completion.usage.input_tokens
    ('Hi!', <StopReason.END_TURN: 'end_turn'>, 9)
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else str(body)
    try:
        payload = loads(text)
    except ValueError as exc:
        raise _protocol_error(f"the reply is not valid JSON ({exc})", body=text) from exc
    if not is_object(payload):
        first = payload[0] if isinstance(payload, list) and payload else None
        if is_object(first) and first.get("error"):
            _raise_in_band(payload, text)
        raise _protocol_error(f"the reply is not a JSON object: {text[:200]!r}", body=text)
    if payload.get("error"):
        _raise_in_band(payload, text)
    choices = payload.get("choices")
    if not isinstance(choices, list):
        raise _protocol_error(f"the reply has no 'choices' list: {text[:200]!r}", body=text)
    raw_usage = payload.get("usage")
    usage = _usage(raw_usage) if is_object(raw_usage) else Usage()
    response_id = payload.get("id") if isinstance(payload.get("id"), str) else None
    model = payload.get("model") if isinstance(payload.get("model"), str) else None
    choice = _first_choice(choices)
    if choice is None:  # a usage-only reply
        return Completion(
            message=Message.assistant(()), stop_reason=StopReason.END_TURN, usage=usage, model=model
        )
    message = choice.get("message")
    if not is_object(message):
        raise _protocol_error(f"the first choice has no 'message' object: {text[:200]!r}", text)
    finish_reason = choice.get("finish_reason")
    blocks, refused = _decode_message(message, finish_reason, response_id)
    stop = _stop_reason(
        finish_reason,
        has_tool_calls=ToolCall in map(type, blocks),
        refused=refused,
        stop_string=isinstance(choice.get("stop_reason"), str),
    )
    return Completion(message=Message.assistant(blocks), stop_reason=stop, usage=usage, model=model)


# -- streamed replies ----------------------------------------------------------------------------


class _CallState:
    __slots__ = ("fragments", "id", "name", "position", "started")

    def __init__(self, position: int) -> None:
        self.position = position
        self.id: str | None = None
        self.name: str | None = None
        self.fragments: list[str] = []
        self.started = False


class StreamDecoder:
    """Decodes one streamed chat reply: :meth:`feed` it every SSE event, then :meth:`finish`.

    >>> from alloy._codec._sse import SSEDecoder
    >>> sse = SSEDecoder().feed(
    ...     b'data: {"choices": [{"index": 0, "delta": {"content": "Hel"}}]}\\n\\n'
    ...     b'data: {"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]}'
    ...     b'\\n\\ndata: {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}\\n\\n'
    ...     b'data: [DONE]\\n\\n')
    >>> decoder = StreamDecoder()
    >>> [delta.text for event in sse for delta in decoder.feed(event)]
    ['Hel', 'lo']
    >>> completion = decoder.finish()
    >>> completion.message.text, completion.stop_reason, completion.usage.output_tokens
    ('Hello', <StopReason.END_TURN: 'end_turn'>, 2)
    """

    __slots__ = (
        "_by_key",
        "_calls",
        "_done",
        "_finish_reason",
        "_model",
        "_refused",
        "_response_id",
        "_segments",
        "_stop_string",
        "_unindexed",
        "_usage",
    )

    def __init__(self) -> None:
        self._segments = _Segments()
        self._calls: list[_CallState] = []
        self._by_key: dict[object, _CallState] = {}
        self._unindexed = 0
        self._finish_reason: str | None = None
        self._stop_string = False
        self._refused = False
        self._usage: Mapping[str, Any] | None = None
        self._model: str | None = None
        self._response_id: str | None = None
        self._done = False

    def feed(self, event: SSEEvent) -> list[Delta]:
        """Decode one SSE event; return the deltas it carried.

        Raises the typed ``ProviderError`` for an error event and ``ProtocolError`` for a chunk
        that is not JSON. Events after ``[DONE]`` are ignored.
        """
        # The hot path: one call per streamed token. JSON only makes dicts and lists, so exact
        # type checks replace the (much slower) ABC checks against Mapping.
        if self._done:
            return []
        data = event.data
        if data == "[DONE]":
            self._done = True
            return []
        try:
            chunk = loads(data)  # json.loads, faster
        except ValueError as exc:
            if event.event == "error":
                _raise_in_band(data, data)
            raise _protocol_error(
                f"a stream chunk is not valid JSON ({exc}): {data[:200]!r}", data
            ) from exc
        if type(chunk) is not dict:
            if event.event == "error":
                _raise_in_band(chunk, data)
            raise _protocol_error(f"a stream chunk is not an object: {data[:200]!r}", data)
        get = chunk.get
        if event.event == "error" or get("error"):
            _raise_in_band(chunk, data)
        if self._model is None:
            model = get("model")
            if type(model) is str:
                self._model = model
        if self._response_id is None:
            response_id = get("id")
            if type(response_id) is str:
                self._response_id = response_id or None
        usage = get("usage")
        if usage is not None and type(usage) is dict:
            self._usage = usage
        extra = get("x_groq")
        if extra is not None and type(extra) is dict and type(extra.get("usage")) is dict:
            self._usage = extra["usage"]
        choices = get("choices")
        if not choices:
            return []
        if type(choices) is not list:
            raise _protocol_error(f"'choices' is not a list: {data[:200]!r}", data)
        choice = choices[0]
        if len(choices) > 1 or type(choice) is not dict:
            choice = _first_choice(choices)
            if choice is None:
                return []
        if choice.get("index", 0) not in (0, None):
            return []
        deltas: list[Delta]
        delta = choice.get("delta")
        if type(delta) is dict:
            content = delta.get("content")
            if type(content) is str and (len(delta) == 1 or (len(delta) == 2 and "role" in delta)):
                # The usual chunk, text alone: what ``_delta`` does with it, without its lookups.
                if content:
                    self._segments.add("text", content)
                    deltas = [TextDelta(text=content)]
                else:
                    deltas = []
            else:
                deltas = self._delta(delta) if delta else []
        elif delta is None:
            deltas = []
        else:
            raise _protocol_error(f"'delta' is not an object: {data[:200]!r}", data)
        finish_reason = choice.get("finish_reason")
        if finish_reason and type(finish_reason) is str:
            self._finish_reason = finish_reason
            if type(choice.get("stop_reason")) is str:
                self._stop_string = True
        return deltas

    def _delta(self, delta: dict[str, Any]) -> list[Delta]:
        get = delta.get
        deltas: list[Delta] = []
        calls = get("tool_calls")
        if calls is None or len(delta) > 1:  # (a delta of tool calls alone has nothing else)
            reasoning = get("reasoning_content") or get("reasoning")
            if reasoning and type(reasoning) is str:
                self._segments.add("thinking", reasoning)
                deltas.append(ThinkingDelta(text=reasoning))
            content = get("content")
            if content:
                if type(content) is str:
                    self._segments.add("text", content)
                    deltas.append(TextDelta(text=content))
                else:
                    deltas += self._segments.add_content(content)
            refusal = get("refusal")
            if refusal and type(refusal) is str:
                self._refused = True
                self._segments.add("text", refusal)
                deltas.append(TextDelta(text=refusal))
        if calls is not None:
            if type(calls) is not list:
                raise _protocol_error(f"'tool_calls' is not a list: {calls!r}")
            for item in calls:
                if type(item) is not dict:
                    raise _protocol_error(f"a tool call delta is not an object: {item!r}")
                deltas += self._tool_call_delta(item)
        else:
            legacy = get("function_call")
            if legacy is not None and type(legacy) is dict:
                deltas += self._tool_call_delta({"index": 0, "function": legacy})
        return deltas

    def _new_call(self, key: object) -> _CallState:
        state = _CallState(len(self._calls))
        self._calls.append(state)
        self._by_key[key] = state
        return state

    def _call_for(
        self, item: Mapping[str, Any], call_id: str | None, name: str | None
    ) -> _CallState:
        index = item.get("index")
        if type(index) is int or (isinstance(index, int) and not isinstance(index, bool)):
            state = self._by_key.get(index)
            if state is None:
                return self._new_call(index)
            if call_id is not None and state.id is not None and call_id != state.id:
                # A different id at a known index is a new call (hosts that put every call at 0).
                return self._new_call(index)
            return state
        # No index (some Gemini versions): a new id starts a new call, anything else continues.
        if call_id is not None:
            for state in self._calls:
                if state.id == call_id:
                    return state
        last = self._calls[-1] if self._calls else None
        if last is None or call_id is not None or (name is not None and last.name is not None):
            self._unindexed += 1
            return self._new_call(("unindexed", self._unindexed))
        return last

    def _tool_call_delta(self, item: Mapping[str, Any]) -> list[Delta]:
        function = item.get("function")
        index = item.get("index")
        if type(function) is dict and type(index) is int and len(item) == 2 and len(function) == 1:
            # The usual fragment, ``{"index": i, "function": {"arguments": "..."}}`` of a call
            # already started: what the general code below does with it, without its checks.
            state = self._by_key.get(index)
            fragment = function.get("arguments")
            if state is not None and state.started and type(fragment) is str:
                if not fragment:
                    return []
                state.fragments.append(fragment)
                return [ToolCallDelta(index=state.position, arguments=fragment)]
        if function is None:
            function = {}
        if not is_object(function):
            raise _protocol_error(f"a tool call delta has a bad 'function': {item!r}")
        call_id = item.get("id")
        call_id = call_id if isinstance(call_id, str) and call_id else None
        name = function.get("name")
        name = name if isinstance(name, str) and name else None
        state = self._call_for(item, call_id, name)
        if call_id is not None and state.id is None:
            state.id = call_id
        if name is not None and state.name is None:
            state.name = name
        raw = function.get("arguments")
        if isinstance(raw, str):
            fragment = raw
        elif raw is None:
            fragment = ""
        elif is_object(raw):
            fragment = _dumps(dict(raw))  # a host that sends the arguments as an object
        else:
            raise _protocol_error(f"tool call arguments must be a string, got {raw!r}")
        deltas: list[Delta] = []
        if not state.started and state.name is not None:
            state.started = True
            if state.id is None:
                state.id = _synthetic_id(self._response_id, state.position)
            deltas.append(ToolCallStarted(index=state.position, id=state.id, name=state.name))
            deltas += [
                ToolCallDelta(index=state.position, arguments=piece) for piece in state.fragments
            ]
        if fragment:
            state.fragments.append(fragment)
            if state.started:
                deltas.append(ToolCallDelta(index=state.position, arguments=fragment))
        return deltas

    def finish(self) -> Completion:
        """The completion, once the stream has ended.

        Raises ``ProtocolError`` when the stream ended before ``[DONE]`` and before any chunk
        with a ``finish_reason``, when a tool call never got a name, or when a complete reply's
        tool call arguments are not a JSON object.
        """
        if not self._done and self._finish_reason is None:
            raise _protocol_error("stream ended before the reply was complete")
        truncated = _is_truncated(self._finish_reason)
        blocks = self._segments.blocks()
        for state in self._calls:
            if state.name is None:
                raise _protocol_error(f"tool call {state.position} has no name")
            assert state.id is not None
            raw = "".join(state.fragments)
            arguments = _arguments(raw, state.name, truncated=truncated)
            blocks.append(ToolCall(state.id, state.name, arguments))
        stop = _stop_reason(
            self._finish_reason,
            has_tool_calls=bool(self._calls),
            refused=self._refused,
            stop_string=self._stop_string,
        )
        usage = _usage(self._usage) if self._usage is not None else Usage()
        return Completion(
            message=Message.assistant(blocks), stop_reason=stop, usage=usage, model=self._model
        )


# -- requests as a server receives them (fake servers, tests) -----------------------------------


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if is_object(part) and isinstance(part.get("text"), str)
        )
    return ""


def _user_blocks(content: object) -> list[Block]:
    if isinstance(content, str):
        return [Text(content)] if content else []
    blocks: list[Block] = []
    if isinstance(content, list):
        for part in content:
            if not is_object(part):
                continue
            kind = part.get("type")
            if kind == "text" and isinstance(part.get("text"), str):
                blocks.append(Text(part["text"]))
                continue
            if kind == "image_url":
                url = part.get("image_url")
                url = url.get("url") if is_object(url) else url
                if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
                    media_type, _, data = url[5:].partition(";base64,")
                    blocks.append(Image(media_type=media_type, data=data))
                    continue
            blocks.append(UnknownBlock(data=dict(part), provider=PROVIDER))
    return blocks


def decode_request(body: Mapping[str, Any]) -> Request:
    """The ``Request`` a chat request body describes (what a fake server received).

    System and developer messages become the system prompt; tool messages become ``ToolResult``
    blocks of the next user message (an ``"Error: "`` prefix sets ``is_error``); body fields
    other than the messages and function tools go to ``options`` (a host's own tools too, as
    ``options["tools"]``). The inverse of :func:`encode_request` up to its documented losses.

    >>> request = decode_request({"model": "m", "temperature": 0, "messages": [
    ...     {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]})
    >>> request.system_prompt, request.messages[0].text, request.options
    ('Be brief.', 'hi', {'temperature': 0})
    """
    system: list[str] = []
    messages: list[Message] = []
    results: list[Block] = []
    raw_messages = body.get("messages")
    for wire in raw_messages if isinstance(raw_messages, list) else ():
        if not is_object(wire):
            continue
        role = wire.get("role")
        content = wire.get("content")
        if role in ("system", "developer"):
            system.append(_content_text(content))
        elif role == "tool":
            text = _content_text(content)
            is_error = text.startswith(_ERROR_PREFIX)
            call_id = wire.get("tool_call_id")
            results.append(
                ToolResult(
                    call_id=call_id if isinstance(call_id, str) else "",
                    content=text[len(_ERROR_PREFIX) :] if is_error else text,
                    is_error=is_error,
                )
            )
        elif role == "assistant":
            if results:
                messages.append(Message.user(results))
                results = []
            blocks, _ = _decode_message(wire, None, None, request=True)
            messages.append(Message.assistant(blocks))
        else:
            messages.append(Message.user([*results, *_user_blocks(content)]))
            results = []
    if results:
        messages.append(Message.user(results))
    tools: list[ToolSpec] = []
    host_tools: list[Any] = []
    raw_tools = body.get("tools")
    for item in raw_tools if isinstance(raw_tools, list) else ():
        function = item.get("function") if is_object(item) else None
        if not is_object(function) or not isinstance(function.get("name"), str):
            host_tools.append(item)  # a host's own tool: back to the options
        else:
            description = function.get("description")
            parameters = function.get("parameters")
            tools.append(
                ToolSpec(
                    function["name"],
                    description if isinstance(description, str) else "",
                    parameters if is_object(parameters) else {},
                )
            )
    skip = {"model", "messages", "tools", "stream", "stream_options"}
    options = {key: value for key, value in body.items() if key not in skip}
    if host_tools:
        options["tools"] = host_tools
    return Request(
        messages=tuple(messages),
        system_prompt="\n\n".join(system) if system else None,
        tools=tuple(tools),
        options=options,
    )
