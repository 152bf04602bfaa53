"""alloy.stream and on_event: typed events in order, bounded buffering, errors, early exit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import trio

import alloy
from alloy.testing import ScriptedProvider, call, error, reply, text, tool_call


async def collect(**options: Any) -> tuple[list[alloy.Event], alloy.Run]:
    events: list[alloy.Event] = []
    async with alloy.stream(**options) as run:
        async for event in run:
            events.append(event)
    return events, run


async def test_events_in_order_with_seq_and_turn(echo: object) -> None:
    provider = ScriptedProvider(
        [tool_call("echo", {"text": "hi"}, text="Checking. "), text("All done now")]
    )
    events, run = await collect(prompt="go", provider=provider, tools=[echo])
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "TextDelta",
        "ToolCallStarted",
        "ToolCallDelta",
        "TurnCompleted",
        "ToolStarted",
        "ToolFinished",
        "TextDelta",
        "TextDelta",
        "TextDelta",
        "TurnCompleted",
        "RunCompleted",
    ]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.turn for e in events] == [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]
    streamed = "".join(e.text for e in events if isinstance(e, alloy.TextDelta) and e.turn == 2)
    assert streamed == "All done now"
    assert run.result is not None
    final = events[-1]
    assert isinstance(final, alloy.RunCompleted)
    assert final.result is run.result
    assert run.result.status == "completed"
    finished = next(e for e in events if isinstance(e, alloy.ToolFinished))
    assert finished.result.content == "Echo: hi"
    assert finished.record.outcome == "ok"
    assert finished.record.duration >= 0
    completed = next(e for e in events if isinstance(e, alloy.TurnCompleted))
    assert completed.stop_reason == "tool_use"
    assert completed.usage == alloy.Usage(input_tokens=10, output_tokens=5)


async def test_streamed_tool_arguments_add_up(echo: object) -> None:
    arguments = {"text": "a fairly long argument that spans several fragments ✓"}
    provider = ScriptedProvider([tool_call("echo", arguments), text("ok")])
    events, _ = await collect(prompt="go", provider=provider, tools=[echo])
    fragments = "".join(e.arguments for e in events if isinstance(e, alloy.ToolCallDelta))
    import json

    assert json.loads(fragments) == arguments
    assert sum(isinstance(e, alloy.ToolCallDelta) for e in events) > 1


async def test_parallel_tool_events_are_delivered_in_seq_order() -> None:
    class Slow:
        name = "slow"
        description = "Wait a little."
        input_schema: Mapping[str, Any] = {"type": "object"}

        async def execute(self, arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
            for _ in range(3):
                await trio.lowlevel.checkpoint()
            return "ok"

    calls = [call("slow", {}) for _ in range(8)]
    provider = ScriptedProvider([reply(*calls), text("done")])
    events: list[alloy.Event] = []
    async with alloy.stream("go", provider=provider, tools=[Slow()]) as run:
        async for event in run:
            events.append(event)
            await trio.lowlevel.checkpoint()  # a consumer slower than the tools
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) == list(range(1, len(events) + 1))
    started = {e.call.id for e in events if isinstance(e, alloy.ToolStarted)}
    finished = {e.call.id for e in events if isinstance(e, alloy.ToolFinished)}
    assert started == finished == {f"call_{i}" for i in range(1, 9)}


async def test_stalled_consumer_parks_the_producer() -> None:
    sent = 0

    class Chatty:
        async def complete(self, request: alloy.Request) -> alloy.Completion:
            raise AssertionError("streaming expected")

        async def stream(self, request: alloy.Request, deltas: alloy.DeltaSink) -> alloy.Completion:
            nonlocal sent
            for _ in range(10_000):
                await deltas.send(alloy.TextDelta(text="x"))
                sent += 1
            return alloy.Completion(
                message=alloy.Message.assistant("x" * 10_000), stop_reason=alloy.StopReason.END_TURN
            )

    async with alloy.stream("go", provider=Chatty()) as run:
        first = await run.__anext__()
        assert isinstance(first, alloy.TextDelta)
        for _ in range(50):
            await trio.lowlevel.checkpoint()
        # The producer is parked on a full, bounded buffer.
        assert 0 < sent <= 32
    assert run.result is not None
    assert run.result.status == "cancelled"
    # The text streamed so far is kept (the delta parked in the channel included).
    assert set(run.result.text) == {"x"}
    assert len(run.result.text) in (sent, sent + 1)


class _Burst:
    """Sends ``size`` deltas at once (as one network chunk's worth), then ``size`` more."""

    def __init__(self, size: int) -> None:
        self.size = size

    async def complete(self, request: alloy.Request) -> alloy.Completion:
        raise AssertionError("streaming expected")

    async def stream(self, request: alloy.Request, deltas: alloy.DeltaSink) -> alloy.Completion:
        for _ in range(2):
            for _ in range(self.size):
                await deltas.send(alloy.TextDelta(text="x"))
            await trio.lowlevel.checkpoint()  # the next network read
        return alloy.Completion(
            message=alloy.Message.assistant("x" * 2 * self.size),
            stop_reason=alloy.StopReason.END_TURN,
        )


class _StepCounter(trio.abc.Instrument):
    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1


async def test_buffered_events_are_taken_without_a_scheduler_trip_each() -> None:
    counter = _StepCounter(trio.lowlevel.current_task())
    received = 0
    async with alloy.stream("go", provider=_Burst(12)) as run:
        trio.lowlevel.add_instrument(counter)
        try:
            async for event in run:
                received += isinstance(event, alloy.TextDelta)
        finally:
            trio.lowlevel.remove_instrument(counter)
    assert received == 24
    # One wake-up per burst (and a few for the run's start and end), not one per event.
    assert counter.steps < 12


async def test_a_cancelled_consumer_stops_even_with_events_buffered() -> None:
    taken = 0
    with trio.CancelScope() as scope:
        async with alloy.stream("go", provider=_Burst(12)) as run:
            async for _ in run:
                taken += 1
                if taken == 3:
                    scope.cancel()
    assert scope.cancelled_caught
    assert taken == 3
    assert run.result is not None and run.result.status == "cancelled"


async def test_on_event_sync_and_async(echo: object) -> None:
    seen_sync: list[alloy.Event] = []
    seen_async: list[alloy.Event] = []

    async def record(event: alloy.Event) -> None:
        await trio.lowlevel.checkpoint()
        seen_async.append(event)

    script = [tool_call("echo", {"text": "a"}), text("b c")]
    first = await alloy.run(
        "go", provider=ScriptedProvider(script), tools=[echo], on_event=seen_sync.append
    )
    second = await alloy.run("go", provider=ScriptedProvider(script), tools=[echo], on_event=record)
    assert [type(e) for e in seen_sync] == [type(e) for e in seen_async]
    assert isinstance(seen_sync[-1], alloy.RunCompleted)
    assert seen_sync[-1].result == first
    assert first.messages == second.messages


async def test_result_is_the_same_streaming_or_not(echo: object) -> None:
    script = [tool_call("echo", {"text": "a"}), text("done", thinking="hmm")]
    plain = await alloy.run("go", provider=ScriptedProvider(script), tools=[echo])
    _, run = await collect(prompt="go", provider=ScriptedProvider(script), tools=[echo])
    assert run.result is not None
    assert run.result.messages == plain.messages
    assert run.result.usage == plain.usage
    assert run.result.turns == plain.turns
    assert run.result.status == plain.status


async def test_thinking_deltas() -> None:
    events, _ = await collect(
        prompt="q", provider=ScriptedProvider([text("42", thinking="Let me see")])
    )
    thinking = "".join(e.text for e in events if isinstance(e, alloy.ThinkingDelta))
    assert thinking == "Let me see"


async def test_provider_error_raises_bare_from_iteration(echo: object) -> None:
    provider = ScriptedProvider([tool_call("echo", {"text": "a"}), error("overloaded")])
    events: list[alloy.Event] = []
    with pytest.raises(alloy.ProviderError, match="overloaded") as caught:
        async with alloy.stream("go", provider=provider, tools=[echo]) as run:
            async for event in run:
                events.append(event)
    assert type(caught.value) is alloy.ProviderError  # not an ExceptionGroup
    assert caught.value.result is not None
    assert caught.value.result.status == "error"
    assert run.result is caught.value.result
    assert len(run.result.messages) == 3
    assert not any(isinstance(e, alloy.RunCompleted) for e in events)


async def test_provider_error_raises_at_block_exit_when_not_reading() -> None:
    provider = ScriptedProvider([error("boom")])
    with pytest.raises(alloy.ProviderError, match="boom"):
        async with alloy.stream("go", provider=provider) as run:
            await trio.sleep(0.01)
    assert run.result is not None
    assert run.result.status == "error"


async def test_exception_in_the_body_propagates_bare() -> None:
    # Slow deltas: the run is still streaming when the consumer fails on the first event.
    provider = ScriptedProvider([text("hello there " * 20)], delta_delay=0.01)
    with pytest.raises(ValueError, match="consumer bug"):
        async with alloy.stream("go", provider=provider) as run:
            async for _event in run:
                raise ValueError("consumer bug")
    assert run.result is not None
    assert run.result.status == "cancelled"


async def test_stream_with_a_non_streaming_provider() -> None:
    class Plain:
        async def complete(self, request: alloy.Request) -> alloy.Completion:
            return alloy.Completion(
                message=alloy.Message.assistant("whole"), stop_reason=alloy.StopReason.END_TURN
            )

    events, run = await collect(prompt="go", provider=Plain())
    assert [type(e).__name__ for e in events] == ["TurnCompleted", "RunCompleted"]
    assert run.result is not None and run.result.text == "whole"


async def test_provider_sending_a_non_delta_is_an_error() -> None:
    class Wrong:
        async def complete(self, request: alloy.Request) -> alloy.Completion:
            raise AssertionError

        async def stream(self, request: alloy.Request, deltas: Any) -> alloy.Completion:
            await deltas.send("just a string")
            raise AssertionError("unreachable")

    with pytest.raises(alloy.ProviderError, match="may only send TextDelta"):
        await collect(prompt="go", provider=Wrong())


def test_unknown_stream_option_raises_type_error() -> None:
    with pytest.raises(TypeError):
        alloy.stream("go", provider=ScriptedProvider([]), tool=[])  # type: ignore[call-arg]
