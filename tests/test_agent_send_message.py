"""Async dispatch: send_message, cancel_request, responses over pub/sub, subscribed topics.

Ports of Alloy 0.7.4's server_send_message_test (reference section 3) plus the behaviours the
port adds: no request is ever dropped silently, and a request that does not finish leaves no
trace in the history. Timed tests run on Trio's MockClock (autojump_clock).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest
import trio
import trio.testing

import alloy
from alloy._agent import (
    Agent,
    AgentBusy,
    AgentRequest,
    AgentResponse,
    AgentStopped,
    NoPubSub,
    QueueFull,
)
from alloy._pubsub import Broker, PubSub, Subscription
from alloy.testing import FunctionProvider, ScriptedProvider, delay, error, text, tool_call
from support import answered


def echo_after(seconds: float) -> FunctionProvider:
    """Answers "<prompt> done" after ``seconds``."""
    return FunctionProvider(
        lambda request: delay(seconds, text(f"{request.messages[-1].text} done"))  # type: ignore[return-value]
    )


class Slow:
    name = "slow"
    description = "Take a while."
    input_schema: Mapping[str, Any] = {"type": "object"}

    async def execute(self, arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        await trio.sleep(60)
        return "done"


async def receive(responses: Subscription) -> AgentResponse:
    response = await responses.receive()
    assert isinstance(response, AgentResponse)
    return response


# -- return value -------------------------------------------------------------------------------


async def test_returns_a_request_id_at_once(autojump_clock: trio.testing.MockClock) -> None:
    bus = PubSub()
    async with Agent.open(provider=echo_after(10), pubsub=bus, session_id="s1") as agent:
        with bus.subscribe("agent:s1:responses") as responses:
            started = trio.current_time()
            request_id = await agent.send_message("Summarise this report")
            assert trio.current_time() == started  # did not wait for the turn
            assert isinstance(request_id, str) and request_id
            response = await receive(responses)
            assert trio.current_time() == started + 10
            assert response.request_id == request_id


async def test_accepts_a_caller_supplied_request_id() -> None:
    bus = PubSub()
    async with Agent.open(
        provider=ScriptedProvider([text("Async reply")]), pubsub=bus, session_id="s1", max_pending=4
    ) as agent:
        with bus.subscribe("agent:s1:responses") as responses:
            assert await agent.send_message("Summarise", request_id="req-123") == "req-123"
            response = await receive(responses)
    assert response == AgentResponse(request_id="req-123", result=response.result, session_id="s1")
    assert response.ok
    result = response.result
    assert result.text == "Async reply"
    assert result.status == "completed"
    assert result.turns == 1
    assert result.usage.input_tokens == 10
    assert result.tool_calls == ()
    assert len(result.messages) == 2
    assert response.error is None
    assert response.cancelled is None


async def test_rejects_a_bad_or_duplicate_request_id(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus = PubSub()
    async with Agent.open(provider=echo_after(5), pubsub=bus, max_pending=2) as agent:
        with pytest.raises(alloy.ConfigError):
            await agent.send_message("hi", request_id="")
        with pytest.raises(alloy.ConfigError):
            await agent.send_message("hi", request_id=7)  # type: ignore[arg-type]
        await agent.send_message("hi", request_id="r1")
        with pytest.raises(alloy.ConfigError, match="already"):
            await agent.send_message("again", request_id="r1")


async def test_needs_a_pubsub() -> None:
    async with Agent.open(provider=ScriptedProvider([]), name="lonely") as agent:
        with pytest.raises(NoPubSub) as caught:
            await agent.send_message("hi")
        assert caught.value.agent == "lonely"


# -- busy and the bounded queue -----------------------------------------------------------------


async def test_busy_when_a_turn_runs_and_max_pending_is_zero(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus = PubSub()
    async with Agent.open(provider=echo_after(0.3), pubsub=bus, session_id="s") as agent:
        with bus.subscribe("agent:s:responses") as responses:
            first = await agent.send_message("first")
            with pytest.raises(AgentBusy):
                await agent.send_message("second")
            with pytest.raises(AgentBusy):
                await agent.chat("second")
            with pytest.raises(AgentBusy):
                async with agent.stream_chat("second"):
                    pass  # pragma: no cover
            with pytest.raises(AgentBusy):
                await agent.reset()
            with pytest.raises(AgentBusy):
                await agent.set_model(ScriptedProvider([]))
            response = await receive(responses)
            assert response.request_id == first
            assert response.result.text == "first done"
            # no longer busy after the turn
            await agent.send_message("third")
            assert (await receive(responses)).result.text == "third done"


async def test_queues_fifo_up_to_max_pending(autojump_clock: trio.testing.MockClock) -> None:
    bus = PubSub()
    async with Agent.open(
        provider=echo_after(1), pubsub=bus, session_id="s", max_pending=2
    ) as agent:
        with bus.subscribe("agent:s:responses") as responses:
            ids = [await agent.send_message(p) for p in ("First", "Second", "Third")]
            with pytest.raises(QueueFull):
                await agent.send_message("Fourth")
            health = await agent.health()
            assert (health.busy, health.pending, health.max_pending) == (True, 2, 2)
            got = [await receive(responses) for _ in range(3)]
    assert [r.request_id for r in got] == ids
    assert [r.result.text for r in got] == ["First done", "Second done", "Third done"]


# -- cancel_request -----------------------------------------------------------------------------


async def test_cancel_a_queued_request(autojump_clock: trio.testing.MockClock) -> None:
    bus = PubSub()
    provider = echo_after(1)
    async with Agent.open(provider=provider, pubsub=bus, session_id="s", max_pending=2) as agent:
        with bus.subscribe("agent:s:responses") as responses:
            req1 = await agent.send_message("First")
            req2 = await agent.send_message("Second")
            assert await agent.cancel_request(req2) is True
            cancelled = await receive(responses)
            assert (cancelled.request_id, cancelled.cancelled) == (req2, "queued")
            assert cancelled.result.status == "cancelled"
            assert not cancelled.ok
            assert (await agent.health()).pending == 0
            done = await receive(responses)
            assert (done.request_id, done.result.text) == (req1, "First done")
            await trio.sleep(5)
            assert responses.pending == 0  # req2's text never arrives
    assert len(provider.requests) == 1


async def test_cancel_the_running_request_and_start_the_next(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus = PubSub()
    provider = ScriptedProvider([tool_call("slow"), text("Second done")])
    async with Agent.open(
        provider=provider, tools=[Slow()], pubsub=bus, session_id="s", max_pending=1
    ) as agent:
        with bus.subscribe("agent:s:responses") as responses:
            req1 = await agent.send_message("First")
            req2 = await agent.send_message("Second")
            await trio.sleep(1)  # req1 is running its tool
            assert await agent.cancel_request(req1) is True
            cancelled = await receive(responses)
            assert (cancelled.request_id, cancelled.cancelled) == (req1, "running")
            assert cancelled.result.status == "cancelled"
            # The partial result answers every tool call...
            answered(cancelled.result.messages)
            assert cancelled.result.tool_calls[0].outcome == "cancelled"
            done = await receive(responses)
            assert (done.request_id, done.result.text) == (req2, "Second done")
            # ...and the history kept nothing of the cancelled request.
            assert [m.text for m in await agent.messages()] == ["Second", "Second done"]


async def test_cancel_an_unknown_request() -> None:
    async with Agent.open(provider=ScriptedProvider([]), pubsub=PubSub()) as agent:
        assert await agent.cancel_request("missing-request") is False


# -- responses ----------------------------------------------------------------------------------


async def test_responses_go_to_the_session_topic() -> None:
    bus = PubSub()
    async with Agent.open(provider=ScriptedProvider([text("Async reply")]), pubsub=bus) as agent:
        session = await agent.export_session()
        assert agent.responses_topic == f"agent:{session.id}:responses"
        with bus.subscribe(agent.responses_topic) as responses:
            await agent.send_message("hi")
            response = await receive(responses)
    assert response.session_id == session.id
    assert response.result.text == "Async reply"


async def test_health_answers_at_once_during_a_slow_turn(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus = PubSub()
    async with Agent.open(provider=echo_after(0.3), pubsub=bus, session_id="s") as agent:
        idle = await agent.health()
        assert (idle.busy, idle.pending, idle.max_pending) == (False, 0, 0)
        with bus.subscribe("agent:s:responses") as responses:
            await agent.send_message("slow")
            await trio.sleep(0.1)
            started = trio.current_time()
            health = await agent.health()
            assert trio.current_time() == started
            assert (health.status, health.busy) == ("running", True)
            await receive(responses)
        after = await agent.health()
        assert (after.busy, after.pending) == (False, 0)
        # Same state after an async turn as after chat (weakness 22).
        assert (after.status, after.turns, after.last_status) == ("idle", 1, "completed")


async def test_a_failed_request_is_published_and_the_agent_recovers() -> None:
    bus = PubSub()
    provider = ScriptedProvider([error("simulated crash"), text("Recovery")])
    async with Agent.open(provider=provider, pubsub=bus, session_id="s") as agent:
        with bus.subscribe("agent:s:responses") as responses:
            await agent.send_message("fail")
            failed = await receive(responses)
            assert failed.result.status == "error"
            assert isinstance(failed.error, alloy.ProviderError)
            assert not failed.ok
            assert await agent.messages() == ()  # no dangling user message
            await agent.send_message("again")
            assert (await receive(responses)).result.text == "Recovery"


async def test_a_raising_provider_is_published_as_an_error_and_the_agent_recovers() -> None:
    def model(request: alloy.Request) -> str:
        if request.messages[-1].text == "crash_now":
            raise RuntimeError("crash_now")
        return "Recovery after crash"

    bus = PubSub()
    async with Agent.open(provider=FunctionProvider(model), pubsub=bus, session_id="s") as agent:
        with bus.subscribe("agent:s:responses") as responses:
            await agent.send_message("crash_now")
            failed = await receive(responses)
            assert failed.result.status == "error"
            assert failed.error is not None
            await agent.send_message("next")
            assert (await receive(responses)).result.text == "Recovery after crash"


async def test_async_turns_continue_the_conversation() -> None:
    bus = PubSub()
    provider = ScriptedProvider([text("First reply"), text("Second reply")])
    async with Agent.open(provider=provider, pubsub=bus, session_id="s") as agent:
        with bus.subscribe("agent:s:responses") as responses:
            await agent.send_message("one")
            await receive(responses)
        assert len(await agent.messages()) == 2
        assert (await agent.chat("two")).text == "Second reply"
        assert len(await agent.messages()) == 4


# -- no request is ever lost --------------------------------------------------------------------


async def test_stop_publishes_an_error_for_the_running_and_queued_requests(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus = PubSub()
    with bus.subscribe("agent:s:responses") as responses:
        async with trio.open_nursery() as nursery:
            agent = await Agent.start(
                nursery,
                provider=echo_after(60),
                pubsub=bus,
                session_id="s",
                max_pending=2,
                name="worker",
            )
            ids = [await agent.send_message(p) for p in ("a", "b", "c")]
            await trio.sleep(1)
            await agent.stop()
        got = [responses.receive_nowait() for _ in range(3)]
    assert sorted(r.request_id for r in got) == sorted(ids)
    for response in got:
        assert isinstance(response.error, AgentStopped)
        assert response.error.agent == "worker"
        assert response.result.status in ("cancelled", "error")
    assert responses.pending == 0


# -- subscribed topics --------------------------------------------------------------------------


async def test_messages_on_subscribed_topics_are_requests() -> None:
    bus = PubSub()
    provider = FunctionProvider(lambda request: f"did: {request.messages[-1].text}")
    async with Agent.open(
        provider=provider, pubsub=bus, session_id="s", subscribe=["jobs", "more"], max_pending=8
    ):
        with bus.subscribe("agent:s:responses") as responses:
            assert bus.publish("jobs", "do some work") == 1
            assert bus.publish("more", AgentRequest("more work", request_id="job-7")) == 1
            bus.publish("jobs", alloy.Message.user("a message"))
            bus.publish("jobs", {"not": "a request"})  # ignored
            got = [await receive(responses) for _ in range(3)]
    texts = [r.result.text for r in got]
    # In order within a topic; the two topics are read by two tasks.
    assert [t for t in texts if t != "did: more work"] == ["did: do some work", "did: a message"]
    assert "did: more work" in texts
    assert {r.request_id for r in got if r.result.text == "did: more work"} == {"job-7"}
    assert all(r.request_id for r in got)


async def test_a_topic_request_while_busy_is_answered_with_the_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus = PubSub()
    async with Agent.open(
        provider=echo_after(1), pubsub=bus, session_id="s", subscribe=["jobs"]
    ) as agent:
        with bus.subscribe("agent:s:responses") as responses:
            await agent.send_message("Async")
            await trio.sleep(0.1)
            bus.publish("jobs", AgentRequest("interrupt attempt", request_id="x"))
            refused = await receive(responses)
            assert refused.request_id == "x"
            assert isinstance(refused.error, AgentBusy)
            done = await receive(responses)
            assert done.result.text == "Async done"
            assert (await agent.health()).status == "idle"


async def test_topic_requests_wait_for_session_start() -> None:
    order: list[str] = []

    class Slow(alloy.Middleware):
        async def session_start(self, run: alloy.RunContext) -> None:
            order.append("session_start begins")
            bus.publish("jobs", "early")
            await trio.sleep(0.01)
            order.append("session_start ends")

    def model(request: alloy.Request) -> str:
        order.append("turn")
        return "ok"

    bus = PubSub()
    async with Agent.open(
        provider=FunctionProvider(model),
        pubsub=bus,
        session_id="s",
        subscribe=["jobs"],
        middleware=[Slow()],
    ):
        with bus.subscribe("agent:s:responses") as responses:
            await receive(responses)
    assert order == ["session_start begins", "session_start ends", "turn"]


async def test_unsubscribes_when_the_agent_stops() -> None:
    bus = PubSub()
    async with Agent.open(provider=ScriptedProvider([]), pubsub=bus, subscribe=["jobs"]):
        assert bus.subscriber_count("jobs") == 1
    assert bus.subscriber_count("jobs") == 0


async def test_an_agent_resubscribes_after_an_overflow(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus = PubSub(buffer=1, overflow="close")
    provider = FunctionProvider(lambda request: delay(1, text("ok")))  # type: ignore[return-value]
    async with Agent.open(
        provider=provider, pubsub=bus, session_id="s", subscribe=["jobs"], max_pending=0
    ):
        for _ in range(3):
            bus.publish("jobs", "work")  # overflows the agent's one-message buffer
        await trio.sleep(5)
        assert bus.subscriber_count("jobs") == 1


# -- a pluggable broker -------------------------------------------------------------------------


class RecordingBroker:
    """A minimal custom backend: records what is published, serves subscriptions from a
    PubSub it wraps."""

    def __init__(self) -> None:
        self.published: list[tuple[str, Any]] = []
        self.inner = PubSub()

    def publish(self, topic: str, message: Any) -> None:
        self.published.append((topic, message))
        self.inner.publish(topic, message)

    @contextmanager
    def subscribe(self, topic: str) -> Iterator[alloy._pubsub.Receiver]:
        with self.inner.subscribe(topic) as subscription:
            yield subscription


async def test_a_custom_broker_plugs_in() -> None:
    broker = RecordingBroker()
    assert isinstance(broker, Broker)
    async with Agent.open(
        provider=ScriptedProvider([text("one"), text("two")]),
        pubsub=broker,
        session_id="s",
        subscribe=["jobs"],
        max_pending=2,
    ) as agent:
        with broker.inner.subscribe("agent:s:responses") as responses:
            await agent.send_message("direct", request_id="r1")
            broker.inner.publish("jobs", AgentRequest("via topic", request_id="r2"))
            got = [await receive(responses) for _ in range(2)]
    assert [r.request_id for r in got] == ["r1", "r2"]
    assert [topic for topic, _ in broker.published] == ["agent:s:responses"] * 2
