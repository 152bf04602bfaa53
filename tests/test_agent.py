"""alloy.Agent: chat, streaming, history, reset, set_model, health, sessions, lifecycle.

Ports of the Alloy 0.7.4 server, model-switch and lifecycle tests (reference section 3) and
of the session-hook middleware tests, adapted to an actor that runs turns in a child task.
Everything timed runs on Trio's MockClock (autojump_clock).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest
import trio
import trio.testing

import alloy
from alloy import _agent
from alloy._agent import (
    Agent,
    AgentBusy,
    AgentCrashed,
    AgentError,
    AgentStopped,
    QueueFull,
    Session,
    SessionHalted,
)
from alloy.testing import FunctionProvider, ScriptedProvider, delay, text, tool_call
from support import answered, count_tasks


def roles(messages: tuple[alloy.Message, ...]) -> list[str]:
    return [m.role for m in messages]


class Slow:
    """A tool that takes ``seconds`` of (virtual) time."""

    name = "slow"
    description = "Take a while."
    input_schema: Mapping[str, Any] = {"type": "object"}

    def __init__(self, seconds: float = 10.0) -> None:
        self.seconds = seconds

    async def execute(self, arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        await trio.sleep(self.seconds)
        return "slow done"


# -- start, chat, history ---------------------------------------------------------------------


async def test_start_returns_an_idle_agent() -> None:
    async with trio.open_nursery() as nursery:
        agent = await Agent.start(nursery, provider=ScriptedProvider([]), name="coder")
        health = await agent.health()
        assert agent.name == "coder"
        assert health.status == "idle"
        assert health.busy is False
        assert health.turns == 0
        assert health.message_count == 0
        assert "coder" in repr(agent)
        await agent.stop()


async def test_chat_returns_the_result() -> None:
    async with Agent.open(provider=ScriptedProvider([text("Hello from Alloy!")])) as agent:
        result = await agent.chat("Hi")
        assert result.text == "Hello from Alloy!"
        assert result.status == "completed"
        assert result.turns == 1


async def test_history_persists_across_calls() -> None:
    provider = ScriptedProvider([text("First reply"), text("Second reply")])
    async with Agent.open(provider=provider) as agent:
        assert await agent.messages() == ()
        await agent.chat("First message")
        assert len(await agent.messages()) == 2
        result = await agent.chat("Second message")
        history = await agent.messages()
        assert roles(history) == ["user", "assistant", "user", "assistant"]
        assert [m.text for m in history] == [
            "First message",
            "First reply",
            "Second message",
            "Second reply",
        ]
        assert result.messages == history
        # The second request carried the first exchange.
        assert [m.text for m in provider.requests[1].messages] == [
            "First message",
            "First reply",
            "Second message",
        ]


async def test_initial_messages_start_the_conversation() -> None:
    seed = (alloy.Message.user("Remember 42"), alloy.Message.assistant("OK"))
    provider = ScriptedProvider([text("42")])
    async with Agent.open(provider=provider, messages=seed) as agent:
        await agent.chat("What number?")
        assert provider.requests[0].messages[:2] == seed


async def test_usage_accumulates_across_calls() -> None:
    async with Agent.open(provider=ScriptedProvider([text("a"), text("b")])) as agent:
        await agent.chat("one")
        first = await agent.usage()
        result = await agent.chat("two")
        second = await agent.usage()
        assert first.input_tokens == 10
        assert second.input_tokens == 20
        assert result.usage.input_tokens == 10  # the result's usage is this request's


async def test_reset_clears_history_usage_and_turns_and_returns_the_old_session() -> None:
    async with Agent.open(provider=ScriptedProvider([text("a"), text("b")])) as agent:
        await agent.chat("one")
        before = await agent.export_session()
        cleared = await agent.reset()
        assert cleared.messages == before.messages
        assert cleared.usage.input_tokens == 10
        assert await agent.messages() == ()
        health = await agent.health()
        assert (health.status, health.turns, health.message_count) == ("idle", 0, 0)
        assert health.usage == alloy.Usage()
        assert health.last_status is None
        result = await agent.chat("two")
        assert len(result.messages) == 2


async def test_rejects_bad_prompts() -> None:
    async with Agent.open(provider=ScriptedProvider([])) as agent:
        with pytest.raises(alloy.ConfigError):
            await agent.chat(42)  # type: ignore[arg-type]
        with pytest.raises(alloy.ConfigError):
            await agent.chat(alloy.Message.assistant("not a prompt"))


# -- timeouts are the caller's cancel scope ------------------------------------------------------


async def test_a_caller_that_gives_up_cancels_the_turn_and_leaves_no_trace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = ScriptedProvider([text("first"), delay(60, text("too late")), text("third")])
    async with Agent.open(provider=provider) as agent:
        await agent.chat("one")
        before = await agent.messages()
        with trio.move_on_after(1) as scope:
            await agent.chat("slow one")
        assert scope.cancelled_caught
        # No dangling user message; the agent is idle and answers the next call.
        assert await agent.messages() == before
        health = await agent.health()
        assert health.status == "idle"
        assert health.last_status == "cancelled"
        result = await agent.chat("three")
        assert result.text == "third"
        assert "slow one" not in [m.text for m in provider.requests[2].messages]
        # The slow reply was never delivered to anybody: the script moved on.
        assert [m.text for m in await agent.messages()] == ["one", "first", "three", "third"]


async def test_cancelled_during_a_tool_call_rolls_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = ScriptedProvider([tool_call("slow"), text("after"), text("next")])
    async with Agent.open(provider=provider, tools=[Slow(30)]) as agent:
        with trio.move_on_after(5):
            await agent.chat("use the tool")
        assert await agent.messages() == ()
        assert (await agent.health()).turns == 1  # the model call was made and is counted
        assert (await agent.usage()).input_tokens == 10
        result = await agent.chat("again")
        assert result.text == "after"
        answered(result.messages)


async def test_stream_chat_streams_and_commits() -> None:
    provider = ScriptedProvider([text("Hello there friend")])
    async with Agent.open(provider=provider) as agent:
        async with agent.stream_chat("Explain OTP") as run:
            events = [event async for event in run]
        streamed = "".join(e.text for e in events if isinstance(e, alloy.TextDelta))
        assert streamed == "Hello there friend"
        assert isinstance(events[-1], alloy.RunCompleted)
        assert run.result is not None
        assert run.result.status == "completed"
        assert len(await agent.messages()) == 2


async def test_leaving_stream_chat_early_cancels_the_turn(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = ScriptedProvider(
        [text("one two three four five six"), text("fine")], delta_delay=1.0
    )
    async with Agent.open(provider=provider) as agent:
        async with agent.stream_chat("talk") as run:
            async for event in run:
                if isinstance(event, alloy.TextDelta):
                    break
        assert run.result is not None
        assert run.result.status == "cancelled"
        assert run.result.text == "one "  # the partial result keeps what was streamed
        assert await agent.messages() == ()  # the history does not
        assert (await agent.chat("again")).text == "fine"


async def test_stream_chat_with_a_timeout(autojump_clock: trio.testing.MockClock) -> None:
    provider = ScriptedProvider([delay(100, text("slow")), text("ok")])
    async with Agent.open(provider=provider) as agent:
        with trio.move_on_after(2) as scope:
            async with agent.stream_chat("hi") as run:
                async for _ in run:
                    pass
        assert scope.cancelled_caught
        assert run.result is not None
        assert run.result.status == "cancelled"
        assert (await agent.health()).status == "idle"
        assert (await agent.chat("again")).text == "ok"


async def test_stream_chat_raises_the_run_error() -> None:
    provider = ScriptedProvider([alloy.testing.error("model down")])
    async with Agent.open(provider=provider) as agent:
        with pytest.raises(alloy.ProviderError):
            async with agent.stream_chat("hi") as run:
                async for _ in run:
                    pass
        assert run.result is not None
        assert run.result.status == "error"
        assert await agent.messages() == ()


async def test_a_failed_turn_raises_and_rolls_back() -> None:
    provider = ScriptedProvider([text("fine"), alloy.testing.error("model down"), text("Recovery")])
    async with Agent.open(provider=provider) as agent:
        await agent.chat("one")
        with pytest.raises(alloy.ProviderError) as caught:
            await agent.chat("two")
        assert caught.value.result is not None
        assert caught.value.result.status == "error"
        assert [m.text for m in await agent.messages()] == ["one", "fine"]  # nothing dangling
        health = await agent.health()
        assert health.last_status == "error"
        assert (await agent.chat("three")).text == "Recovery"


async def test_a_provider_exception_is_a_failed_turn_not_a_crash() -> None:
    def model(request: alloy.Request) -> str:
        if request.messages[-1].text == "boom":
            raise RuntimeError("provider bug")
        return "Recovery after crash"

    async with Agent.open(provider=FunctionProvider(model)) as agent:
        with pytest.raises(alloy.ProviderError, match="provider bug"):
            await agent.chat("boom")
        assert (await agent.chat("hello")).text == "Recovery after crash"


# -- busy, queue, responsiveness ---------------------------------------------------------------


async def test_busy_while_a_turn_runs(autojump_clock: trio.testing.MockClock) -> None:
    provider = ScriptedProvider([delay(10, text("slow")), text("next")])
    async with Agent.open(provider=provider, name="solo") as agent, trio.open_nursery() as nursery:
        nursery.start_soon(agent.chat, "first")
        await trio.sleep(1)
        with pytest.raises(AgentBusy) as caught:
            await agent.chat("second")
        assert caught.value.agent == "solo"
        with pytest.raises(AgentBusy):
            async with agent.stream_chat("second"):
                pass
        with pytest.raises(AgentBusy):
            await agent.reset()
        with pytest.raises(AgentBusy):
            await agent.set_model(ScriptedProvider([]))
        # health and messages answer at once while the turn runs
        started = trio.current_time()
        health = await agent.health()
        assert trio.current_time() == started
        assert (health.status, health.busy, health.pending) == ("running", True, 0)
        assert await agent.messages() == ()


async def test_chats_queue_fifo_up_to_max_pending(autojump_clock: trio.testing.MockClock) -> None:
    provider = FunctionProvider(
        lambda request: delay(5, text(f"re: {request.messages[-1].text}"))  # type: ignore[return-value]
    )
    results: list[str] = []

    async def ask(agent: Agent, prompt: str) -> None:
        results.append((await agent.chat(prompt)).text)

    async with Agent.open(provider=provider, max_pending=2) as agent:
        async with trio.open_nursery() as nursery:
            for prompt in ("a", "b", "c"):
                nursery.start_soon(ask, agent, prompt)
                await trio.sleep(0.1)
            with pytest.raises(QueueFull):
                await agent.chat("d")
            assert (await agent.health()).pending == 2
        assert results == ["re: a", "re: b", "re: c"]
        assert [m.text for m in await agent.messages()] == [
            "a",
            "re: a",
            "b",
            "re: b",
            "c",
            "re: c",
        ]


async def test_a_queued_chat_that_gives_up_leaves_the_queue(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = ScriptedProvider([delay(10, text("first")), text("third")])
    async with Agent.open(provider=provider, max_pending=1) as agent:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(agent.chat, "first")
            await trio.sleep(1)
            with trio.move_on_after(1):
                await agent.chat("queued then abandoned")
            assert (await agent.health()).pending == 0
        assert (await agent.chat("third")).text == "third"
        assert "queued then abandoned" not in [m.text for m in await agent.messages()]
        assert provider.remaining == 0


# -- set_model ----------------------------------------------------------------------------------


async def test_set_model_switches_provider_and_keeps_everything_else() -> None:
    first = ScriptedProvider([text("From provider 1")])
    second = ScriptedProvider([text("From provider 2")])
    async with Agent.open(provider=first, system_prompt="You are helpful", max_turns=10) as agent:
        assert (await agent.chat("one")).text == "From provider 1"
        history, usage = await agent.messages(), await agent.usage()
        await agent.set_model(second)
        assert await agent.messages() == history
        assert await agent.usage() == usage
        assert (await agent.chat("two")).text == "From provider 2"
        request = second.requests[0]
        assert request.system_prompt == "You are helpful"
        assert [m.text for m in request.messages] == ["one", "From provider 1", "two"]
        assert len(await agent.messages()) == 4
        assert (await agent.export_session()).metadata["provider"] == "scripted"


async def test_set_model_rejects_a_non_provider() -> None:
    async with Agent.open(provider=ScriptedProvider([])) as agent:
        with pytest.raises(alloy.ConfigError):
            await agent.set_model(object())  # type: ignore[arg-type]


# -- health and sessions ------------------------------------------------------------------------


async def test_health_shape_and_uptime(autojump_clock: trio.testing.MockClock) -> None:
    async with Agent.open(provider=ScriptedProvider([text("hi")]), max_pending=3) as agent:
        await trio.sleep(10)
        health = await agent.health()
        assert health.uptime == pytest.approx(10)
        assert (health.status, health.turns, health.message_count, health.pending) == (
            "idle",
            0,
            0,
            0,
        )
        assert health.max_pending == 3
        await agent.chat("hello")
        health = await agent.health()
        # Same shape after a chat as after a send_message (weakness 22).
        assert (health.status, health.turns, health.message_count) == ("idle", 1, 2)
        assert health.last_status == "completed"


async def test_export_session(autojump_clock: trio.testing.MockClock) -> None:
    async with Agent.open(
        provider=ScriptedProvider([text("a"), text("b")]), session_id="my-session-123"
    ) as agent:
        empty = await agent.export_session()
        await trio.sleep(5)
        await agent.chat("one")
        first = await agent.export_session()
        await trio.sleep(1)  # wall clock moves on too: updated_at is when it changed
        await agent.chat("two")
        second = await agent.export_session()
        assert isinstance(second, Session)
        assert second.id == first.id == "my-session-123"
        assert len(second.messages) == 4
        assert second.usage.input_tokens == 20
        assert second.metadata["status"] == "idle"
        assert second.metadata["turns"] == 2
        assert second.created_at == first.created_at == empty.created_at
        assert empty.updated_at <= first.updated_at <= second.updated_at
        assert second.created_at.tzinfo is not None
        again = await agent.export_session()
        assert again.updated_at == second.updated_at  # exporting is not a change


async def test_generated_session_ids_are_stable_and_unique() -> None:
    async with (
        Agent.open(provider=ScriptedProvider([text("a")])) as one,
        Agent.open(provider=ScriptedProvider([])) as two,
    ):
        first = (await one.export_session()).id
        await one.chat("hi")
        assert (await one.export_session()).id == first
        assert first and first != (await two.export_session()).id
        assert one.name == first  # the name defaults to the session id
        assert one.responses_topic == f"agent:{first}:responses"


# -- stopping: no caller ever hangs -------------------------------------------------------------


async def test_calls_to_a_stopped_agent_fail_naming_it() -> None:
    async with trio.open_nursery() as nursery:
        agent = await Agent.start(nursery, provider=ScriptedProvider([]), name="gone")
        await agent.stop()
        await agent.stop()  # idempotent
        for call in (agent.messages, agent.health, agent.usage, agent.export_session):
            with pytest.raises(AgentStopped) as caught:
                await call()
            assert caught.value.agent == "gone"
            assert "gone" in str(caught.value)
        with pytest.raises(AgentStopped):
            await agent.chat("hello?")


async def test_stop_fails_the_running_and_queued_calls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = ScriptedProvider([tool_call("slow"), text("never")])
    errors: dict[str, AgentStopped] = {}

    async def ask(agent: Agent, prompt: str) -> None:
        try:
            await agent.chat(prompt)
        except AgentStopped as exc:
            errors[prompt] = exc

    async with trio.open_nursery() as nursery:
        agent = await Agent.start(
            nursery, provider=provider, tools=[Slow(60)], max_pending=2, name="worker"
        )
        nursery.start_soon(ask, agent, "running")
        await trio.sleep(1)
        nursery.start_soon(ask, agent, "queued 1")
        nursery.start_soon(ask, agent, "queued 2")
        await trio.sleep(1)
        assert (await agent.health()).pending == 2
        await agent.stop()
    assert sorted(errors) == ["queued 1", "queued 2", "running"]
    assert all(e.agent == "worker" and not isinstance(e, AgentCrashed) for e in errors.values())
    running = errors["running"].result
    assert running is not None  # the running request's partial result
    assert running.status == "cancelled"
    answered(running.messages)
    queued = errors["queued 1"].result
    assert queued is not None
    assert queued.status == "error"
    assert queued.messages[-1].text == "queued 1"


async def test_a_stream_ends_with_agent_stopped_when_the_agent_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = ScriptedProvider([text("one two three four five six seven")], delta_delay=1.0)
    streamed: list[str] = []
    async with trio.open_nursery() as nursery:
        agent = await Agent.start(nursery, provider=provider, name="streamer")

        async def stop_soon() -> None:
            await trio.sleep(2.5)
            await agent.stop()

        nursery.start_soon(stop_soon)
        with pytest.raises(AgentStopped) as caught:
            async with agent.stream_chat("talk") as run:
                async for event in run:
                    if isinstance(event, alloy.TextDelta):
                        streamed.append(event.text)
    assert caught.value.agent == "streamer"
    assert streamed == ["one ", "two "]
    assert run.result is not None
    assert run.result.status == "cancelled"
    assert run.result.text == "one two "


async def test_cancelling_the_nursery_stops_the_agent_and_runs_on_shutdown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sessions: list[Session] = []
    async with trio.open_nursery() as nursery:
        agent = await Agent.start(
            nursery, provider=ScriptedProvider([text("hi")]), on_shutdown=sessions.append
        )
        await agent.chat("hello")
        nursery.cancel_scope.cancel()
    assert len(sessions) == 1
    assert len(sessions[0].messages) == 2
    with pytest.raises(AgentStopped):
        await agent.health()


async def test_on_shutdown_gets_the_session() -> None:
    sessions: list[Session] = []

    async def on_shutdown(session: Session) -> None:
        await trio.lowlevel.checkpoint()
        sessions.append(session)

    async with Agent.open(
        provider=ScriptedProvider([text("hi")]), session_id="s9", on_shutdown=on_shutdown
    ) as agent:
        await agent.chat("hello")
    assert [s.id for s in sessions] == ["s9"]
    assert len(sessions[0].messages) == 2
    assert sessions[0].metadata["status"] == "idle"


@pytest.mark.parametrize("failure", [RuntimeError("boom"), ValueError("oops")])
async def test_a_failing_on_shutdown_is_logged_and_does_not_prevent_the_stop(
    failure: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    def on_shutdown(session: Session) -> None:
        raise failure

    with caplog.at_level(logging.ERROR, logger="alloy.agent"):
        async with trio.open_nursery() as nursery:
            agent = await Agent.start(
                nursery, provider=ScriptedProvider([]), on_shutdown=on_shutdown, name="x"
            )
            await agent.stop()
    assert "on_shutdown callback raised" in caplog.text
    assert "Traceback" in caplog.text  # with its stack trace
    with pytest.raises(AgentStopped):
        await agent.health()


async def test_open_raises_the_body_error_bare_and_still_stops() -> None:
    sessions: list[Session] = []
    with pytest.raises(KeyError):
        async with Agent.open(provider=ScriptedProvider([]), on_shutdown=sessions.append):
            raise KeyError("body")
    assert len(sessions) == 1


# -- start failures: nothing escapes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"max_pending": -1}, alloy.ConfigError),
        ({"subscribe": ["t"]}, alloy.ConfigError),
        ({"session_id": ""}, alloy.ConfigError),
        ({"on_shutdown": 3}, alloy.ConfigError),
        ({"pubsub": object()}, alloy.ConfigError),
        ({"max_turns": 0}, alloy.ConfigError),
        ({"no_such_option": 1}, TypeError),
    ],
)
async def test_bad_options_raise_from_start(options: dict[str, Any], error: type) -> None:
    before = count_tasks()
    async with trio.open_nursery() as nursery:
        with pytest.raises(error):
            await Agent.start(nursery, provider=ScriptedProvider([]), **options)
        assert count_tasks() == before  # no agent task was left behind


class Counter(alloy.Middleware):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def session_start(self, run: alloy.RunContext) -> None:
        self.calls.append("session_start")

    def before_completion(self, run: alloy.RunContext) -> None:
        self.calls.append("before_completion")

    def session_end(self, run: alloy.RunContext, result: alloy.Result) -> None:
        self.calls.append("session_end")


async def test_session_hooks_fire_once_per_agent_lifetime() -> None:
    counter = Counter()
    async with Agent.open(
        provider=ScriptedProvider([text("a"), text("b")]), middleware=[counter]
    ) as agent:
        assert counter.calls == ["session_start"]
        await agent.chat("one")
        await agent.chat("two")
        assert counter.calls == ["session_start", "before_completion", "before_completion"]
    assert counter.calls[-1] == "session_end"
    assert counter.calls.count("session_end") == 1


async def test_session_start_halt_raises_from_start_and_leaves_nothing() -> None:
    class Gate(alloy.Middleware):
        def session_start(self, run: alloy.RunContext) -> alloy.Halt:
            return alloy.Halt("blocked at start")

    sessions: list[Session] = []
    before = count_tasks()
    async with trio.open_nursery() as nursery:
        with pytest.raises(SessionHalted) as caught:
            await Agent.start(
                nursery,
                provider=ScriptedProvider([]),
                middleware=[Gate()],
                name="gated",
                on_shutdown=sessions.append,
            )
        assert caught.value.reason == "blocked at start"
        assert caught.value.agent == "gated"
        assert count_tasks() == before
    assert sessions == []  # the session never started, so it does not end


async def test_a_failing_session_start_raises_from_start() -> None:
    class Broken(alloy.Middleware):
        def session_start(self, run: alloy.RunContext) -> None:
            raise RuntimeError("no database")

    with pytest.raises(alloy.MiddlewareError, match="no database"):
        async with Agent.open(provider=ScriptedProvider([]), middleware=[Broken()]):
            pass  # pragma: no cover


async def test_session_start_can_set_the_starting_state() -> None:
    class Setup(alloy.Middleware):
        def session_start(self, run: alloy.RunContext) -> None:
            run.system_prompt = "Injected prompt"
            run.messages.append(alloy.Message.user("Earlier"))
            run.messages.append(alloy.Message.assistant("Noted"))

    provider = ScriptedProvider([text("ok")])
    async with Agent.open(provider=provider, middleware=[Setup()]) as agent:
        assert len(await agent.messages()) == 2
        await agent.chat("now")
    assert provider.requests[0].system_prompt == "Injected prompt"
    assert [m.text for m in provider.requests[0].messages] == ["Earlier", "Noted", "now"]


async def test_on_shutdown_sees_what_session_end_did() -> None:
    class Enrich(alloy.Middleware):
        def session_end(self, run: alloy.RunContext, result: alloy.Result) -> alloy.Halt:
            run.messages.append(alloy.Message.assistant("Goodbye"))
            return alloy.Halt("ignored at session_end")

    sessions: list[Session] = []
    async with Agent.open(
        provider=ScriptedProvider([]), middleware=[Enrich()], on_shutdown=sessions.append
    ):
        pass
    assert [m.text for m in sessions[0].messages] == ["Goodbye"]


async def test_a_failing_session_end_is_logged_and_on_shutdown_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(alloy.Middleware):
        def session_end(self, run: alloy.RunContext, result: alloy.Result) -> None:
            raise RuntimeError("flush failed")

    sessions: list[Session] = []
    with caplog.at_level(logging.ERROR, logger="alloy.agent"):
        async with Agent.open(
            provider=ScriptedProvider([]), middleware=[Broken()], on_shutdown=sessions.append
        ):
            pass
    assert len(sessions) == 1
    assert "session_end hook failed" in caplog.text


# -- crashes ------------------------------------------------------------------------------------


def crash_on(monkeypatch: pytest.MonkeyPatch, prompt: str) -> None:
    """Make a turn whose prompt is ``prompt`` die of a bug (not an AlloyError)."""
    real = _agent.execute_run

    async def execute_run(config: Any, *args: Any) -> alloy.Result:
        messages = args[2] if len(args) > 2 else config.messages
        if messages[-1].text == prompt:
            await trio.sleep(1)
            raise ZeroDivisionError("a bug in a turn")
        return await real(config, *args)

    monkeypatch.setattr(_agent, "execute_run", execute_run)


async def test_a_crash_fails_every_caller_and_reaches_the_nursery_bare(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    crash_on(monkeypatch, "crash")
    errors: list[AgentError] = []
    sessions: list[Session] = []

    async def ask(agent: Agent, prompt: str) -> None:
        try:
            await agent.chat(prompt)
        except AgentError as exc:
            errors.append(exc)

    with pytest.raises(ZeroDivisionError):
        async with (
            Agent.open(
                provider=ScriptedProvider([]),
                max_pending=1,
                name="fragile",
                on_shutdown=sessions.append,
            ) as agent,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(ask, agent, "crash")
            await trio.sleep(0.1)
            nursery.start_soon(ask, agent, "queued")
            await trio.sleep(10)
    assert len(errors) == 2
    assert all(isinstance(e, AgentCrashed) and e.agent == "fragile" for e in errors)
    assert isinstance(errors[0], AgentCrashed)
    assert isinstance(errors[0].error, ZeroDivisionError)
    assert errors[0].__cause__ is errors[0].error
    assert len(sessions) == 1  # on_shutdown runs after a crash too
    with pytest.raises(AgentCrashed):
        await agent.health()


async def test_no_task_survives_the_agent() -> None:
    before = count_tasks()
    async with Agent.open(provider=ScriptedProvider([text("a")])) as agent:
        await agent.chat("hi")
        assert count_tasks() > before
    assert count_tasks() == before


# -- bad prompts and providers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        (alloy.Message.assistant("hi"), "a prompt must be a user message, got role 'assistant'"),
        (42, "prompt must be a string, a Message or blocks, got 42"),
    ],
)
async def test_a_bad_prompt_is_a_config_error(prompt: object, message: str) -> None:
    async with Agent.open(provider=ScriptedProvider([text("never")])) as agent:
        with pytest.raises(alloy.ConfigError, match=message):
            await agent.chat(prompt)  # type: ignore[arg-type]
        assert await agent.messages() == ()


async def test_set_model_refuses_what_is_not_a_provider() -> None:
    async with Agent.open(provider=ScriptedProvider([text("still here")])) as agent:
        with pytest.raises(alloy.ConfigError, match="provider must have an async complete"):
            await agent.set_model(object())  # type: ignore[arg-type]
        assert (await agent.chat("hi")).text == "still here"


class _Spawns(trio.abc.Instrument):
    def __init__(self) -> None:
        self.count = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.count += 1


async def test_idle_agents_are_not_tasks_and_a_chat_spawns_none(echo: object) -> None:
    provider = ScriptedProvider([tool_call("echo", {"text": "hi"}), text("done")])
    async with trio.open_nursery() as nursery:
        before = count_tasks()
        agents = [
            await alloy.Agent.start(nursery, provider=provider, tools=[echo]) for _ in range(3)
        ]
        assert count_tasks() == before + 1  # one host task for the nursery's agents
        spawns = _Spawns()
        trio.lowlevel.add_instrument(spawns)
        try:
            result = await agents[0].chat("go")
            health = await agents[0].health()
            messages = await agents[0].messages()
        finally:
            trio.lowlevel.remove_instrument(spawns)
        # A chat to an idle agent runs its turn in the caller's task (its one tool call too).
        assert spawns.count == 0
        assert result.text == "done" and health.status == "idle" and len(messages) == 4
        for agent in agents:
            await agent.stop()
        assert count_tasks() == before  # the host task ended with its last agent


async def test_a_chat_to_an_idle_agent_runs_in_the_callers_task_a_queued_one_in_the_agents(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ran_in: dict[str, trio.lowlevel.Task] = {}

    async def model(request: alloy.Request) -> alloy.Completion:
        prompt = request.messages[-1].text
        ran_in[prompt] = trio.lowlevel.current_task()
        await trio.sleep(1)
        return alloy.Completion(
            message=alloy.Message.assistant(f"re: {prompt}"), stop_reason=alloy.StopReason.END_TURN
        )

    callers: dict[str, trio.lowlevel.Task] = {}

    async def ask(agent: Agent, prompt: str) -> None:
        callers[prompt] = trio.lowlevel.current_task()
        assert (await agent.chat(prompt)).text == f"re: {prompt}"

    async with trio.open_nursery() as nursery:
        agent = await Agent.start(nursery, provider=FunctionProvider(model), max_pending=1)
        nursery.start_soon(ask, agent, "first")
        await trio.sleep(0.5)
        nursery.start_soon(ask, agent, "second")  # queued behind the first
        await trio.sleep(5)
        assert ran_in["first"] is callers["first"]
        assert ran_in["second"] is not callers["second"]  # the agent's own task ran it
        assert [m.text for m in await agent.messages()] == [
            "first",
            "re: first",
            "second",
            "re: second",
        ]
        await agent.stop()


async def test_an_inline_turn_ends_when_the_agents_nursery_is_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The caller lives outside the agent's nursery: its turn must still end with the agent.
    provider = ScriptedProvider([delay(100, text("too late"))])
    outcome: list[BaseException] = []
    async with trio.open_nursery() as callers:
        async with trio.open_nursery() as home:
            agent = await Agent.start(home, provider=provider, name="short-lived")

            async def ask() -> None:
                try:
                    await agent.chat("hello")
                except AgentStopped as exc:
                    outcome.append(exc)

            callers.start_soon(ask)
            await trio.sleep(1)
            home.cancel_scope.cancel()
        await trio.sleep(1)
    (error,) = outcome
    assert isinstance(error, AgentStopped) and error.agent == "short-lived"
    assert error.result is not None and error.result.status == "cancelled"
    assert trio.current_time() < 10  # not the 100 s the model would have taken


async def test_an_agent_stopped_twice_while_a_turn_runs_ends_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sessions: list[Session] = []
    stopped: list[AgentStopped] = []
    provider = ScriptedProvider([delay(100, text("too late"))])
    async with (
        Agent.open(provider=provider, on_shutdown=sessions.append) as agent,
        trio.open_nursery() as nursery,
    ):

        async def ask() -> None:
            try:
                await agent.chat("hello")
            except AgentStopped as exc:
                stopped.append(exc)

        nursery.start_soon(ask)
        await trio.sleep(1)
        nursery.start_soon(agent.stop)
        await agent.stop()
    assert len(sessions) == 1  # on_shutdown ran once
    assert len(stopped) == 1 and stopped[0].result is not None
