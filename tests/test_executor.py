"""Tool execution within a run: parallelism, ordering, isolation, validation, timeouts, threads.

Ports the executor tests of the Elixir library (execute_all/3, turn_test "with tool use") and
checks the robustness it lacked: schema validation before a tool runs, exceptions that never
touch siblings, timeouts that keep the call id and a real duration, abandoned worker threads,
and tool output that always encodes as UTF-8.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import trio

import alloy
from alloy.testing import FunctionProvider, ScriptedProvider, call, reply, text, tool_call
from support import answered


class Probe:
    """A hand-written tool whose behaviour is a coroutine function given at construction."""

    description = "A tool for tests."

    def __init__(
        self,
        name: str,
        body: Any,
        *,
        schema: Mapping[str, Any] | None = None,
        sequential: bool = False,
        timeout: float | None = None,
    ) -> None:
        self.name = name
        self._body = body
        self.input_schema: Mapping[str, Any] = schema or {"type": "object"}
        self.sequential = sequential
        self.timeout = timeout
        self.calls: list[Mapping[str, Any]] = []

    async def execute(self, arguments: Mapping[str, Any], context: alloy.ToolContext) -> Any:
        self.calls.append(arguments)
        return await self._body(arguments, context)


def results_of(result: alloy.Result, turn: int = 1) -> tuple[alloy.ToolResult, ...]:
    """The tool results answering the ``turn``-th assistant message."""
    assistant = [i for i, m in enumerate(result.messages) if m.role == "assistant"]
    return result.messages[assistant[turn - 1] + 1].tool_results


# -- the happy path --------------------------------------------------------------------------


async def test_single_call(echo: alloy.Tool) -> None:
    provider = ScriptedProvider([tool_call("echo", {"text": "it worked"}), text("done")])
    result = await alloy.run("go", provider=provider, tools=[echo])
    assert result.status == "completed"
    assert result.turns == 2
    assert [m.role for m in result.messages] == ["user", "assistant", "user", "assistant"]
    (answer,) = results_of(result)
    assert answer == alloy.ToolResult(call_id="call_1", content="Echo: it worked", is_error=False)
    assert result.text == "done"


async def test_calls_run_concurrently(autojump_clock: trio.testing.MockClock) -> None:
    # Each call waits until both have started: run one after the other, they would deadlock
    # (fail_after then fails the test in virtual time).
    started = 0
    both_started = trio.Event()

    async def rendezvous(arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        nonlocal started
        started += 1
        if started == 2:
            both_started.set()
        await both_started.wait()
        return f"met {arguments['tag']}"

    left = Probe("left", rendezvous)
    right = Probe("right", rendezvous)
    provider = ScriptedProvider(
        [reply(call("left", {"tag": "a"}), call("right", {"tag": "b"})), text("done")]
    )
    with trio.fail_after(60):
        result = await alloy.run("go", provider=provider, tools=[left, right])
    assert [r.content for r in results_of(result)] == ["met a", "met b"]


async def test_results_keep_call_order_whatever_the_finish_order() -> None:
    finish_order: list[str] = []
    later_done = trio.Event()

    async def first(arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        await later_done.wait()  # finishes only after the later call finished
        finish_order.append("first")
        return "first result"

    async def later(arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        finish_order.append("later")
        later_done.set()
        return "later result"

    provider = ScriptedProvider([reply(call("first"), call("later")), text("done")])
    with trio.fail_after(10):
        result = await alloy.run(
            "go", provider=provider, tools=[Probe("first", first), Probe("later", later)]
        )
    assert finish_order == ["later", "first"]
    results = results_of(result)
    assert [r.content for r in results] == ["first result", "later result"]
    assert [r.call_id for r in results] == ["call_1", "call_2"]


async def test_many_calls_in_one_turn_are_all_answered_in_order(echo: alloy.Tool) -> None:
    calls = [call("echo", {"text": str(i)}) for i in range(20)]
    provider = ScriptedProvider([reply(*calls), text("done")])
    result = await alloy.run("go", provider=provider, tools=[echo])
    assert [r.content for r in results_of(result)] == [f"Echo: {i}" for i in range(20)]
    assert len(result.tool_calls) == 20
    answered(result.messages)


# -- failures become error results -----------------------------------------------------------


async def test_unknown_tool_names_the_available_tools(echo: alloy.Tool) -> None:
    async def noop(arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        return "ok"

    provider = ScriptedProvider([tool_call("nonexistent", {}), text("sorry")])
    result = await alloy.run("go", provider=provider, tools=[echo, Probe("another", noop)])
    (answer,) = results_of(result)
    assert answer.is_error
    assert answer.call_id == "call_1"
    assert "nonexistent" in answer.content
    assert "Available tools: another, echo" in answer.content
    record = result.tool_calls[0]
    assert record.outcome == "unknown_tool"
    assert record.error == answer.content


async def test_unknown_tool_without_any_tools() -> None:
    provider = ScriptedProvider([tool_call("read", {"path": "x"}), text("sorry")])
    result = await alloy.run("go", provider=provider)
    (answer,) = results_of(result)
    assert answer.is_error
    assert "'read'" in answer.content
    assert "none" in answer.content


async def test_raising_tool_gives_an_error_result_and_spares_its_siblings(
    echo: alloy.Tool,
) -> None:
    async def boom(arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        raise ValueError("boom!")

    provider = ScriptedProvider(
        [
            reply(call("echo", {"text": "before"}), call("boom"), call("echo", {"text": "after"})),
            text("done"),
        ]
    )
    result = await alloy.run("go", provider=provider, tools=[echo, Probe("boom", boom)])
    assert result.status == "completed"
    before, failed, after = results_of(result)
    assert (before.content, before.is_error) == ("Echo: before", False)
    assert (after.content, after.is_error) == ("Echo: after", False)
    assert failed.is_error
    assert failed.call_id == "call_2"
    assert failed.content == "Tool 'boom' raised ValueError: boom!"
    record = next(r for r in result.tool_calls if r.name == "boom")
    assert record.outcome == "error"
    assert record.error == failed.content


async def test_exception_group_from_a_tool_is_an_error_result(echo: alloy.Tool) -> None:
    async def fails_in_nursery(arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        async def crash() -> None:
            raise RuntimeError("child failed")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(crash)
        return "unreachable"

    provider = ScriptedProvider(
        [reply(call("grouped"), call("echo", {"text": "sibling"})), text("done")]
    )
    result = await alloy.run(
        "go", provider=provider, tools=[Probe("grouped", fails_in_nursery), echo]
    )
    failed, sibling = results_of(result)
    assert failed.is_error
    # A group of one shows the real cause, not "ExceptionGroup".
    assert failed.content == "Tool 'grouped' raised RuntimeError: child failed"
    assert sibling.content == "Echo: sibling"


async def test_tool_error_gives_exactly_its_message() -> None:
    async def refuse(arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        raise alloy.ToolError("only https URLs are allowed")

    provider = ScriptedProvider([tool_call("fetch", {}), text("ok")])
    result = await alloy.run("go", provider=provider, tools=[Probe("fetch", refuse)])
    (answer,) = results_of(result)
    assert answer.is_error
    assert answer.content == "only https URLs are allowed"
    assert result.tool_calls[0].outcome == "error"
    assert result.tool_calls[0].error == "only https URLs are allowed"


async def test_tool_error_without_message_still_says_what_failed() -> None:
    async def refuse(arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        raise alloy.ToolError()

    provider = ScriptedProvider([tool_call("fetch", {}), text("ok")])
    result = await alloy.run("go", provider=provider, tools=[Probe("fetch", refuse)])
    (answer,) = results_of(result)
    assert answer.is_error
    assert "fetch" in answer.content


# -- argument validation ------------------------------------------------------------------------

WEATHER_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer"},
        "unit": {"type": "string", "enum": ["c", "f"]},
    },
    "required": ["city"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({}, ["missing required argument 'city'"]),
        (
            {"city": "Paris", "cty": "Paris"},
            ["unexpected argument 'cty' (expected: city, days, unit)"],
        ),
        ({"city": 3}, ["argument 'city' must be a string, got integer 3"]),
        ({"city": "Paris", "days": "two"}, ["argument 'days' must be an integer"]),
        ({"city": "Paris", "unit": "k"}, ["argument 'unit' must be one of 'c', 'f', got 'k'"]),
        (
            {"cty": "Paris"},
            ["missing required argument 'city'", "unexpected argument 'cty'"],
        ),
    ],
)
async def test_invalid_arguments_say_what_is_wrong_and_the_tool_does_not_run(
    arguments: dict[str, Any], expected: list[str]
) -> None:
    async def weather(arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        return "sunny"

    tool = Probe("weather", weather, schema=WEATHER_SCHEMA)
    provider = ScriptedProvider([tool_call("weather", arguments), text("sorry")])
    result = await alloy.run("go", provider=provider, tools=[tool])
    (answer,) = results_of(result)
    assert answer.is_error
    assert answer.content.startswith("Invalid arguments for tool 'weather': ")
    for fragment in expected:
        assert fragment in answer.content
    assert tool.calls == []
    record = result.tool_calls[0]
    assert record.outcome == "invalid_arguments"
    assert record.error == answer.content


async def test_valid_arguments_reach_the_tool() -> None:
    async def weather(arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        return f"sunny in {arguments['city']}"

    tool = Probe("weather", weather, schema=WEATHER_SCHEMA)
    provider = ScriptedProvider(
        [tool_call("weather", {"city": "Paris", "days": 2, "unit": "c"}), text("ok")]
    )
    result = await alloy.run("go", provider=provider, tools=[tool])
    assert results_of(result)[0].content == "sunny in Paris"
    assert tool.calls == [{"city": "Paris", "days": 2, "unit": "c"}]


async def test_invalid_call_does_not_stop_valid_siblings() -> None:
    async def weather(arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        return f"sunny in {arguments['city']}"

    tool = Probe("weather", weather, schema=WEATHER_SCHEMA)
    provider = ScriptedProvider(
        [
            reply(call("weather", {"city": 1}), call("weather", {"city": "Oslo"})),
            text("ok"),
        ]
    )
    result = await alloy.run("go", provider=provider, tools=[tool])
    bad, good = results_of(result)
    assert bad.is_error and not good.is_error
    assert good.content == "sunny in Oslo"
    assert tool.calls == [{"city": "Oslo"}]


async def test_decorated_tool_validates_before_calling_the_function() -> None:
    ran: list[int] = []

    @alloy.tool
    async def add(a: int, b: int) -> int:
        """Add two numbers."""
        ran.append(a + b)
        return a + b

    provider = ScriptedProvider(
        [reply(call("add", {"a": 1}), call("add", {"a": 1, "b": "2"})), text("ok")]
    )
    result = await alloy.run("go", provider=provider, tools=[add])
    missing, wrong = results_of(result)
    assert "missing required argument 'b'" in missing.content
    assert "argument 'b' must be an integer" in wrong.content
    assert ran == []


# -- timeouts ----------------------------------------------------------------------------------


async def _sleep_forever(arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
    await trio.sleep_forever()
    raise AssertionError("unreachable")


async def test_timeout_keeps_the_call_id_and_spares_the_sibling(
    autojump_clock: trio.testing.MockClock, echo: alloy.Tool
) -> None:
    provider = ScriptedProvider(
        [
            reply(call("slow", id="call_slow"), call("echo", {"text": "fast"}, id="call_fast")),
            text("done"),
        ]
    )
    result = await alloy.run(
        "go", provider=provider, tools=[Probe("slow", _sleep_forever), echo], tool_timeout=1.5
    )
    assert result.status == "completed"
    slow, fast = results_of(result)
    assert slow.call_id == "call_slow"
    assert slow.is_error
    assert slow.content.startswith("Tool 'slow' timed out after 1.5s.")
    assert fast == alloy.ToolResult(call_id="call_fast", content="Echo: fast")
    record = next(r for r in result.tool_calls if r.id == "call_slow")
    assert record.outcome == "timeout"
    assert record.error == slow.content
    assert record.duration >= 1.5  # virtual time: the call really ran until its deadline


async def test_a_shielded_cleanup_is_waited_for_then_answered_as_a_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cleanup_finished: list[float] = []
    sibling_done: list[float] = []

    async def stubborn(arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            # Shields a long cleanup from cancellation: Trio semantics, so it runs to its end.
            with trio.CancelScope(shield=True):
                await trio.sleep(1000)
            cleanup_finished.append(trio.current_time())
            raise
        raise AssertionError("unreachable")

    async def quick(arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        await trio.sleep(1)
        sibling_done.append(trio.current_time())
        return "quick"

    limit = 2.0
    asked_at: list[float] = []

    def model(request: alloy.Request) -> Any:
        asked_at.append(trio.current_time())
        if len(asked_at) == 1:
            return reply(call("stubborn", {}), call("quick", {}))
        return text("moving on")

    start = trio.current_time()
    result = await alloy.run(
        "go",
        provider=FunctionProvider(model),
        tools=[Probe("stubborn", stubborn), Probe("quick", quick)],
        tool_timeout=limit,
    )
    # The sibling was not held up; the model was asked again once the cleanup had ended.
    assert sibling_done == [start + 1]
    assert cleanup_finished == [start + limit + 1000]
    assert asked_at[1] == cleanup_finished[0]
    answer, other = results_of(result)
    assert answer.is_error and answer.content == "Tool 'stubborn' timed out after 2s."
    assert other.content == "quick" and not other.is_error
    outcomes = {record.name: record.outcome for record in result.tool_calls}
    assert outcomes == {"stubborn": "timeout", "quick": "ok"}
    assert result.text == "moving on"


async def test_tool_level_timeout_overrides_the_run_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def naps(arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        await trio.sleep(arguments["seconds"])
        return "rested"

    short = Probe("short", naps, timeout=2)
    long = Probe("long", naps, timeout=50)
    provider = ScriptedProvider(
        [reply(call("short", {"seconds": 10}), call("long", {"seconds": 10})), text("done")]
    )
    result = await alloy.run("go", provider=provider, tools=[short, long], tool_timeout=5)
    cut, rested = results_of(result)
    assert cut.is_error
    assert cut.content.startswith("Tool 'short' timed out after 2s.")
    # The run's 5 s would have cut it; the tool's own 50 s let it finish.
    assert (rested.content, rested.is_error) == ("rested", False)


async def test_tool_level_timeout_applies_without_a_run_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = ScriptedProvider([tool_call("slow", {}), text("done")])
    result = await alloy.run(
        "go", provider=provider, tools=[Probe("slow", _sleep_forever, timeout=3)], tool_timeout=None
    )
    assert result.tool_calls[0].outcome == "timeout"
    assert "timed out after 3s" in results_of(result)[0].content


async def test_decorated_tool_timeout(autojump_clock: trio.testing.MockClock) -> None:
    @alloy.tool(timeout=1)
    async def wait() -> str:
        """Wait for a long time."""
        await trio.sleep(100)
        return "done"

    provider = ScriptedProvider([tool_call("wait", {}), text("done")])
    result = await alloy.run("go", provider=provider, tools=[wait], tool_timeout=60)
    assert result.tool_calls[0].outcome == "timeout"
    assert "timed out after 1s" in results_of(result)[0].content


# -- sequential tools --------------------------------------------------------------------------


async def test_sequential_tools_run_alone_after_the_parallel_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[str, str]] = []

    async def work(arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        tag = arguments["tag"]
        log.append(("start", tag))
        await trio.sleep(1)
        log.append(("end", tag))
        return tag

    parallel = Probe("par", work)
    alone = Probe("seq", work, sequential=True)
    provider = ScriptedProvider(
        [
            reply(
                call("seq", {"tag": "s1"}),
                call("par", {"tag": "p1"}),
                call("seq", {"tag": "s2"}),
                call("par", {"tag": "p2"}),
            ),
            text("done"),
        ]
    )
    result = await alloy.run("go", provider=provider, tools=[parallel, alone])
    # Results keep the call order even though s1 ran after p1 and p2.
    assert [r.content for r in results_of(result)] == ["s1", "p1", "s2", "p2"]

    position = {event: index for index, event in enumerate(log)}
    # The parallel calls overlapped each other...
    assert position[("start", "p2")] < position[("end", "p1")]
    assert position[("start", "p1")] < position[("end", "p2")]
    # ...and each sequential call ran alone, after them, in call order.
    assert log[4:] == [("start", "s1"), ("end", "s1"), ("start", "s2"), ("end", "s2")]


async def test_decorated_sequential_tool(autojump_clock: trio.testing.MockClock) -> None:
    running = 0
    most = 0

    @alloy.tool(sequential=True)
    async def commit(message: str) -> str:
        """Commit with a message."""
        nonlocal running, most
        running += 1
        most = max(most, running)
        await trio.sleep(1)
        running -= 1
        return message

    provider = ScriptedProvider(
        [reply(*(call("commit", {"message": str(i)}) for i in range(4))), text("done")]
    )
    result = await alloy.run("go", provider=provider, tools=[commit])
    assert most == 1
    assert [r.content for r in results_of(result)] == ["0", "1", "2", "3"]


async def test_sequential_tool_timeout_applies(autojump_clock: trio.testing.MockClock) -> None:
    tool = Probe("seq", _sleep_forever, sequential=True)
    provider = ScriptedProvider([tool_call("seq", {}), text("done")])
    result = await alloy.run("go", provider=provider, tools=[tool], tool_timeout=2)
    assert result.tool_calls[0].outcome == "timeout"


# -- sync tools run in worker threads ------------------------------------------------------------


async def test_sync_tools_run_in_a_worker_thread() -> None:
    seen: list[bool] = []

    @alloy.tool
    def where(label: str) -> str:
        """Report the thread."""
        seen.append(threading.current_thread() is not threading.main_thread())
        return f"{label} ran"

    provider = ScriptedProvider([tool_call("where", {"label": "it"}), text("done")])
    with trio.fail_after(30):
        result = await alloy.run("go", provider=provider, tools=[where])
    assert seen == [True]
    assert results_of(result)[0].content == "it ran"


async def test_sync_tool_timeout_abandons_the_thread_and_says_so() -> None:
    release = threading.Event()
    finished = threading.Event()

    @alloy.tool
    def blocked() -> str:
        """Block until released."""
        release.wait(60)
        finished.set()
        return "released"

    provider = ScriptedProvider([tool_call("blocked", {}), text("done")])
    try:
        with trio.fail_after(30):
            result = await alloy.run("go", provider=provider, tools=[blocked], tool_timeout=0.2)
        # The run returned while the thread was still blocked.
        assert not finished.is_set()
        (answer,) = results_of(result)
        assert answer.is_error
        assert "timed out after 0.2s" in answer.content
        assert "worker thread was abandoned" in answer.content
        assert result.tool_calls[0].outcome == "timeout"
    finally:
        release.set()
        assert await trio.to_thread.run_sync(finished.wait, 30)


async def test_cancelling_a_run_abandons_a_blocked_sync_tool() -> None:
    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    @alloy.tool
    def blocked() -> str:
        """Block until released."""
        started.set()
        release.wait(60)
        finished.set()
        return "released"

    provider = ScriptedProvider([tool_call("blocked", {}), text("done")])
    try:
        with trio.fail_after(30):
            async with alloy.stream(
                "go", provider=provider, tools=[blocked], tool_timeout=None
            ) as run:
                async for event in run:
                    if isinstance(event, alloy.ToolStarted):
                        # Leave once the function is running (and blocked) in its thread.
                        assert await trio.to_thread.run_sync(started.wait, 20)
                        break
        assert not finished.is_set()
        assert run.result is not None
        assert run.result.status == "cancelled"
        (answer,) = results_of(run.result)
        assert answer.is_error
        assert run.result.tool_calls[-1].outcome == "cancelled"
        answered(run.result.messages)
    finally:
        release.set()
        assert await trio.to_thread.run_sync(finished.wait, 30)


# -- what a tool is given -----------------------------------------------------------------------


async def test_tool_context_carries_directory_context_call_and_turn(
    tmp_path: Path, echo: alloy.Tool
) -> None:
    contexts: list[alloy.ToolContext] = []

    async def inspect(arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        contexts.append(context)
        return f"wd={context.working_directory} custom={context.context['user']}"

    provider = ScriptedProvider(
        [
            tool_call("echo", {"text": "warm-up"}),
            tool_call("inspect", {"x": 1}, id="call_inspect"),
            text("done"),
        ]
    )
    user_context = {"user": "hello"}
    result = await alloy.run(
        "go",
        provider=provider,
        tools=[echo, Probe("inspect", inspect)],
        working_directory=tmp_path,
        allowed_roots=[tmp_path.parent],
        context=user_context,
    )
    (context,) = contexts
    assert context.working_directory == tmp_path.resolve()
    assert context.allowed_roots == (tmp_path.parent.resolve(),)
    assert context.context is user_context
    assert context.call == alloy.ToolCall(id="call_inspect", name="inspect", arguments={"x": 1})
    assert context.turn == 2
    assert results_of(result, 2)[0].content == f"wd={tmp_path.resolve()} custom=hello"


async def test_decorated_tool_receives_the_context(tmp_path: Path) -> None:
    @alloy.tool
    async def whoami(context: alloy.ToolContext) -> str:
        """Say who is asking."""
        return f"{context.context['user']}@{context.working_directory.name}"

    provider = ScriptedProvider([tool_call("whoami", {}), text("done")])
    result = await alloy.run(
        "go", provider=provider, tools=[whoami], working_directory=tmp_path, context={"user": "ada"}
    )
    assert results_of(result)[0].content == f"ada@{tmp_path.name}"


# -- records and events ---------------------------------------------------------------------------


async def test_records_describe_every_call(echo: alloy.Tool) -> None:
    async def boom(arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        raise RuntimeError("no")

    provider = ScriptedProvider(
        [
            tool_call("echo", {"text": "world"}, id="tool_1"),
            reply(call("boom", {"n": 1}, id="tool_2"), call("echo", {"text": "x"}, id="tool_3")),
            text("done"),
        ]
    )
    result = await alloy.run("go", provider=provider, tools=[echo, Probe("boom", boom)])
    by_id = {record.id: record for record in result.tool_calls}
    assert set(by_id) == {"tool_1", "tool_2", "tool_3"}
    first = by_id["tool_1"]
    assert (first.name, dict(first.arguments), first.turn) == ("echo", {"text": "world"}, 1)
    assert (first.outcome, first.error, first.is_error) == ("ok", None, False)
    assert first.duration >= 0
    failed = by_id["tool_2"]
    assert (failed.name, dict(failed.arguments), failed.turn) == ("boom", {"n": 1}, 2)
    assert failed.outcome == "error"
    assert failed.is_error
    assert failed.error == "Tool 'boom' raised RuntimeError: no"
    assert by_id["tool_3"].turn == 2
    assert all(record.duration >= 0 for record in result.tool_calls)


async def test_tool_events_bracket_each_call(echo: alloy.Tool) -> None:
    events: list[alloy.Event] = []
    provider = ScriptedProvider(
        [reply(call("echo", {"text": "a"}), call("echo", {"text": "b"})), text("done")]
    )
    result = await alloy.run("go", provider=provider, tools=[echo], on_event=events.append)
    started = {e.call.id: e for e in events if isinstance(e, alloy.ToolStarted)}
    finished = {e.call.id: e for e in events if isinstance(e, alloy.ToolFinished)}
    assert set(started) == set(finished) == {"call_1", "call_2"}
    for call_id, start in started.items():
        end = finished[call_id]
        assert start.seq < end.seq
        assert start.turn == end.turn == 1
        assert start.call.arguments == end.call.arguments
        assert end.result.call_id == call_id
        assert end.record in result.tool_calls
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_blocked_calls_also_emit_tool_events(echo: alloy.Tool) -> None:
    class Deny(alloy.Middleware):
        def before_tool_call(self, run: alloy.RunContext, call: alloy.ToolCall) -> Any:
            return alloy.Block("not allowed")

    events: list[alloy.Event] = []
    provider = ScriptedProvider([tool_call("echo", {"text": "a"}), text("done")])
    await alloy.run(
        "go", provider=provider, tools=[echo], middleware=[Deny()], on_event=events.append
    )
    started = [e for e in events if isinstance(e, alloy.ToolStarted)]
    finished = [e for e in events if isinstance(e, alloy.ToolFinished)]
    assert len(started) == len(finished) == 1
    assert started[0].seq < finished[0].seq
    assert finished[0].record.outcome == "blocked"
    assert finished[0].record.error == "Blocked: not allowed"


# -- what a tool returns --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "content"),
    [
        ({"agents": [{"name": "atlas"}], "n": 1}, '{"agents": [{"name": "atlas"}], "n": 1}'),
        ([1, "é"], '[1, "é"]'),
        (42, "42"),
        (1.5, "1.5"),
        (True, "true"),
        (None, ""),
        ("plain", "plain"),
    ],
)
async def test_non_string_results_are_json_encoded(value: Any, content: str) -> None:
    async def give(arguments: Mapping[str, Any], context: alloy.ToolContext) -> Any:
        return value

    @alloy.tool
    async def give_decorated() -> Any:
        """Return a value."""
        return value

    provider = ScriptedProvider([reply(call("give"), call("give_decorated")), text("done")])
    result = await alloy.run("go", provider=provider, tools=[Probe("give", give), give_decorated])
    raw, decorated = results_of(result)
    assert (raw.content, raw.is_error) == (content, False)
    assert (decorated.content, decorated.is_error) == (content, False)
    if content and not isinstance(value, str):
        assert json.loads(content) == value


@pytest.mark.parametrize(
    "value",
    [
        "bad \ud800 surrogate",
        "\udcff",
        "pair \ud83d\ude00 split",
        {"key": "lone \udc80"},
    ],
)
async def test_lone_surrogates_are_sanitised(value: Any) -> None:
    async def give(arguments: Mapping[str, Any], context: alloy.ToolContext) -> Any:
        return value

    async def fail(arguments: Mapping[str, Any], context: alloy.ToolContext) -> Any:
        raise alloy.ToolError(f"failed on {value}")

    provider = ScriptedProvider([reply(call("give"), call("fail")), text("done")])
    result = await alloy.run(
        "go", provider=provider, tools=[Probe("give", give), Probe("fail", fail)]
    )
    for answer in results_of(result):
        answer.content.encode("utf-8")  # does not raise
    given, failed = results_of(result)
    assert not given.is_error
    if isinstance(value, str) and value.startswith("bad"):
        assert given.content.startswith("bad ") and given.content.endswith(" surrogate")
    assert failed.is_error and failed.content.startswith("failed on")
    # The whole conversation encodes as UTF-8 JSON, ready for the next request or storage.
    json.dumps(alloy.dump_messages(result.messages), ensure_ascii=False).encode("utf-8")


async def test_valid_unicode_is_kept_as_is() -> None:
    value = "日本語 😀 e\u0301 \x00"

    async def give(arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        return value

    provider = ScriptedProvider([tool_call("give"), text("done")])
    result = await alloy.run("go", provider=provider, tools=[Probe("give", give)])
    assert results_of(result)[0].content == value


# -- loop edge cases (the reference's CaseClauseErrors) ----------------------------------------


async def test_tool_use_stop_reason_without_calls_ends_the_run() -> None:
    provider = ScriptedProvider([text("nothing to call", stop_reason="tool_use")])
    result = await alloy.run("go", provider=provider)
    assert result.status == "completed"
    assert len(result.messages) == 2  # no empty tool-results message


async def test_calls_with_end_turn_stop_reason_are_still_answered(echo: alloy.Tool) -> None:
    provider = ScriptedProvider(
        [reply(call("echo", {"text": "a"}), stop_reason="end_turn"), text("done")]
    )
    result = await alloy.run("go", provider=provider, tools=[echo])
    assert results_of(result)[0].content == "Echo: a"
    assert result.text == "done"
    answered(result.messages)


async def test_server_tool_calls_are_not_executed(echo: alloy.Tool) -> None:
    server_call = alloy.ServerToolCall(id="srvtoolu_01", name="code_execution", arguments={})
    server_result = alloy.ServerToolResult(
        call_id="srvtoolu_01", kind="code_execution_tool_result", content={"stdout": "2"}
    )
    provider = ScriptedProvider(
        [reply(server_call, server_result, call("echo", {"text": "a"})), text("done")]
    )
    result = await alloy.run("go", provider=provider, tools=[echo])
    (answer,) = results_of(result)
    assert answer.call_id == "call_1"
    assert [r.name for r in result.tool_calls] == ["echo"]


async def test_truncated_call_reusing_an_earlier_id_is_not_answered_with_the_old_result(
    echo: alloy.Tool,
) -> None:
    # Some providers number calls per turn, so ids repeat across turns.
    provider = ScriptedProvider(
        [
            tool_call("echo", {"text": "first"}, id="call_0"),
            reply(call("echo", {"text": "second"}, id="call_0"), stop_reason="max_tokens"),
            text("done"),
        ]
    )
    result = await alloy.run("go", provider=provider, tools=[echo])
    first = results_of(result, 1)[0]
    (second,) = results_of(result, 2)
    assert first.content == "Echo: first"
    assert second.is_error
    assert "cut off" in second.content
    assert [(r.turn, r.outcome) for r in result.tool_calls] == [(1, "ok"), (2, "not_run")]
    answered(result.messages)
