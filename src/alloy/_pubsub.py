"""In-process publish/subscribe: topics, bounded per-subscriber buffers, an overflow policy.

``publish`` is synchronous and never blocks the publisher: each subscriber has its own bounded
buffer, and a subscriber that falls behind pays for it alone, by the policy it chose:

- ``"drop_oldest"`` (the default): the oldest buffered message is dropped to make room and the
  subscription's ``lagged`` counter goes up by one. The subscriber sees the newest messages and
  knows how many it missed.
- ``"close"``: the subscription is closed. The subscriber first receives every message that
  was buffered before the overflow, in order, then ``SubscriptionOverflow``. Nothing is
  silently skipped.

``Broker`` and ``Receiver`` are the protocols an application implements to plug in its own
backend (Redis, NATS, Postgres LISTEN...); agents only use ``publish`` and ``subscribe``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

import trio

from ._errors import AlloyError, ConfigError

__all__ = [
    "Broker",
    "Overflow",
    "PubSub",
    "Receiver",
    "Subscription",
    "SubscriptionOverflow",
]

Overflow: TypeAlias = Literal["drop_oldest", "close"]
"""What a full subscriber buffer does with a new message: ``"drop_oldest"`` (count it in
``lagged``) or ``"close"`` (end the subscription with ``SubscriptionOverflow``).
``bus.subscribe("t", buffer=10, overflow="close")``."""

DEFAULT_BUFFER = 256
"""Messages buffered per subscriber unless ``buffer=`` says otherwise."""


class SubscriptionOverflow(AlloyError):
    """A ``"close"``-policy subscription fell ``buffer`` messages behind and was closed.

    Raised by ``receive`` once the messages buffered before the overflow have been received::

        with bus.subscribe("events", buffer=10, overflow="close") as sub:
            try:
                async for message in sub:
                    await handle(message)
            except alloy.SubscriptionOverflow as exc:
                log.warning("fell behind on %s; resynchronising", exc.topic)
    """

    def __init__(self, message: str, *, topic: str, buffer: int) -> None:
        super().__init__(message)
        self.topic = topic
        self.buffer = buffer


@runtime_checkable
class Receiver(Protocol):
    """What ``Broker.subscribe`` yields: ``receive`` waits for the next message.

    It ends with ``trio.EndOfChannel`` or ``trio.ClosedResourceError`` when the subscription
    is over. ``alloy.Subscription`` is one::

        with broker.subscribe("jobs") as receiver:
            job = await receiver.receive()
    """

    async def receive(self) -> Any: ...


@runtime_checkable
class Broker(Protocol):
    """A pub/sub backend: ``alloy.PubSub`` or your own (Redis, NATS...).

    ``publish`` must not block (buffer or hand off to a background task); ``subscribe``
    returns a context manager whose exit unsubscribes::

        class RedisBroker:
            def publish(self, topic: str, message: object) -> None:
                self._outbox.send_nowait((topic, message))   # a task of yours sends it
            def subscribe(self, topic: str) -> AbstractContextManager[alloy.Receiver]:
                ...

        agent = await alloy.Agent.start(nursery, provider=p, pubsub=RedisBroker(...))
    """

    def publish(self, topic: str, message: Any) -> Any: ...

    def subscribe(self, topic: str) -> AbstractContextManager[Receiver]: ...


class PubSub:
    """An in-process pub/sub bus: topics are plain strings, messages any Python value.

    ``buffer`` and ``overflow`` are the defaults for every subscription (each ``subscribe``
    may override them)::

        bus = alloy.PubSub()
        with bus.subscribe("agent:s1:responses") as responses:
            bus.publish("agent:s1:responses", "hello")    # synchronous, never blocks
            assert await responses.receive() == "hello"
    """

    def __init__(self, *, buffer: int = DEFAULT_BUFFER, overflow: Overflow = "drop_oldest") -> None:
        self._buffer = _check_buffer(buffer)
        self._overflow = _check_overflow(overflow)
        self._topics: dict[str, dict[Subscription, None]] = {}

    def publish(self, topic: str, message: Any) -> int:
        """Deliver ``message`` to every current subscriber of ``topic``; never blocks.

        Returns how many subscriptions received it (a ``"close"`` subscription that
        overflowed on this message does not count)::

            delivered = bus.publish("jobs", {"id": 7})
        """
        if not isinstance(topic, str):
            raise ConfigError(f"topic must be a string, got {topic!r}")
        subscribers = self._topics.get(topic)
        if not subscribers:
            return 0
        delivered = 0
        for subscription in list(subscribers):
            delivered += subscription._deliver(message)
        return delivered

    def subscribe(
        self, topic: str, *, buffer: int | None = None, overflow: Overflow | None = None
    ) -> Subscription:
        """A subscription to ``topic``, active inside its ``with`` block.

        Messages published after the block was entered are buffered for it (``buffer``
        of them at most, then ``overflow`` applies); leaving the block unsubscribes::

            with bus.subscribe("agent:s1:responses", buffer=16) as responses:
                response = await responses.receive()
        """
        if not isinstance(topic, str):
            raise ConfigError(f"topic must be a string, got {topic!r}")
        return Subscription(
            self,
            topic,
            self._buffer if buffer is None else _check_buffer(buffer),
            self._overflow if overflow is None else _check_overflow(overflow),
        )

    def subscriber_count(self, topic: str) -> int:
        """How many subscriptions ``topic`` has right now.

        >>> bus.subscriber_count("agent:s1:responses")
        0
        """
        return len(self._topics.get(topic, ()))

    def _add(self, subscription: Subscription) -> None:
        self._topics.setdefault(subscription.topic, {})[subscription] = None

    def _remove(self, subscription: Subscription) -> None:
        subscribers = self._topics.get(subscription.topic)
        if subscribers is not None:
            subscribers.pop(subscription, None)
            if not subscribers:
                del self._topics[subscription.topic]


class Subscription:
    """One subscriber's view of a topic: a bounded buffer you ``receive`` from.

    Use it as a context manager (entering subscribes, leaving unsubscribes); iterate it or
    call ``receive``. ``lagged`` counts messages dropped by the ``"drop_oldest"`` policy::

        with bus.subscribe("ticks", buffer=100) as ticks:
            async for tick in ticks:
                ...
            print(ticks.lagged)
    """

    __slots__ = ("_bus", "_items", "_lot", "_state", "buffer", "lagged", "overflow", "topic")

    def __init__(self, bus: PubSub, topic: str, buffer: int, overflow: Overflow) -> None:
        self._bus = bus
        self.topic = topic
        self.buffer = buffer
        self.overflow: Overflow = overflow
        self.lagged = 0
        self._items: deque[Any] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._state: Literal["new", "open", "overflowed", "closed"] = "new"

    def __enter__(self) -> Subscription:
        if self._state != "new":
            raise RuntimeError("a Subscription can only be entered once")
        self._state = "open"
        self._bus._add(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Unsubscribe now; a pending or later ``receive`` raises ``trio.ClosedResourceError``.

        >>> sub.close()   # what leaving the ``with`` block does
        """
        self._bus._remove(self)
        self._state = "closed"
        self._items.clear()
        self._lot.unpark_all()

    @property
    def pending(self) -> int:
        """Messages buffered and not yet received.

        >>> sub.pending
        0
        """
        return len(self._items)

    def receive_nowait(self) -> Any:
        """The next buffered message, or ``trio.WouldBlock`` if there is none yet.

        >>> with bus.subscribe("t") as sub:
        ...     bus.publish("t", 1)
        ...     sub.receive_nowait()
        1
        """
        if self._items:
            return self._items.popleft()
        self._raise_if_over()
        raise trio.WouldBlock

    async def receive(self) -> Any:
        """Wait for the next message.

        Raises ``SubscriptionOverflow`` once a ``"close"`` subscription that overflowed has
        been drained, ``trio.ClosedResourceError`` after the block was left::

            message = await sub.receive()
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._items:
                item = self._items.popleft()
                await trio.lowlevel.cancel_shielded_checkpoint()
                return item
            self._raise_if_over()
            await self._lot.park()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except trio.ClosedResourceError:
            raise StopAsyncIteration from None

    def __repr__(self) -> str:
        return (
            f"<Subscription topic={self.topic!r} {self._state} pending={len(self._items)} "
            f"lagged={self.lagged}>"
        )

    def _raise_if_over(self) -> None:
        if self._state == "overflowed":
            raise SubscriptionOverflow(
                f"the subscription to {self.topic!r} fell more than {self.buffer} messages "
                "behind and was closed",
                topic=self.topic,
                buffer=self.buffer,
            )
        if self._state == "closed":
            raise trio.ClosedResourceError("this subscription was closed")
        if self._state == "new":
            raise RuntimeError(
                "use the subscription as a context manager: with bus.subscribe(topic) as sub: ..."
            )

    def _deliver(self, message: Any) -> int:
        if self._state != "open":
            return 0
        if len(self._items) >= self.buffer:
            if self.overflow == "close":
                self._state = "overflowed"
                self._bus._remove(self)
                self._lot.unpark_all()
                return 0
            self._items.popleft()
            self.lagged += 1
        self._items.append(message)
        self._lot.unpark()  # a woken waiter cannot be cancelled any more: it takes the message
        return 1


def _check_buffer(buffer: int) -> int:
    if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
        raise ConfigError(f"buffer must be a positive integer, got {buffer!r}")
    return buffer


def _check_overflow(overflow: str) -> Overflow:
    if overflow == "drop_oldest":
        return "drop_oldest"
    if overflow == "close":
        return "close"
    raise ConfigError(f"overflow must be 'drop_oldest' or 'close', got {overflow!r}")


def _iter_topics(topics: object) -> Iterator[str]:
    """Validate a ``subscribe=`` option: a list of topic strings."""
    if isinstance(topics, str | bytes):
        raise ConfigError("subscribe must be a list of topics, not a single string")
    try:
        items = list(topics)  # type: ignore[call-overload]
    except TypeError:
        raise ConfigError(f"subscribe must be a list of topic strings, got {topics!r}") from None
    for topic in items:
        if not isinstance(topic, str) or not topic:
            raise ConfigError(f"subscribe: every topic must be a non-empty string, got {topic!r}")
        yield topic
