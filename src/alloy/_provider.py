"""What a provider implements: turn a request into the model's next message.

A provider needs one method, ``complete``. It may add ``stream``, which sends ``Delta`` events
into the given channel while the model speaks and then returns the same ``Completion``; the
run uses ``stream`` whenever someone is listening to events and falls back to ``complete``
otherwise (or when the provider has no ``stream``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

from ._events import Delta
from ._messages import Message, Usage
from ._tools._tool import ToolSpec

__all__ = ["Completion", "DeltaSink", "Provider", "Request", "StopReason", "StreamingProvider"]


class StopReason(enum.StrEnum):
    """Why the model stopped. Compare with strings: ``result.stop_reason == "max_tokens"``.

    - ``end_turn``: the model finished its answer.
    - ``tool_use``: the model wants tool results before it goes on.
    - ``max_tokens``: the reply was cut off at the output limit (the text is incomplete).
    - ``stop_sequence``: a stop sequence was produced.
    - ``refusal``: the model (or a content filter) declined to answer.
    - ``pause_turn``: the provider paused a long server-side turn; the run sends the
      conversation back so it can continue.

    >>> alloy.StopReason("max_tokens") == "max_tokens"
    True
    """

    END_TURN = "end_turn"
    TOOL_USE = "tool_use"
    MAX_TOKENS = "max_tokens"
    STOP_SEQUENCE = "stop_sequence"
    REFUSAL = "refusal"
    PAUSE_TURN = "pause_turn"


@attrs.frozen(kw_only=True)
class Request:
    """Everything a provider needs for one model call.

    >>> Request(messages=(Message.user("hi"),), system_prompt="Be brief.")
    """

    messages: tuple[Message, ...]
    system_prompt: str | None = None
    tools: tuple[ToolSpec, ...] = ()
    options: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Completion:
    """The model's reply to one ``Request``.

    >>> Completion(message=Message.assistant("hello"), stop_reason=StopReason.END_TURN,
    ...            usage=Usage(input_tokens=12, output_tokens=3))
    """

    message: Message
    stop_reason: StopReason = attrs.field(converter=StopReason)
    usage: Usage = Usage()
    model: str | None = None
    request_id: str | None = None
    """The provider's id for the HTTP request, when it sent one."""
    rate_limits: Mapping[str, str] = attrs.field(factory=dict)
    """The provider's rate-limit headers (``anthropic-ratelimit-*``, ``x-ratelimit-*``)."""


class DeltaSink(Protocol):
    """Where a streaming provider sends deltas; a ``trio.MemorySendChannel[Delta]`` is one.

    >>> await deltas.send(alloy.TextDelta(text="Hel"))
    """

    async def send(self, value: Delta, /) -> None: ...


@runtime_checkable
class Provider(Protocol):
    """A model behind some API. ``complete`` is required.

    A minimal provider::

        class Echo:
            async def complete(self, request: alloy.Request) -> alloy.Completion:
                return alloy.Completion(message=alloy.Message.assistant(request.messages[-1].text),
                                        stop_reason=alloy.StopReason.END_TURN)

    Raise ``alloy.ProviderError`` (or a subclass) when the call fails.
    """

    async def complete(self, request: Request) -> Completion: ...


@runtime_checkable
class StreamingProvider(Provider, Protocol):
    """A provider that can also stream: ``stream`` sends deltas, then returns the completion.

    The deltas must add up to the returned message: the text of the ``TextDelta`` events is the
    message's text, and so on::

        async def stream(self, request, deltas):
            await deltas.send(alloy.TextDelta(text="hel"))
            await deltas.send(alloy.TextDelta(text="lo"))
            return alloy.Completion(message=alloy.Message.assistant("hello"), ...)
    """

    async def stream(self, request: Request, deltas: DeltaSink) -> Completion: ...


def provider_name(provider: object) -> str:
    """A short name for a provider, for error messages."""
    name = getattr(provider, "name", None)
    return name if isinstance(name, str) and name else type(provider).__name__
