"""Delivering a run's events: stamping ``seq`` and ``turn`` and sending them on one channel."""

from __future__ import annotations

from typing import Any

import trio

from ._errors import ProviderError
from ._events import (
    Delta,
    Event,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallStarted,
)

__all__ = ["Emitter"]


class Emitter:
    """The run's single event outlet; also the ``DeltaSink`` handed to streaming providers.

    ``seq`` is taken just before each send; trio wakes blocked senders in FIFO order, so the
    consumer receives events in ``seq`` order even when parallel tools emit at once.
    """

    __slots__ = ("_channel", "_seq", "_text", "turn")

    def __init__(self, channel: trio.MemorySendChannel[Event]) -> None:
        self._channel = channel
        self._seq = 0
        self._text: list[str] = []
        self.turn = 0

    def begin_turn(self, turn: int) -> None:
        """Events from now on belong to ``turn``; forget the previous turn's partial text."""
        self.turn = turn
        self._text.clear()

    def partial_text(self) -> str:
        """The text streamed so far in the current turn."""
        return "".join(self._text)

    async def send(self, value: Delta, /) -> None:
        """Stamp a provider's delta and deliver it."""
        self._seq += 1
        kind = type(value)
        event: Event
        if kind is TextDelta:
            self._text.append(value.text)  # type: ignore[union-attr]
            event = TextDelta(text=value.text, seq=self._seq, turn=self.turn)  # type: ignore[union-attr]
        elif kind is ToolCallDelta:
            event = ToolCallDelta(
                index=value.index,  # type: ignore[union-attr]
                arguments=value.arguments,  # type: ignore[union-attr]
                seq=self._seq,
                turn=self.turn,
            )
        elif kind is ThinkingDelta:
            event = ThinkingDelta(text=value.text, seq=self._seq, turn=self.turn)  # type: ignore[union-attr]
        elif kind is ToolCallStarted:
            event = ToolCallStarted(
                index=value.index,  # type: ignore[union-attr]
                id=value.id,  # type: ignore[union-attr]
                name=value.name,  # type: ignore[union-attr]
                seq=self._seq,
                turn=self.turn,
            )
        else:
            raise ProviderError(
                f"a streaming provider sent {value!r}; it may only send TextDelta, ThinkingDelta, "
                "ToolCallStarted and ToolCallDelta"
            )
        await self._deliver(event)

    async def emit(self, kind: type[Event], /, **fields: Any) -> None:
        """Create and deliver an event of the run itself (tool and turn events)."""
        self._seq += 1
        await self._deliver(kind(seq=self._seq, turn=self.turn, **fields))

    async def _deliver(self, event: Event) -> None:
        # While the buffer has room, hand the event over without a trip through the scheduler
        # (the consumer then takes several at once); when it is full, park until it has room.
        # Parked senders are served first, so events still arrive in seq order.
        try:
            self._channel.send_nowait(event)
        except trio.WouldBlock:
            await self._channel.send(event)
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
