"""A fake LLM server on loopback: scripted replies over real HTTP/1.1, in any of the wire formats.

``WireServer`` listens on ``127.0.0.1`` (an ephemeral port of its own), answers every POST with the
next item of its script in the Anthropic Messages, OpenAI Responses or chat completions format,
streamed (SSE, chunked) when the request says ``"stream": true``, and records every request. It
is written with trio and h11 only, serves many requests per connection (keep-alive), and its
script can fail in the ways real providers do: HTTP errors, streams cut or stalled in the
middle, in-stream error events, malformed bodies::

    from alloy.testing import WireServer, text, tool_call, http_error, cut

    async with WireServer([tool_call("read", {"path": "a.txt"}), text("done")],
                          format="anthropic") as server:
        provider = Anthropic(api_key="test", api_url=server.url, model="claude-sonnet-4-6")
        result = await alloy.run("Read a.txt", provider=provider, tools=[Read])
        server.requests[1].body["messages"]     # what the provider sent on the second turn
        server.connections                      # 1: the client reused its connection
"""

from __future__ import annotations

import functools
import http
import inspect
import json
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeAlias

import attrs
import h11
import trio

from .._errors import (
    AlloyError,
    AuthenticationError,
    ContextLengthExceeded,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProtocolError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
)
from .._provider import Request
from ._scripted import CallNumbering, Fail, Reply, text
from ._wire_encode import (
    DEFAULT_MODELS,
    PATH_SUFFIXES,
    WireFormat,
    check_blocks,
    default_error_type,
    encode,
    encode_error,
    encode_stream,
    encode_stream_error,
)

__all__ = [
    "Cut",
    "HttpError",
    "Raw",
    "RecordedRequest",
    "Stall",
    "StreamError",
    "WireItem",
    "WireServer",
    "cut",
    "http_error",
    "raw",
    "stall",
    "stream_error",
]

_FORMATS = ("anthropic", "openai", "chat")
_MAX_REQUEST = 64 * 1024 * 1024


def decode_request(format: WireFormat, body: Any) -> Request:
    """The ``alloy.Request`` a request body in ``format`` describes.

    >>> decode_request("chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    """
    from .._codec import _anthropic, _chat, _responses

    decoders = {
        "anthropic": _anthropic.decode_request,
        "openai": _responses.decode_request,
        "chat": _chat.decode_request,
    }
    return decoders[format](body)


@attrs.frozen
class RecordedRequest:
    """One HTTP request the ``WireServer`` received, as it came.

    ``headers`` has lower-case names (repeated headers joined with ``", "``), ``body`` is the
    parsed JSON body (``None`` when it was empty or not JSON), ``raw`` the body bytes, ``path``
    the request path without its query string (``query``, without ``?``)::

        request = server.requests[0]
        assert request.method == "POST" and request.path == "/v1/messages"
        assert request.headers["x-api-key"] == "test"
        assert request.body["stream"] is True and request.stream
    """

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    raw: bytes
    query: str = ""

    @property
    def stream(self) -> bool:
        """Whether the request asked for a streamed reply (``"stream": true`` in its body)."""
        return isinstance(self.body, dict) and self.body.get("stream") is True


@attrs.frozen(kw_only=True)
class HttpError:
    """Answer with an HTTP error in the server's format; build it with :func:`http_error`."""

    status: int
    message: str
    error_type: str | None = None
    code: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@attrs.frozen(kw_only=True)
class Cut:
    """Send part of a reply, then close the connection; build it with :func:`cut`."""

    reply: Reply
    after_bytes: int | None = None


@attrs.frozen(kw_only=True)
class Stall:
    """Send part of a reply, go silent for a while, then send the rest; see :func:`stall`."""

    reply: Reply
    after_bytes: int | None = None
    seconds: float = math.inf


@attrs.frozen(kw_only=True)
class Raw:
    """Answer with exactly these bytes; build it with :func:`raw`."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@attrs.frozen(kw_only=True)
class StreamError:
    """Stream a reply's content, then an in-stream error event; see :func:`stream_error`."""

    reply: Reply
    message: str
    error_type: str | None = None
    code: str | None = None


WireItem: TypeAlias = Reply | Fail | HttpError | Cut | Stall | Raw | StreamError | str


def _as_reply(item: Reply | str) -> Reply:
    if isinstance(item, str):
        return text(item)
    if not isinstance(item, Reply):
        raise TypeError(
            f"expected a Reply (text(), tool_call(), reply()) or a string, got {item!r}"
        )
    return item


def _check_after(after_bytes: int | None) -> None:
    if after_bytes is not None and after_bytes < 0:
        raise ValueError(f"after_bytes must not be negative, got {after_bytes}")


def http_error(
    status: int,
    message: str,
    *,
    error_type: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
) -> HttpError:
    """Answer one request with HTTP ``status`` and the format's error body.

    ``error_type`` defaults to the provider's own for that status (``overloaded_error`` for an
    Anthropic 529, ``server_error`` for an OpenAI 500...); ``code`` is the OpenAI ``code`` field;
    ``headers`` are added to the reply (``retry-after``, rate-limit headers...).

    >>> http_error(429, "Slow down", headers={"retry-after": "2"})
    >>> http_error(400, "prompt is too long: 210000 tokens > 200000 maximum")
    >>> http_error(400, "maximum context length exceeded", code="context_length_exceeded")
    """
    if not 400 <= status <= 599:
        raise ValueError(f"http_error needs a 4xx or 5xx status, got {status}")
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
    return HttpError(
        status=status,
        message=message,
        error_type=error_type,
        code=code,
        headers=tuple((str(k).lower(), str(v)) for k, v in pairs),
    )


def cut(reply: Reply | str, after_bytes: int | None = None) -> Cut:
    """Send the first ``after_bytes`` bytes of the reply's body, then close the connection.

    The body is the SSE stream when the request streams, else the JSON; ``None`` cuts it in
    the middle. The client sees a connection closed before the end of the body (for a stream, an
    incomplete chunked read), never a complete reply.

    >>> cut(text("a long answer that never arrives whole"), after_bytes=200)
    """
    _check_after(after_bytes)
    return Cut(reply=_as_reply(reply), after_bytes=after_bytes)


def stall(reply: Reply | str, after_bytes: int | None = None, seconds: float = math.inf) -> Stall:
    """Send the first ``after_bytes`` bytes of the reply's body, then nothing for ``seconds``,
    then the rest (by default it never goes on: for idle-read timeout tests).

    >>> stall(text("slow"), after_bytes=100, seconds=30.0)
    """
    _check_after(after_bytes)
    if seconds < 0:
        raise ValueError(f"seconds must not be negative, got {seconds}")
    return Stall(reply=_as_reply(reply), after_bytes=after_bytes, seconds=seconds)


def raw(
    status: int,
    body: bytes,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
) -> Raw:
    """Answer with exactly ``body`` (for malformed-JSON tests). ``content-type`` defaults to
    ``application/json``; ``content-length`` is added unless ``headers`` frame the body
    themselves (``transfer-encoding: chunked``).

    >>> raw(200, b'{"content": [', {"content-type": "application/json"})
    >>> raw(200, b"data: {not json}\\n\\n", {"content-type": "text/event-stream"})
    """
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError(f"raw() needs bytes, got {type(body).__name__}")
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
    return Raw(
        status=status,
        body=bytes(body),
        headers=tuple((str(k).lower(), str(v)) for k, v in pairs),
    )


def stream_error(
    reply: Reply | str,
    message: str,
    *,
    error_type: str | None = None,
    code: str | None = None,
) -> StreamError:
    """Stream the reply's content with HTTP 200, then an in-stream error event instead of its
    end (Anthropic ``event: error``, Responses ``event: error``, a chat ``{"error": ...}``
    chunk). A request that does not stream gets HTTP 500 with that error instead.

    >>> stream_error(text("partial answer"), "Overloaded", error_type="overloaded_error")
    """
    return StreamError(reply=_as_reply(reply), message=message, error_type=error_type, code=code)


# -- what to send ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _Plan:
    """One response, ready to send."""

    status: int
    headers: list[tuple[str, str]]
    chunks: Sequence[bytes] = ()
    chunked: bool = False
    chunk_delay: float = 0.0
    pause_at: int | None = None
    pause_seconds: float = 0.0
    cut_at: int | None = None
    drop: bool = False  # close the connection without any response
    content_length: bool = True


_Op: TypeAlias = tuple[str, Any]


def _ops(plan: _Plan) -> list[_Op]:
    """The body as data, sleep and cut steps."""
    ops: list[_Op] = []
    offset = 0
    paused = plan.pause_at is None
    for index, chunk in enumerate(plan.chunks):
        if index and plan.chunk_delay:
            ops.append(("sleep", plan.chunk_delay))
        end = offset + len(chunk)
        position = 0
        marks: list[tuple[int, str]] = []
        if not paused and plan.pause_at is not None and plan.pause_at <= end:
            marks.append((plan.pause_at - offset, "pause"))
        if plan.cut_at is not None and plan.cut_at <= end:
            marks.append((plan.cut_at - offset, "cut"))
        for at, what in sorted(marks):
            at = max(at, 0)
            if at > position:
                ops.append(("data", chunk[position:at]))
                position = at
            if what == "pause":
                paused = True
                ops.append(("sleep", plan.pause_seconds))
            else:
                ops.append(("cut", None))
                return ops
        if position < len(chunk):
            ops.append(("data", chunk[position:]))
        offset = end
    if not paused:
        ops.append(("sleep", plan.pause_seconds))
    if plan.cut_at is not None:
        ops.append(("cut", None))
    return ops


class _Cut(Exception):
    """Close the connection now (the plan says so)."""


class WireServer:
    """A local HTTP/1.1 server that plays a script of replies in a provider's wire format.

    ``format`` is ``"anthropic"`` (Messages API), ``"openai"`` (Responses API) or ``"chat"``
    (OpenAI-compatible chat completions). Each POST to a path ending with the format's endpoint
    (``/messages``, ``/responses``, ``/chat/completions``) gets the next script item:

    - a ``Reply`` (``text()``, ``tool_call()``, ``reply()``, or a plain string): HTTP 200 with
      the format's JSON, or when the request body has ``"stream": true``, its SSE stream
      (``text/event-stream``, chunked, one event per chunk, ``chunk_delay`` seconds apart, text
      in pieces of ``chunk_size`` characters). Tool calls without an id are numbered
      ``call_1``, ``call_2``... across the whole script, as ``ScriptedProvider`` does;
    - a ``Fail`` (``error()``): the HTTP error its ``ProviderError`` describes (``status``, or
      the status of its class: 429 for ``RateLimitError``...), with ``retry-after`` when
      ``retry_after`` is set; a ``ProviderConnectionError`` closes the connection without an
      answer and a ``ProtocolError`` sends a malformed body;
    - ``http_error()``, ``cut()``, ``stall()``, ``raw()``, ``stream_error()``.

    With ``responder=``, a request that finds the script played out is answered by calling
    ``responder(request)`` with the ``alloy.Request`` the body describes (decoded by the
    format's codec); it returns a script item (sync or async), like a ``FunctionProvider``::

        def model(request: alloy.Request) -> Reply:
            if request.messages[-1].tool_results:
                return text("done")
            return tool_call("read", {"path": "notes.txt"})

        async with WireServer(format="openai", responder=model) as server: ...

    Every item waits ``latency`` seconds first (plus its own ``delay``). A request after the
    script ran out gets HTTP 500 "WireServer script exhausted". A request to another path gets
    404, one whose body is not JSON 400; neither uses a script item. ``model`` names the model
    in replies (default: the request's ``model``). A chat stream ends with a usage chunk only
    when the request asked for it (``"stream_options": {"include_usage": true}``), as OpenAI
    does. Clients that honour proxy variables should not proxy loopback (httpx2:
    ``trust_env=False``).

    ::

        async with WireServer([text("hello")], format="chat") as server:
            async with httpx2.AsyncClient(base_url=server.url) as client:
                response = await client.post("/v1/chat/completions",
                                             json={"model": "m", "messages": []})
            response.json()["choices"][0]["message"]["content"]   # 'hello'
            server.requests[0].body["model"]                        # 'm'
            server.connections, server.remaining                    # (1, 0)

    The server runs in a nursery of its own, opened by ``async with`` and cancelled when the
    block ends: no task is left behind. Clients that disconnect in the middle of a reply do not
    disturb it. Unexpected errors while serving are kept in ``errors`` (a test can assert it is
    empty).
    """

    def __init__(
        self,
        script: Iterable[WireItem] = (),
        *,
        format: WireFormat = "anthropic",
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        chunk_size: int = 16,
        model: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        responder: Callable[[Request], WireItem | Awaitable[WireItem]] | None = None,
    ) -> None:
        if format not in _FORMATS:
            raise ValueError(f"unknown wire format {format!r}; use 'anthropic', 'openai' or 'chat'")
        if latency < 0 or chunk_delay < 0:
            raise ValueError("latency and chunk_delay must not be negative")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.format: WireFormat = format
        self.latency = latency
        self.chunk_delay = chunk_delay
        self.chunk_size = chunk_size
        self.model = model
        self.host = host
        self._port = port
        self.requests: list[RecordedRequest] = []
        self.connections = 0
        self.errors: list[Exception] = []
        self._script: list[WireItem] = []
        self._responder = responder
        self._next = 0
        self._number = CallNumbering()
        self._answered = 0
        self._url: str | None = None
        self._manager: Any = None
        self._nursery: trio.Nursery | None = None
        self.extend(script)

    # -- public API --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's base URL, ``http://127.0.0.1:PORT`` (only while it runs)."""
        if self._url is None:
            raise RuntimeError(
                "the WireServer is not running; use it as `async with WireServer(...)`"
            )
        return self._url

    @property
    def port(self) -> int:
        """The TCP port the server listens on (only while it runs)."""
        return int(self.url.rsplit(":", 1)[1])

    @property
    def remaining(self) -> int:
        """How many script items have not been played yet."""
        return len(self._script) - self._next

    def extend(self, items: Iterable[WireItem]) -> None:
        """Add items to the end of the script (also while the server runs).

        >>> server.extend([text("one more")])
        """
        for item in items:
            index = len(self._script)
            if not isinstance(
                item, Reply | Fail | HttpError | Cut | Stall | Raw | StreamError | str
            ):
                raise TypeError(
                    f"script[{index}] is {item!r}; use text(), tool_call(), reply(), error(), "
                    "http_error(), cut(), stall(), raw() or stream_error()"
                )
            reply = _reply_of(item)
            if reply is not None:
                try:  # a block the format cannot carry fails here, not in the middle of a test
                    check_blocks(self.format, reply.blocks)
                except ValueError as exc:
                    raise ValueError(f"script[{index}]: {exc}") from None
            self._script.append(item)

    async def __aenter__(self) -> WireServer:
        if self._manager is not None:
            raise RuntimeError("this WireServer is already running")
        manager = trio.open_nursery()
        nursery = await manager.__aenter__()
        try:
            serve = functools.partial(
                trio.serve_tcp, self._serve_connection, self._port, host=self.host
            )
            listeners: list[trio.SocketListener] = await nursery.start(serve)
        except BaseException:
            nursery.cancel_scope.cancel()
            await manager.__aexit__(None, None, None)
            raise
        self._manager = manager
        self._nursery = nursery
        port = listeners[0].socket.getsockname()[1]
        self._url = f"http://{self.host}:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        manager, nursery = self._manager, self._nursery
        self._manager = self._nursery = None
        self._url = None
        if manager is None or nursery is None:
            return False
        nursery.cancel_scope.cancel()
        try:
            return bool(await manager.__aexit__(exc_type, exc, traceback))
        except BaseExceptionGroup as group:
            # The nursery wraps the body's own exception in a group: give it back bare.
            if exc is not None and _only(group, exc):
                return False
            raise

    # -- serving -----------------------------------------------------------------------------

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        connection = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._read_request(stream, connection)
                if request is None:
                    return
                plan = await self._plan(request)
                await self._send(stream, connection, plan)
                if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                    return
                connection.start_next_cycle()
        except (_Cut, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return  # the plan cut the connection, or the client went away or spoke nonsense
        except Exception as exc:  # a bug: keep it for the test, keep serving other connections
            self.errors.append(exc)
        finally:
            await trio.aclose_forcefully(stream)

    async def _read_request(
        self, stream: trio.SocketStream, connection: h11.Connection
    ) -> RecordedRequest | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > _MAX_REQUEST:
                    raise h11.RemoteProtocolError("request body too large")
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
        if head is None:  # pragma: no cover - h11 always sends Request first
            return None
        headers: dict[str, str] = {}
        for name, value in head.headers:
            key = name.decode("latin-1").lower()
            text_value = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text_value}" if key in headers else text_value
        target = head.target.decode("latin-1")
        path, _, query = target.partition("?")
        raw_body = bytes(body)
        parsed: Any = None
        if raw_body:
            try:
                parsed = json.loads(raw_body)
            except ValueError:
                parsed = None
        request = RecordedRequest(
            method=head.method.decode("ascii"),
            path=path,
            headers=headers,
            body=parsed,
            raw=raw_body,
            query=query,
        )
        self.requests.append(request)
        return request

    async def _plan(self, request: RecordedRequest) -> _Plan:
        self._answered += 1
        number = self._answered
        if request.method != "POST":
            return self._error_plan(405, f"method {request.method} not allowed; POST", number)
        suffix = PATH_SUFFIXES[self.format]
        if not request.path.endswith(suffix):
            return self._error_plan(
                404,
                f"WireServer ({self.format}) serves POST .../{suffix.lstrip('/')}, "
                f"not {request.path}",
                number,
            )
        if not isinstance(request.body, dict):
            return self._error_plan(400, "the request body is not a JSON object", number)
        if self._next >= len(self._script) and self._responder is not None:
            try:
                answer = self._responder(decode_request(self.format, request.body))
                if inspect.isawaitable(answer):
                    answer = await answer
                self.extend([answer])
            except Exception as exc:
                self.errors.append(exc)
                return self._error_plan(
                    500, f"WireServer responder raised {type(exc).__name__}: {exc}", number
                )
        if self._next >= len(self._script):
            return self._error_plan(
                500,
                f"WireServer script exhausted: no reply left for request {len(self.requests)} "
                f"(the script had {len(self._script)} items)",
                number,
            )
        item = self._script[self._next]
        self._next += 1
        wait = self.latency + (item.delay if isinstance(item, Reply | Fail) else 0.0)
        if isinstance(item, Cut | Stall | StreamError):
            wait += item.reply.delay
        if wait:
            await trio.sleep(wait)
        return self._item_plan(item, request, number)

    def _item_plan(self, item: WireItem, request: RecordedRequest, number: int) -> _Plan:
        if isinstance(item, str | Reply):
            return self._reply_plan(_as_reply(item), request, number)
        if isinstance(item, Fail):
            return self._fail_plan(item.error, request, number)
        if isinstance(item, HttpError):
            plan = self._error_plan(
                item.status, item.message, number, error_type=item.error_type, code=item.code
            )
            return attrs.evolve(plan, headers=_merge(plan.headers, item.headers))
        if isinstance(item, Cut):
            plan = self._reply_plan(item.reply, request, number)
            return attrs.evolve(plan, cut_at=_middle(plan, item.after_bytes))
        if isinstance(item, Stall):
            plan = self._reply_plan(item.reply, request, number)
            return attrs.evolve(
                plan, pause_at=_middle(plan, item.after_bytes), pause_seconds=item.seconds
            )
        if isinstance(item, StreamError):
            return self._stream_error_plan(item, request, number)
        headers = list(item.headers)
        names = {name for name, _ in headers}
        if "content-type" not in names:
            headers.insert(0, ("content-type", "application/json"))
        framed = "content-length" in names or "transfer-encoding" in names
        chunked = any(n == "transfer-encoding" and "chunked" in v.lower() for n, v in headers)
        return _Plan(
            status=item.status,
            headers=headers + self._id_headers(number),
            chunks=(item.body,),
            chunked=chunked,
            content_length=not framed,
        )

    def _model(self, request: RecordedRequest) -> str:
        if self.model:
            return self.model
        asked = request.body.get("model") if isinstance(request.body, dict) else None
        return asked if isinstance(asked, str) and asked else DEFAULT_MODELS[self.format]

    def _include_usage(self, request: RecordedRequest) -> bool:
        options = request.body.get("stream_options") if isinstance(request.body, dict) else None
        return isinstance(options, dict) and options.get("include_usage") is True

    def _response_id(self, number: int) -> str:
        prefix = {"anthropic": "msg_wire_", "openai": "resp_wire_", "chat": "chatcmpl-wire-"}
        return f"{prefix[self.format]}{number}"

    def _id_headers(self, number: int) -> list[tuple[str, str]]:
        name = "request-id" if self.format == "anthropic" else "x-request-id"
        return [(name, f"req_wire_{number}"), ("server", "alloy-wire")]

    def _reply_plan(self, reply: Reply, request: RecordedRequest, number: int) -> _Plan:
        reply = self._number(reply)
        options: dict[str, Any] = {
            "model": self._model(request),
            "chunk_size": self.chunk_size,
            "response_id": self._response_id(number),
        }
        if request.stream:
            events = encode_stream(
                self.format, reply, include_usage=self._include_usage(request), **options
            ).events
            return self._stream_plan(events, number)
        body = encode(self.format, reply, stream=False, **options)
        return _Plan(
            status=200,
            headers=[("content-type", "application/json"), *self._id_headers(number)],
            chunks=(body,),
        )

    def _stream_plan(self, events: Sequence[bytes], number: int) -> _Plan:
        return _Plan(
            status=200,
            headers=[
                ("content-type", "text/event-stream; charset=utf-8"),
                ("cache-control", "no-cache"),
                *self._id_headers(number),
            ],
            chunks=tuple(events),
            chunked=True,
            chunk_delay=self.chunk_delay,
        )

    def _stream_error_plan(self, item: StreamError, request: RecordedRequest, number: int) -> _Plan:
        error_type = item.error_type or default_error_type(self.format, 500)
        if not request.stream:
            return self._error_plan(
                500, item.message, number, error_type=error_type, code=item.code
            )
        stream = encode_stream(
            self.format,
            self._number(item.reply),
            model=self._model(request),
            chunk_size=self.chunk_size,
            response_id=self._response_id(number),
            include_usage=self._include_usage(request),
        )
        failure = encode_stream_error(
            self.format,
            item.message,
            error_type,
            code=item.code,
            sequence_number=stream.closing,
        )
        return self._stream_plan((*stream.content, failure), number)

    def _error_plan(
        self,
        status: int,
        message: str,
        number: int,
        *,
        error_type: str | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> _Plan:
        status, headers, body = encode_error(
            self.format,
            status,
            message,
            error_type,
            code=code,
            request_id=request_id or (f"req_wire_{number}" if self.format == "anthropic" else None),
        )
        return _Plan(status=status, headers=headers + self._id_headers(number), chunks=(body,))

    def _fail_plan(self, error: AlloyError, request: RecordedRequest, number: int) -> _Plan:
        if not isinstance(error, ProviderError):
            return self._error_plan(500, error.message, number)
        if error.status is None and isinstance(error, ProviderConnectionError):
            return _Plan(status=0, headers=[], drop=True)
        if error.status is None and isinstance(error, ProtocolError):
            if request.stream:
                return self._stream_plan((b"data: {this is not json\n\n",), number)
            return _Plan(
                status=200,
                headers=[("content-type", "application/json"), *self._id_headers(number)],
                chunks=(b'{"this is": not json',),
            )
        status = error.status or _status_of(error, self.format)
        error_type, code = error.error_type, None
        if isinstance(error, ContextLengthExceeded) and error_type is None:
            if self.format == "anthropic":
                error_type = "invalid_request_error"
            else:
                code = "context_length_exceeded"
        if isinstance(error, OverloadedError) and error_type is None and self.format != "anthropic":
            error_type, code = "server_error", "server_is_overloaded"
        plan = self._error_plan(
            status,
            error.message,
            number,
            error_type=error_type,
            code=code,
            request_id=error.request_id,
        )
        extra: list[tuple[str, str]] = []
        if error.retry_after is not None:
            seconds = max(error.retry_after, 0.0)
            if seconds == int(seconds):
                extra.append(("retry-after", str(int(seconds))))
            else:
                extra.append(("retry-after-ms", str(round(seconds * 1000))))
                extra.append(("retry-after", str(math.ceil(seconds))))
        if error.request_id:
            name = "request-id" if self.format == "anthropic" else "x-request-id"
            extra.append((name, error.request_id))
        extra.extend((name.lower(), value) for name, value in error.rate_limits.items())
        return attrs.evolve(plan, headers=_merge(plan.headers, extra))

    async def _send(
        self, stream: trio.SocketStream, connection: h11.Connection, plan: _Plan
    ) -> None:
        if plan.drop:
            raise _Cut
        headers = list(plan.headers)
        if plan.chunked:
            if not any(name == "transfer-encoding" for name, _ in headers):
                headers.append(("transfer-encoding", "chunked"))
        elif plan.content_length:
            headers.append(("content-length", str(sum(len(c) for c in plan.chunks))))
        try:
            reason = http.HTTPStatus(plan.status).phrase
        except ValueError:
            reason = ""
        response = h11.Response(status_code=plan.status, headers=headers, reason=reason)
        await _write(stream, connection.send(response))
        for op, value in _ops(plan):
            if op == "data":
                await _write(stream, connection.send(h11.Data(data=value)))
            elif op == "sleep":
                await trio.sleep(value)
            else:
                raise _Cut
        await _write(stream, connection.send(h11.EndOfMessage()))


async def _write(stream: trio.SocketStream, data: bytes | None) -> None:
    if data:
        await stream.send_all(data)


def _reply_of(item: WireItem) -> Reply | None:
    if isinstance(item, str):
        return text(item)
    if isinstance(item, Reply):
        return item
    if isinstance(item, Cut | Stall | StreamError):
        return item.reply
    return None


def _middle(plan: _Plan, after_bytes: int | None) -> int:
    total = sum(len(chunk) for chunk in plan.chunks)
    return total // 2 if after_bytes is None else min(after_bytes, total)


def _merge(
    headers: Sequence[tuple[str, str]], extra: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    replaced = {name for name, _ in extra}
    return [(n, v) for n, v in headers if n not in replaced] + list(extra)


def _status_of(error: ProviderError, format: WireFormat) -> int:
    if isinstance(error, AuthenticationError):
        return 401
    if isinstance(error, PermissionDeniedError):
        return 403
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, InvalidRequestError):
        return 400
    if isinstance(error, RateLimitError):
        return 429
    if isinstance(error, OverloadedError):
        return 529 if format == "anthropic" else 503
    if isinstance(error, ProviderTimeout):
        return 408
    return 500


def _only(group: BaseExceptionGroup[BaseException], exc: BaseException) -> bool:
    """Whether ``group`` holds nothing but ``exc`` (and cancellations)."""

    def leaves(e: BaseException) -> list[BaseException]:
        if isinstance(e, BaseExceptionGroup):
            return [leaf for inner in e.exceptions for leaf in leaves(inner)]
        return [e]

    found = leaves(group)
    return exc in found and all(e is exc or isinstance(e, trio.Cancelled) for e in found)
