"""What every wire codec shares: the HTTP request it encodes, the stream decoder it offers, and
the mapping from an HTTP error to a typed ``ProviderError``. Sans-IO: no trio, no httpx."""

from __future__ import annotations

import email.utils
import json
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeGuard, TypeVar

import attrs

from .._errors import (
    AuthenticationError,
    ContextLengthExceeded,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)
from .._events import Delta
from .._provider import Completion
from ._sse import SSEEvent

__all__ = [
    "RETRYABLE_STATUSES",
    "HttpRequest",
    "Memo",
    "StreamDecoder",
    "error_from_status",
    "is_object",
    "loads",
    "parse_retry_after",
    "rate_limit_headers",
    "request_id",
    "scan_json",
]

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "context length",
    "context window",
    "prompt is too long",
    "maximum context",
    "too many tokens",
    "input is too long",
)
_QUOTA_MARKERS = ("insufficient_quota", "quota", "billing")


@attrs.frozen(kw_only=True)
class HttpRequest:
    """One HTTP request a codec encoded: the transport sends it as JSON.

    >>> HttpRequest(path="/v1/messages", headers=(("x-api-key", "sk-..."),), body={...})
    """

    method: str = "POST"
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    body: Mapping[str, Any] = attrs.field(factory=dict)
    stream: bool = False


class StreamDecoder(Protocol):
    """Fed the SSE events of one streamed reply; emits deltas; ends with the completion.

    ``feed`` raises a ``ProviderError`` for an in-stream error event; ``finish`` raises a
    ``ProtocolError`` when the stream ended before its end marker.
    """

    def feed(self, event: SSEEvent) -> list[Delta]: ...

    def finish(self) -> Completion: ...


_K = TypeVar("_K")
_V = TypeVar("_V")


class Memo(Generic[_K, _V]):
    """``derive(key)``, computed once per key object: for wire forms of frozen values (a
    ``ToolSpec``, a ``Message``) that every turn of a conversation sends again.

    Keyed by identity, not equality (a tool's schema is an unhashable dict). A weak reference's
    callback drops an entry when its key dies, before its id can be reused, so the memo holds
    no key alive; a key that cannot be weakly referenced is derived every time. The values are
    shared by every request that uses them: callers must not mutate them.

    >>> class Key: ...
    >>> derived = []
    >>> memo = Memo(lambda key: derived.append(1) or len(derived))
    >>> key = Key()
    >>> memo(key), memo(key), len(derived)
    (1, 1, 1)
    >>> del key
    >>> len(memo)
    0
    """

    __slots__ = ("_derive", "_entries")

    def __init__(self, derive: Callable[[_K], _V]) -> None:
        self._derive = derive
        self._entries: dict[int, tuple[weakref.ReferenceType[_K], _V]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __call__(self, key: _K) -> _V:
        ident = id(key)
        entry = self._entries.get(ident)
        if entry is not None and entry[0]() is key:
            return entry[1]
        value = self._derive(key)
        entries = self._entries
        try:
            ref = weakref.ref(key, lambda _: entries.pop(ident, None))
        except TypeError:  # no weak references to this type: nothing is remembered
            return value
        entries[ident] = (ref, value)
        return value


# -- JSON parsing ---------------------------------------------------------------------------------

# ``json.loads(text)`` wraps the C scanner in three Python-level calls and two regex matches for
# the whitespace around the value: on a stream's small events that is as much work as the parse
# itself (about 1.3 µs against 0.5 µs for an Anthropic text delta). The hot paths call the scanner
# directly and leave everything unusual (whitespace around the value, invalid JSON) to
# ``json.loads``, so results and exceptions stay exactly those of ``json.loads``.
# (``JSONDecoder.__init__`` sets ``scan_once``: the C scanner when available; typeshed omits it.)
_decoder = json.JSONDecoder()  # json.loads's own settings
scan_json: Callable[[str, int], tuple[Any, int]] = _decoder.scan_once  # type: ignore[attr-defined]
"""``scan_json(text, 0)`` is ``(value, end)`` for the JSON value at the start of ``text``."""


def loads(data: str | bytes | bytearray) -> Any:
    """``json.loads(data)``: the same value or the same exception, faster.

    ``json.loads`` reads bytes in the encoding their BOM or NUL bytes give, with
    ``surrogatepass``: bytes that start with ``{`` and then no NUL are UTF-8, decoded here the
    same way; any other bytes go to ``json.loads``.

    >>> loads('{"a": [1, 2.5, null]}'), loads(b' "padded" '), loads(b'{"ok": true}')
    ({'a': [1, 2.5, None]}, 'padded', {'ok': True})
    """
    if type(data) is not str:
        if type(data) is not bytes or data[:1] != b"{" or data[1:2] == b"\x00":
            return json.loads(data)
        try:
            data = data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return json.loads(data)
    try:
        value, end = scan_json(data, 0)
    except (StopIteration, ValueError, RecursionError):
        return json.loads(data)  # leading whitespace, or the error json.loads raises
    if end != len(data):
        return json.loads(data)  # trailing whitespace, or "Extra data"
    return value


def is_object(value: object) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(value, Mapping)``, in a third of the time for what JSON makes (a ``dict``, or
    ``None`` for a missing field): the decoders ask it of almost every value they read.

    >>> is_object({}), is_object(None), is_object([])
    (True, False, False)
    """
    return type(value) is dict or (value is not None and isinstance(value, Mapping))


def request_id(headers: Mapping[str, str]) -> str | None:
    """The provider's request id header, if any (headers with lower-case names)."""
    for name in ("request-id", "x-request-id", "openai-request-id", "cf-ray"):
        value = headers.get(name)
        if value:
            return value
    return None


def rate_limit_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The ``anthropic-ratelimit-*`` and ``x-ratelimit-*`` headers."""
    return {
        name: value
        for name, value in headers.items()
        if name.startswith(("anthropic-ratelimit-", "x-ratelimit-"))
    }


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``retry-after`` (seconds or an HTTP date)."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            value = float(milliseconds) / 1000
        except ValueError:
            value = -1.0
        if value >= 0:
            return value
    seconds = headers.get("retry-after")
    if not seconds:
        return None
    try:
        value = float(seconds)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(seconds)
        except (TypeError, ValueError):
            return None
        value = moment.timestamp() - (time.time() if now is None else now)
        return max(value, 0.0)
    return value if value >= 0 else None


def error_from_status(
    *,
    provider: str,
    status: int | None,
    headers: Mapping[str, str] | None = None,
    body: bytes | str = "",
    error_type: str | None = None,
    message: str | None = None,
    code: str | None = None,
) -> ProviderError:
    """The typed error for an HTTP error reply, or (``status=None``) for an error event inside
    a stream. The caller parsed type, message and code from the body in its own wire format;
    whatever it could not find stays None."""
    headers = headers or {}
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    summary = message or text.strip()[:300] or "no details"
    where = f"HTTP {status}" if status is not None else "error in stream"
    described = f"{provider}: {where}" + (f" {error_type}" if error_type else "") + f": {summary}"
    kind, retryable = _classify(status, " ".join(filter(None, (error_type, code, message))).lower())
    return kind(
        described,
        provider=provider,
        retryable=retryable,
        status=status,
        error_type=error_type or code,
        request_id=request_id(headers),
        body=text,
        retry_after=parse_retry_after(headers),
        rate_limits=rate_limit_headers(headers),
    )


_BY_TYPE: tuple[tuple[str, type[ProviderError], bool], ...] = (
    ("authentication", AuthenticationError, False),
    ("invalid_api_key", AuthenticationError, False),
    ("permission", PermissionDeniedError, False),
    ("not_found", NotFoundError, False),
    ("invalid_request", InvalidRequestError, False),
    ("request_too_large", InvalidRequestError, False),
    ("overloaded", OverloadedError, True),
    ("rate_limit", RateLimitError, True),
    ("resource_exhausted", RateLimitError, True),
    ("timeout", ProviderTimeout, True),
    ("server_error", ServerError, True),
    ("api_error", ServerError, True),
    ("internal", ServerError, True),
    ("unavailable", ServerError, True),
)


def _classify(status: int | None, haystack: str) -> tuple[type[ProviderError], bool]:
    if any(marker in haystack for marker in _CONTEXT_MARKERS):
        return ContextLengthExceeded, False
    if status is None:
        for marker, kind, retryable in _BY_TYPE:
            if marker in haystack:
                return kind, retryable
        return ProviderError, False
    retryable = status in RETRYABLE_STATUSES
    if status == 401:
        return AuthenticationError, False
    if status == 403:
        return PermissionDeniedError, False
    if status == 404:
        return NotFoundError, False
    if status == 408:
        return ProviderTimeout, True
    if status == 429:
        quota = any(marker in haystack for marker in _QUOTA_MARKERS)
        return RateLimitError, not quota
    if status == 529 or "overloaded" in haystack:
        return OverloadedError, True
    if status >= 500:
        return ServerError, retryable
    return InvalidRequestError, retryable
