"""A provider over HTTP: a sans-IO codec + the transport + a retry policy + fallbacks."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from typing import Any, Protocol

import attrs
import trio

from .._codec._sse import SSEDecoder, SSEError
from .._codec._wire import HttpRequest, StreamDecoder, rate_limit_headers, request_id
from .._errors import (
    ConfigError,
    OverloadedError,
    ProtocolError,
    ProviderError,
    ProviderTimeout,
    ServerError,
)
from .._provider import Completion, DeltaSink, Provider, Request
from .._retry import RetryPolicy
from .._transport import Transport

__all__ = ["Codec", "HttpProvider", "api_key_from"]


class Codec(Protocol):
    """What a provider needs from a wire codec."""

    def encode(self, request: Request, *, stream: bool) -> HttpRequest: ...

    def decode_response(self, body: bytes) -> Completion: ...

    def stream_decoder(self) -> StreamDecoder: ...

    def decode_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError: ...


def api_key_from(
    api_key: str | None, variable: str, provider: str, *, required: bool
) -> str | None:
    """The given key, else the environment variable; a ``ConfigError`` when required and absent."""
    key = api_key if api_key is not None else os.environ.get(variable)
    if required and not key:
        raise ConfigError(f"{provider}: no API key; pass api_key= or set {variable}")
    return key


class HttpProvider:
    """Common machinery of the HTTP providers: retries, fallbacks, streaming, deadlines."""

    name: str

    def __init__(
        self,
        *,
        name: str,
        codec: Codec,
        api_url: str,
        client: Any | None,
        connect_timeout: float,
        read_timeout: float,
        timeout: float | None,
        retry: RetryPolicy | None,
        fallbacks: Sequence[Provider],
    ) -> None:
        if timeout is not None and not timeout > 0:
            raise ConfigError(f"{name}: timeout must be positive seconds or None, got {timeout!r}")
        if not read_timeout > 0 or not connect_timeout > 0:
            raise ConfigError(f"{name}: connect_timeout and read_timeout must be positive")
        self.name = name
        self.codec = codec
        self.timeout = timeout
        self.retry = retry if retry is not None else RetryPolicy()
        self.fallbacks = tuple(fallbacks)
        self.transport = Transport(
            api_url=api_url,
            provider=name,
            client=client,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )

    async def aclose(self) -> None:
        """Close the HTTP client this provider created (not one you passed in)."""
        await self.transport.aclose()

    async def __aenter__(self) -> HttpProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def stream(self, request: Request, deltas: DeltaSink) -> Completion:
        """One streamed model call: deltas go to ``deltas`` as they arrive."""
        return await self.complete(request, deltas)

    async def complete(self, request: Request, _deltas: DeltaSink | None = None) -> Completion:
        """One model call, retried and falling back as configured (``_deltas``: ``stream``'s)."""
        deltas = _deltas
        # Deliberately flat (no closures, no wrapper coroutines, the non-streamed exchange
        # inline): every suspension resumes each frame of this call chain, and a thousand
        # conversations waiting on their replies keep a thousand of each frame alive.
        progress = _Progress()
        deadline = math.inf if self.timeout is None else trio.current_time() + self.timeout
        tries = 0
        try:
            with trio.CancelScope(deadline=deadline) as scope:
                while True:
                    try:
                        if deltas is not None:
                            return await self._stream_once(request, deltas, progress)
                        reply = await self.transport.send(self.codec.encode(request, stream=False))
                        if reply.status >= 300:
                            raise self.codec.decode_error(reply.status, reply.headers, reply.body)
                        return _identified(self.codec.decode_response(reply.body), reply.headers)
                    except ProviderError as error:
                        wait = self.retry.wait_before(tries, error, delivered=progress.delivered)
                        if wait is None:
                            raise
                    tries += 1
                    await trio.sleep(wait)
            # Only reached when the deadline cancelled the call.
            assert scope.cancelled_caught
            raise ProviderTimeout(
                f"{self.name}: no complete reply within {self.timeout:g}s", provider=self.name
            )
        except ProviderError as error:
            if progress.delivered or not _worth_a_fallback(error) or not self.fallbacks:
                raise
            return await self._fall_back(request, deltas, error)

    async def _fall_back(
        self, request: Request, deltas: DeltaSink | None, error: ProviderError
    ) -> Completion:
        last = error
        delivered = False

        class Watch:
            """Passes deltas on, noting that some were delivered."""

            async def send(self, delta: Any) -> None:
                nonlocal delivered
                delivered = True
                assert deltas is not None
                await deltas.send(delta)

        for fallback in self.fallbacks:
            stream = getattr(fallback, "stream", None)
            try:
                if deltas is not None and stream is not None:
                    completion: Completion = await stream(request, Watch())
                else:
                    completion = await fallback.complete(request)
            except ProviderError as failure:
                last = failure
                # Never mix a second reply into deltas a failed one already delivered.
                if delivered or not _worth_a_fallback(failure):
                    raise
                continue
            return completion
        raise last

    async def _stream_once(
        self, request: Request, deltas: DeltaSink, progress: _Progress
    ) -> Completion:
        http_request = self.codec.encode(request, stream=True)
        reply = await self.transport.open_stream(http_request)
        try:
            if reply.status >= 300:
                raise self.codec.decode_error(reply.status, reply.headers, await reply.read())
            if "text/event-stream" not in reply.headers.get("content-type", "text/event-stream"):
                # Some hosts answer a streamed request with one JSON body.
                return _identified(self.codec.decode_response(await reply.read()), reply.headers)
            sse = SSEDecoder()
            decoder = self.codec.stream_decoder()
            send = deltas.send
            try:
                async with aclosing(reply.chunks()) as chunks:
                    async for chunk in chunks:
                        for event in sse.feed(chunk):
                            for delta in decoder.feed(event):
                                progress.delivered = True
                                await send(delta)
                for event in sse.close():
                    for delta in decoder.feed(event):
                        progress.delivered = True
                        await send(delta)
                return _identified(decoder.finish(), reply.headers)
            except SSEError as exc:
                raise ProtocolError(f"{self.name}: {exc}", provider=self.name) from exc
            except ProviderError as exc:
                # An error event inside a 200 stream: the reply's headers still identify it.
                exc.request_id = exc.request_id or request_id(reply.headers)
                exc.rate_limits = exc.rate_limits or rate_limit_headers(reply.headers)
                raise
        finally:
            await reply.aclose()


class _Progress:
    """Whether a call has delivered any delta (it is then never retried nor replaced)."""

    __slots__ = ("delivered",)

    def __init__(self) -> None:
        self.delivered = False


def _worth_a_fallback(error: ProviderError) -> bool:
    """Fallbacks are for availability problems, not for requests the provider refused."""
    return error.retryable or isinstance(error, OverloadedError | ServerError | ProviderTimeout)


def _identified(completion: Completion, headers: Mapping[str, str]) -> Completion:
    """The completion with the reply's request id and rate-limit headers."""
    return attrs.evolve(
        completion,
        request_id=completion.request_id or request_id(headers),
        rate_limits=completion.rate_limits or rate_limit_headers(headers),
    )
