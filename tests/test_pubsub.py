"""alloy.PubSub: synchronous publish, bounded per-subscriber buffers, overflow policies."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given, strategies as st

import alloy
from alloy._pubsub import Broker, PubSub, Receiver, Subscription, SubscriptionOverflow


async def test_publish_reaches_every_subscriber_of_the_topic() -> None:
    bus = PubSub()
    with bus.subscribe("a") as one, bus.subscribe("a") as two, bus.subscribe("b") as other:
        assert bus.publish("a", "hello") == 2
        assert await one.receive() == "hello"
        assert await two.receive() == "hello"
        assert other.pending == 0


async def test_publish_without_subscribers_is_a_no_op() -> None:
    bus = PubSub()
    assert bus.publish("nobody", 1) == 0


async def test_messages_arrive_in_order_and_any_value_goes() -> None:
    bus = PubSub()
    values = [1, "two", {"three": 3}, None, ("five",)]
    with bus.subscribe("t") as sub:
        for value in values:
            bus.publish("t", value)
        assert [await sub.receive() for _ in values] == values


async def test_receive_waits_for_the_next_message(autojump_clock: trio.testing.MockClock) -> None:
    bus = PubSub()
    with bus.subscribe("t") as sub:

        async def later() -> None:
            await trio.sleep(3)
            bus.publish("t", "late")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(later)
            assert await sub.receive() == "late"
            assert trio.current_time() == 3


async def test_publish_never_blocks_even_when_nobody_reads() -> None:
    bus = PubSub(buffer=4)
    with bus.subscribe("t") as sub:
        for i in range(1000):
            bus.publish("t", i)  # synchronous: nothing to await, nothing to block on
        assert sub.pending == 4


async def test_subscription_ends_with_its_block() -> None:
    bus = PubSub()
    with bus.subscribe("t") as sub:
        assert bus.subscriber_count("t") == 1
    assert bus.subscriber_count("t") == 0
    assert bus.publish("t", "after") == 0
    with pytest.raises(trio.ClosedResourceError):
        await sub.receive()


async def test_a_subscription_must_be_entered() -> None:
    bus = PubSub()
    sub = bus.subscribe("t")
    assert bus.publish("t", "x") == 0  # not subscribed until entered
    with pytest.raises(RuntimeError, match="context manager"):
        await sub.receive()
    with sub, pytest.raises(RuntimeError):
        sub.__enter__()


async def test_drop_oldest_counts_what_was_lost() -> None:
    bus = PubSub()
    with bus.subscribe("t", buffer=3) as sub:
        for i in range(10):
            assert bus.publish("t", i) == 1
        assert sub.lagged == 7
        assert [sub.receive_nowait() for _ in range(3)] == [7, 8, 9]
        with pytest.raises(trio.WouldBlock):
            sub.receive_nowait()


async def test_close_policy_delivers_the_buffer_then_raises() -> None:
    bus = PubSub(buffer=2, overflow="close")
    with bus.subscribe("t") as sub:
        assert bus.publish("t", 1) == 1
        assert bus.publish("t", 2) == 1
        assert bus.publish("t", 3) == 0  # overflow: the subscription is closed
        assert bus.publish("t", 4) == 0
        assert bus.subscriber_count("t") == 0
        assert await sub.receive() == 1
        assert await sub.receive() == 2
        with pytest.raises(SubscriptionOverflow) as caught:
            await sub.receive()
        assert (caught.value.topic, caught.value.buffer) == ("t", 2)
        assert isinstance(caught.value, alloy.AlloyError)


async def test_a_slow_subscriber_does_not_hold_back_a_fast_one() -> None:
    bus = PubSub()
    with bus.subscribe("t", buffer=2) as slow, bus.subscribe("t", buffer=100) as fast:
        for i in range(50):
            bus.publish("t", i)
        assert slow.lagged == 48
        assert fast.lagged == 0
        assert [fast.receive_nowait() for _ in range(50)] == list(range(50))


async def test_async_iteration_stops_when_closed() -> None:
    bus = PubSub()
    got: list[int] = []
    with bus.subscribe("t") as sub:
        for i in range(3):
            bus.publish("t", i)
        async for message in sub:
            got.append(message)
            if len(got) == 3:
                sub.close()
    assert got == [0, 1, 2]


async def test_concurrent_readers_share_the_messages() -> None:
    bus = PubSub()
    got: list[int] = []
    with bus.subscribe("t") as sub:

        async def reader() -> None:
            got.append(await sub.receive())

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                nursery.start_soon(reader)
                await trio.testing.wait_all_tasks_blocked()
                bus.publish("t", 1)
                bus.publish("t", 2)
    assert sorted(got) == [1, 2]


async def test_close_wakes_a_waiting_receiver() -> None:
    bus = PubSub()
    with bus.subscribe("t") as sub:
        async with trio.open_nursery() as nursery:

            async def wait() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await sub.receive()

            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            sub.close()


async def test_receive_is_a_checkpoint() -> None:
    bus = PubSub()
    with bus.subscribe("t") as sub:
        bus.publish("t", 1)
        with trio.CancelScope() as scope:
            scope.cancel()
            await sub.receive()
        assert scope.cancelled_caught
        assert sub.pending == 1  # a cancelled receive takes nothing


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(alloy.ConfigError):
        PubSub(buffer=0)
    with pytest.raises(alloy.ConfigError):
        PubSub(overflow="block")  # type: ignore[arg-type]
    bus = PubSub()
    with pytest.raises(alloy.ConfigError):
        bus.subscribe("t", buffer=-1)
    with pytest.raises(alloy.ConfigError):
        bus.publish(1, "x")  # type: ignore[arg-type]


def test_the_in_process_bus_satisfies_the_protocols() -> None:
    bus = PubSub()
    assert isinstance(bus, Broker)
    with bus.subscribe("t") as sub:
        assert isinstance(sub, Receiver)
        assert isinstance(sub, Subscription)
        assert "t" in repr(sub)


@given(
    buffer=st.integers(1, 8),
    messages=st.integers(0, 40),
    reads=st.lists(st.integers(0, 40), max_size=5),
)
def test_drop_oldest_keeps_the_newest_and_counts_the_rest(
    buffer: int, messages: int, reads: list[int]
) -> None:
    """Interleaved publishing and reading: what is read is in order, nothing is duplicated,
    and read + lagged + still buffered == published."""
    bus = PubSub()
    received: list[int] = []
    with bus.subscribe("t", buffer=buffer) as sub:
        published = 0
        for batch in [messages, *reads]:
            for _ in range(batch):
                bus.publish("t", published)
                published += 1
            while True:
                try:
                    received.append(sub.receive_nowait())
                except trio.WouldBlock:
                    break
        assert received == sorted(set(received))
        assert len(received) + sub.lagged + sub.pending == published
        if published:
            assert received[-1] == published - 1
