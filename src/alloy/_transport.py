"""The one module that speaks HTTP: it sends a codec's ``HttpRequest`` with httpx2.

A client of httpx (0.28) works too: the API is the same, and errors of either library are
translated by their class names.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any

import attrs
import httpx2

from ._codec._wire import HttpRequest
from ._errors import ProviderConnectionError, ProviderError, ProviderTimeout

__all__ = ["HttpReply", "StreamReply", "Transport"]


@attrs.frozen
class HttpReply:
    """A whole reply: status, lower-cased headers, body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class StreamReply:
    """A reply being streamed: status and headers now, the body as chunks. Close it with
    ``aclose`` (the transport's caller does, in a ``finally``)."""

    __slots__ = ("_provider", "_response", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], response: Any, provider: str):
        self.status = status
        self.headers = headers
        self._response = response
        self._provider = provider

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """The body's bytes as they arrive (transport errors translated)."""
        try:
            async with aclosing(self._response.aiter_bytes()) as chunks:
                async for chunk in chunks:
                    yield chunk
        except Exception as exc:
            raise translate(exc, self._provider) from exc

    async def read(self) -> bytes:
        """The rest of the body."""
        try:
            return bytes(await self._response.aread())
        except Exception as exc:
            raise translate(exc, self._provider) from exc

    async def aclose(self) -> None:
        """Close the stream (its connection goes back to the pool if the body was read)."""
        await self._response.aclose()


class Transport:
    """Sends requests to ``api_url`` over one pooled client (the user's, or its own).

    ``read_timeout`` is an idle timeout: the longest wait for the next chunk of a reply.
    """

    def __init__(
        self,
        *,
        api_url: str,
        provider: str,
        client: Any | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        write_timeout: float = 30.0,
        pool_timeout: float = 30.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.provider = provider
        self._owns_client = client is None
        self._timeout = httpx2.Timeout(
            connect=connect_timeout, read=read_timeout, write=write_timeout, pool=pool_timeout
        )
        self._client: Any = (
            client if client is not None else httpx2.AsyncClient(timeout=self._timeout)
        )
        # A client you pass keeps its own timeouts.
        self._timeout_option: dict[str, Any] = (
            {} if client is not None else {"timeout": self._timeout}
        )

    async def aclose(self) -> None:
        """Close the client, if this transport created it."""
        if self._owns_client:
            await self._client.aclose()

    def _build(self, request: HttpRequest) -> tuple[str, dict[str, str], bytes]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if request.stream:
            headers["accept"] = "text/event-stream"
        headers.update(request.headers)
        body = json.dumps(request.body, ensure_ascii=False, separators=(",", ":")).encode()
        path = request.path
        if self.api_url.endswith("/v1") and path.startswith("/v1/"):
            path = path[3:]  # "http://localhost:11434/v1" is a common way to write the base URL
        return self.api_url + path, headers, body

    async def send(self, request: HttpRequest) -> HttpReply:
        """Send ``request`` and read the whole reply."""
        url, headers, body = self._build(request)
        try:
            response = await self._client.request(
                request.method, url, content=body, headers=headers, **self._timeout_option
            )
        except Exception as exc:
            raise translate(exc, self.provider) from exc
        return HttpReply(
            status=response.status_code, headers=_lower(response.headers), body=response.content
        )

    async def open_stream(self, request: HttpRequest) -> StreamReply:
        """Send ``request``; return the reply as soon as its headers arrived. The caller
        closes it (``await reply.aclose()`` in a ``finally``: at once, when cancelled)."""
        url, headers, body = self._build(request)
        client = self._client
        try:
            prepared = client.build_request(
                request.method, url, content=body, headers=headers, **self._timeout_option
            )
            response = await client.send(prepared, stream=True)
        except Exception as exc:
            raise translate(exc, self.provider) from exc
        return StreamReply(
            status=response.status_code,
            headers=_lower(response.headers),
            response=response,
            provider=self.provider,
        )


def _lower(headers: Any) -> dict[str, str]:
    # httpx and httpx2 already give lower-case names from items() (repeats joined by ", ").
    return dict(headers.items())


def translate(exc: BaseException, provider: str) -> ProviderError:
    """The ``ProviderError`` for an HTTP client exception (httpx2 or httpx)."""
    if isinstance(exc, ProviderError):
        return exc
    names = {cls.__name__ for cls in type(exc).__mro__}
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if "TimeoutException" in names:
        return ProviderTimeout(
            f"{provider}: timed out ({detail})", provider=provider, retryable=True
        )
    if names & {"NetworkError", "RemoteProtocolError", "TransportError", "ProtocolError"}:
        return ProviderConnectionError(
            f"{provider}: connection failed ({detail})", provider=provider, retryable=True
        )
    return ProviderConnectionError(f"{provider}: request failed ({detail})", provider=provider)
