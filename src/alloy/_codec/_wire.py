"""What every wire codec shares: the HTTP request it encodes, the stream decoder it offers, and
the mapping from an HTTP error to a typed ``ProviderError``. Sans-IO: no trio, no httpx."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any, Protocol

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
    "StreamDecoder",
    "error_from_status",
    "parse_retry_after",
    "rate_limit_headers",
    "request_id",
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
