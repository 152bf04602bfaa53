"""Middleware: hook order, sync/async hooks, shared state, Halt, Block, ReplaceArguments, errors.

Ports the Elixir middleware tests (hook points, halting, blocking, on_error) and checks what the
reference got wrong: a halt keeps the changes earlier middleware made, ``before_tool_call``
changes are kept, unexpected return values are a clear ``MiddlewareError``, and a halt never
leaves a tool call without a result in the transcript.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
import trio

import alloy
from alloy.testing import ScriptedProvider, call, error, reply, text, tool_call
from support import answered


class Spy:
    """A tool that records its calls and echoes its text."""

    name = "spy"
    description = "Record the call."
    input_schema: Mapping[str, Any] = {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
        "additionalProperties": False,
    }

    def __init__(self, trace: list[str] | None = None) -> None:
        self.ran: list[str] = []
        self._trace = trace

    async def execute(self, arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        self.ran.append(arguments["text"])
        if self._trace is not None:
            self._trace.append(f"tool:{arguments['text']}")
        return f"Spy: {arguments['text']}"


def two_calls_then_done() -> ScriptedProvider:
    return ScriptedProvider(
        [reply(call("spy", {"text": "a"}), call("spy", {"text": "b"})), text("done")]
    )


class Tracer(alloy.Middleware):
    """Records every hook it sees, with a short description of the arguments."""

    def __init__(self, trace: list[str], label: str = "") -> None:
        self.trace = trace
        self.label = label

    def _add(self, entry: str) -> None:
        self.trace.append(f"{self.label}{entry}")

    def session_start(self, run: alloy.RunContext) -> None:
        self._add("session_start")

    def before_completion(self, run: alloy.RunContext) -> None:
        self._add(f"before_completion:{run.turn}")

    def after_tool_request(self, run: alloy.RunContext, calls: Sequence[alloy.ToolCall]) -> None:
        self._add("after_tool_request:" + ",".join(c.id for c in calls))

    def before_tool_call(self, run: alloy.RunContext, call: alloy.ToolCall) -> None:
        self._add(f"before_tool_call:{call.id}")

    def after_tool_execution(
        self, run: alloy.RunContext, results: Sequence[alloy.ToolResult]
    ) -> None:
        self._add("after_tool_execution:" + ",".join(r.call_id for r in results))

    def after_completion(self, run: alloy.RunContext, completion: alloy.Completion) -> None:
        self._add(f"after_completion:{completion.message.text}")

    def on_error(self, run: alloy.RunContext, error: alloy.AlloyError) -> None:
        self._add(f"on_error:{error}")

    def session_end(self, run: alloy.RunContext, result: alloy.Result) -> None:
        self._add(f"session_end:{result.status}")


# -- order --------------------------------------------------------------------------------------


async def test_hooks_fire_in_the_documented_order() -> None:
    trace: list[str] = []
    result = await alloy.run(
        "go", provider=two_calls_then_done(), tools=[Spy(trace)], middleware=[Tracer(trace)]
    )
    assert result.status == "completed"
    assert trace[:5] == [
        "session_start",
        "before_completion:0",
        "after_tool_request:call_1,call_2",
        "before_tool_call:call_1",
        "before_tool_call:call_2",
    ]
    # The two calls run in parallel, in either order, after every approval.
    assert sorted(trace[5:7]) == ["tool:a", "tool:b"]
    assert trace[7:] == [
        "after_tool_execution:call_1,call_2",
        "before_completion:1",
        "after_completion:done",
        "session_end:completed",
    ]


async def test_middleware_run_in_list_order_for_each_hook() -> None:
    trace: list[str] = []
    provider = ScriptedProvider([text("hi")])
    await alloy.run("go", provider=provider, middleware=[Tracer(trace, "1."), Tracer(trace, "2.")])
    assert trace == [
        "1.session_start",
        "2.session_start",
        "1.before_completion:0",
        "2.before_completion:0",
        "1.after_completion:hi",
        "2.after_completion:hi",
        "1.session_end:completed",
        "2.session_end:completed",
    ]


async def test_hooks_see_the_run_as_it_progresses() -> None:
    seen: list[tuple[str, Any]] = []

    class Watch(alloy.Middleware):
        def before_completion(self, run: alloy.RunContext) -> None:
            seen.append(("status", run.status))
            seen.append(("messages", len(run.messages)))

        def after_tool_execution(
            self, run: alloy.RunContext, results: Sequence[alloy.ToolResult]
        ) -> None:
            seen.append(("results_in_history", run.messages[-1].tool_results == tuple(results)))
            seen.append(("records", sorted(r.id for r in run.tool_calls)))

        def after_completion(self, run: alloy.RunContext, completion: alloy.Completion) -> None:
            seen.append(("usage", run.usage.total_tokens))
            seen.append(("last", run.messages[-1] == completion.message))

        def session_end(self, run: alloy.RunContext, result: alloy.Result) -> None:
            seen.append(("end", (run.status, result.turns, len(result.messages))))

    await alloy.run("go", provider=two_calls_then_done(), tools=[Spy()], middleware=[Watch()])
    assert seen == [
        ("status", "running"),
        ("messages", 1),
        ("results_in_history", True),
        ("records", ["call_1", "call_2"]),
        ("status", "running"),
        ("messages", 3),
        ("usage", 30),
        ("last", True),
        ("end", ("completed", 2, 4)),
    ]


# -- kinds of middleware ------------------------------------------------------------------------


async def test_sync_and_async_hooks() -> None:
    trace: list[str] = []

    class Mixed:
        def before_completion(self, run: alloy.RunContext) -> None:
            trace.append("sync")

        async def after_completion(
            self, run: alloy.RunContext, completion: alloy.Completion
        ) -> None:
            await trio.lowlevel.checkpoint()
            trace.append("async")

        async def session_end(self, run: alloy.RunContext, result: alloy.Result) -> None:
            await trio.sleep(1e-9)
            trace.append("async end")

    await alloy.run("go", provider=ScriptedProvider([text("hi")]), middleware=[Mixed()])
    assert trace == ["sync", "async", "async end"]


async def test_async_hook_can_halt() -> None:
    class Later:
        async def before_completion(self, run: alloy.RunContext) -> alloy.Halt:
            await trio.lowlevel.checkpoint()
            return alloy.Halt("async says no")

    provider = ScriptedProvider([text("hi")])
    result = await alloy.run("go", provider=provider, middleware=[Later()])
    assert (result.status, result.reason) == ("halted", "async says no")
    assert provider.requests == []


async def test_plain_object_with_some_hooks() -> None:
    trace: list[str] = []

    class OnlyTools:  # not a Middleware subclass; one hook only
        def before_tool_call(self, run: alloy.RunContext, call: alloy.ToolCall) -> None:
            trace.append(call.arguments["text"])

    namespace = SimpleNamespace(session_start=lambda run: trace.append("namespace start"))
    result = await alloy.run(
        "go",
        provider=two_calls_then_done(),
        tools=[Spy()],
        middleware=[OnlyTools(), namespace],
    )
    assert result.status == "completed"
    assert trace == ["namespace start", "a", "b"]


async def test_subclass_overrides_only_what_it_needs() -> None:
    trace: list[str] = []

    class Audit(alloy.Middleware):
        async def after_tool_execution(
            self, run: alloy.RunContext, results: Sequence[alloy.ToolResult]
        ) -> None:
            trace.extend(r.content for r in results)

    result = await alloy.run(
        "go", provider=two_calls_then_done(), tools=[Spy()], middleware=[Audit()]
    )
    assert result.status == "completed"
    assert trace == ["Spy: a", "Spy: b"]


async def test_base_middleware_is_a_no_op() -> None:
    result = await alloy.run(
        "go",
        provider=two_calls_then_done(),
        tools=[Spy()],
        middleware=[alloy.Middleware()],
    )
    assert result.status == "completed"
    assert result.text == "done"


# -- shared state --------------------------------------------------------------------------------


async def test_system_prompt_change_reaches_the_provider() -> None:
    class Today(alloy.Middleware):
        def before_completion(self, run: alloy.RunContext) -> None:
            run.system_prompt = f"{run.system_prompt}\nToday is Monday."

    provider = ScriptedProvider([tool_call("spy", {"text": "a"}), text("done")])
    await alloy.run(
        "go", provider=provider, tools=[Spy()], system_prompt="Be brief.", middleware=[Today()]
    )
    assert provider.requests[0].system_prompt == "Be brief.\nToday is Monday."
    # The change persists: the second turn builds on the first.
    assert provider.requests[1].system_prompt == "Be brief.\nToday is Monday.\nToday is Monday."


async def test_message_change_before_completion_reaches_the_provider() -> None:
    class Remind(alloy.Middleware):
        def before_completion(self, run: alloy.RunContext) -> None:
            run.messages.append(alloy.Message.user("Reminder: answer in French."))

    provider = ScriptedProvider([text("Bonjour")])
    result = await alloy.run("hi", provider=provider, middleware=[Remind()])
    assert provider.requests[0].messages[-1] == alloy.Message.user("Reminder: answer in French.")
    assert result.messages[1] == alloy.Message.user("Reminder: answer in French.")


async def test_context_changes_are_seen_by_later_middleware_and_tools() -> None:
    seen_by_second: list[Any] = []
    seen_by_tool: list[Any] = []

    class First(alloy.Middleware):
        def session_start(self, run: alloy.RunContext) -> None:
            run.context["trace_id"] = "abc"

    class Second(alloy.Middleware):
        def session_start(self, run: alloy.RunContext) -> None:
            seen_by_second.append(dict(run.context))

    class Reader:
        name = "reader"
        description = "Read the context."
        input_schema: Mapping[str, Any] = {"type": "object"}

        async def execute(self, arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
            seen_by_tool.append(context.context["trace_id"])
            return "ok"

    context: dict[str, Any] = {"user": "ada"}
    provider = ScriptedProvider([tool_call("reader", {}), text("done")])
    await alloy.run(
        "go",
        provider=provider,
        tools=[Reader()],
        context=context,
        middleware=[First(), Second()],
    )
    assert seen_by_second == [{"user": "ada", "trace_id": "abc"}]
    assert seen_by_tool == ["abc"]
    assert context == {"user": "ada", "trace_id": "abc"}  # the caller's own object, shared


async def test_context_can_be_replaced_by_a_hook() -> None:
    seen: list[Any] = []

    class Install(alloy.Middleware):
        def session_start(self, run: alloy.RunContext) -> None:
            run.context = {"installed": True}

    class Reader:
        name = "reader"
        description = "Read the context."
        input_schema: Mapping[str, Any] = {"type": "object"}

        async def execute(self, arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
            seen.append(context.context)
            return "ok"

    provider = ScriptedProvider([tool_call("reader", {}), text("done")])
    await alloy.run("go", provider=provider, tools=[Reader()], middleware=[Install()])
    assert seen == [{"installed": True}]


async def test_before_tool_call_changes_are_kept() -> None:
    # The reference discarded state changes made in before_tool_call.
    seen: list[Any] = []

    class Approve(alloy.Middleware):
        def before_tool_call(self, run: alloy.RunContext, call: alloy.ToolCall) -> None:
            run.context.setdefault("approved", []).append(call.id)

    class Reader:
        name = "reader"
        description = "Read the context."
        input_schema: Mapping[str, Any] = {"type": "object"}

        async def execute(self, arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
            seen.append(list(context.context["approved"]))
            return "ok"

    context: dict[str, Any] = {}
    provider = ScriptedProvider([reply(call("reader"), call("reader")), text("done")])
    await alloy.run(
        "go", provider=provider, tools=[Reader()], context=context, middleware=[Approve()]
    )
    # Every approval happened before any call ran.
    assert seen == [["call_1", "call_2"], ["call_1", "call_2"]]
    assert context["approved"] == ["call_1", "call_2"]


async def test_halt_keeps_changes_made_by_earlier_middleware() -> None:
    ended: list[Any] = []

    class Mark(alloy.Middleware):
        def before_completion(self, run: alloy.RunContext) -> None:
            run.context["marked"] = True
            run.system_prompt = "changed"

    class Stop(alloy.Middleware):
        def before_completion(self, run: alloy.RunContext) -> alloy.Halt:
            return alloy.Halt("budget")

    class End(alloy.Middleware):
        def session_end(self, run: alloy.RunContext, result: alloy.Result) -> None:
            ended.append((dict(run.context), run.system_prompt, result.status, result.reason))

    result = await alloy.run(
        "go",
        provider=ScriptedProvider([text("x")]),
        context={},
        middleware=[Mark(), Stop(), End()],
    )
    assert (result.status, result.reason) == ("halted", "budget")
    assert ended == [({"marked": True}, "changed", "halted", "budget")]


# -- Halt ----------------------------------------------------------------------------------------

HALTING_HOOKS = [
    "session_start",
    "before_completion",
    "after_tool_request",
    "before_tool_call",
    "after_tool_execution",
    "after_completion",
]


class HaltAt(Tracer):
    """Halts the first time ``hook`` fires; records every hook like ``Tracer``."""

    def __init__(self, trace: list[str], hook: str) -> None:
        super().__init__(trace)
        self.hook = hook

    def _maybe(self, name: str) -> alloy.Halt | None:
        if name == self.hook:
            return alloy.Halt(f"policy at {name}")
        return None

    def session_start(self, run: alloy.RunContext) -> Any:
        super().session_start(run)
        return self._maybe("session_start")

    def before_completion(self, run: alloy.RunContext) -> Any:
        super().before_completion(run)
        return self._maybe("before_completion")

    def after_tool_request(self, run: alloy.RunContext, calls: Sequence[alloy.ToolCall]) -> Any:
        super().after_tool_request(run, calls)
        return self._maybe("after_tool_request")

    def before_tool_call(self, run: alloy.RunContext, call: alloy.ToolCall) -> Any:
        super().before_tool_call(run, call)
        return self._maybe("before_tool_call")

    def after_tool_execution(
        self, run: alloy.RunContext, results: Sequence[alloy.ToolResult]
    ) -> Any:
        super().after_tool_execution(run, results)
        return self._maybe("after_tool_execution")

    def after_completion(self, run: alloy.RunContext, completion: alloy.Completion) -> Any:
        super().after_completion(run, completion)
        return self._maybe("after_completion")


@pytest.mark.parametrize("hook", HALTING_HOOKS)
async def test_halt_from_any_hook(hook: str) -> None:
    first: list[str] = []
    later: list[str] = []
    spy = Spy()
    provider = two_calls_then_done()
    result = await alloy.run(
        "go",
        provider=provider,
        tools=[spy],
        middleware=[HaltAt(first, hook), Tracer(later)],
    )
    assert result.status == "halted"
    assert result.status != "error"
    assert result.reason == f"policy at {hook}"
    # The middleware after the halting one never saw the halting hook...
    assert not any(entry.startswith(hook) for entry in later)
    # ...but session_end still ran for everyone, with the halted result.
    assert first[-1] == later[-1] == "session_end:halted"
    # Never a tool call without a result.
    answered(result.messages)

    tools_ran = hook in ("after_tool_execution", "after_completion")
    assert sorted(spy.ran) == (["a", "b"] if tools_ran else [])
    expected_turns = {"session_start": 0, "before_completion": 0, "after_completion": 2}
    assert result.turns == expected_turns.get(hook, 1)
    if hook in ("after_tool_request", "before_tool_call"):
        results = result.messages[2].tool_results
        assert [r.call_id for r in results] == ["call_1", "call_2"]
        assert all(r.is_error and "halted" in r.content for r in results)
        assert all("policy at" in r.content for r in results)
        assert [(r.id, r.outcome) for r in result.tool_calls] == [
            ("call_1", "not_run"),
            ("call_2", "not_run"),
        ]
        assert provider.remaining == 1  # the second reply was never asked for
    if hook == "after_tool_execution":
        assert [r.content for r in result.messages[2].tool_results] == ["Spy: a", "Spy: b"]
        assert len(result.messages) == 3


async def test_before_tool_call_halt_on_a_later_call_runs_no_tool() -> None:
    class HaltOnB(alloy.Middleware):
        def before_tool_call(self, run: alloy.RunContext, call: alloy.ToolCall) -> Any:
            if call.arguments["text"] == "b":
                return alloy.Halt("tool call blocked by policy")
            return None

    spy = Spy()
    provider = ScriptedProvider(
        [
            reply(
                call("spy", {"text": "a"}), call("spy", {"text": "b"}), call("spy", {"text": "c"})
            ),
            text("never"),
        ]
    )
    result = await alloy.run("go", provider=provider, tools=[spy], middleware=[HaltOnB()])
    assert (result.status, result.reason) == ("halted", "tool call blocked by policy")
    assert spy.ran == []  # approvals come before any call runs
    assert provider.remaining == 1
    answered(result.messages)
    assert {r.outcome for r in result.tool_calls} == {"not_run"}


async def test_halt_in_a_later_turn_answers_that_turns_calls_not_an_earlier_one() -> None:
    # Some providers number calls per turn, so ids repeat across turns.
    class HaltSecondRequest(alloy.Middleware):
        seen = 0

        def after_tool_request(self, run: alloy.RunContext, calls: Sequence[alloy.ToolCall]) -> Any:
            self.seen += 1
            return alloy.Halt("enough") if self.seen == 2 else None

    spy = Spy()
    provider = ScriptedProvider(
        [
            tool_call("spy", {"text": "first"}, id="call_0"),
            tool_call("spy", {"text": "second"}, id="call_0"),
            text("never"),
        ]
    )
    result = await alloy.run("go", provider=provider, tools=[spy], middleware=[HaltSecondRequest()])
    assert result.status == "halted"
    assert spy.ran == ["first"]
    answered(result.messages)
    (unrun,) = result.messages[4].tool_results
    assert unrun.is_error
    assert "halted" in unrun.content
    assert unrun.content != "Spy: first"
    assert [(r.turn, r.outcome) for r in result.tool_calls] == [(1, "ok"), (2, "not_run")]


async def test_halt_in_session_end_is_ignored() -> None:
    class Late(alloy.Middleware):
        def session_end(self, run: alloy.RunContext, result: alloy.Result) -> alloy.Halt:
            return alloy.Halt("too late")

    result = await alloy.run("go", provider=ScriptedProvider([text("hi")]), middleware=[Late()])
    assert result.status == "completed"
    assert result.reason is None


async def test_normal_middleware_lets_the_run_complete() -> None:
    trace: list[str] = []
    result = await alloy.run(
        "go", provider=two_calls_then_done(), tools=[Spy()], middleware=[Tracer(trace)]
    )
    assert result.status == "completed"
    assert result.reason is None


# -- Block and ReplaceArguments ------------------------------------------------------------------


async def test_block_refuses_one_call_and_siblings_run() -> None:
    class NoBash(alloy.Middleware):
        def before_tool_call(self, run: alloy.RunContext, call: alloy.ToolCall) -> Any:
            if call.arguments["text"] == "rm -rf /":
                return alloy.Block("bash tool is disabled by policy")
            return None

    spy = Spy()
    provider = ScriptedProvider(
        [
            reply(call("spy", {"text": "ls"}), call("spy", {"text": "rm -rf /"})),
            text("ok"),
        ]
    )
    result = await alloy.run("go", provider=provider, tools=[spy], middleware=[NoBash()])
    assert result.status == "completed"
    assert spy.ran == ["ls"]
    allowed, blocked = result.messages[2].tool_results
    assert (allowed.content, allowed.is_error) == ("Spy: ls", False)
    assert blocked.call_id == "call_2"
    assert blocked.is_error
    assert blocked.content == "Blocked: bash tool is disabled by policy"
    record = next(r for r in result.tool_calls if r.id == "call_2")
    assert record.outcome == "blocked"
    assert record.error == "Blocked: bash tool is disabled by policy"
    # The model saw the reason.
    assert provider.requests[1].messages[-1].tool_results[1] == blocked


async def test_block_stops_later_middleware_for_that_call() -> None:
    later: list[str] = []

    class Deny(alloy.Middleware):
        def before_tool_call(self, run: alloy.RunContext, call: alloy.ToolCall) -> Any:
            return alloy.Block("no") if call.id == "call_1" else None

    class After(alloy.Middleware):
        def before_tool_call(self, run: alloy.RunContext, call: alloy.ToolCall) -> None:
            later.append(call.id)

    await alloy.run(
        "go", provider=two_calls_then_done(), tools=[Spy()], middleware=[Deny(), After()]
    )
    assert later == ["call_2"]


async def test_blocking_every_call_still_completes() -> None:
    class DenyAll(alloy.Middleware):
        def before_tool_call(self, run: alloy.RunContext, call: alloy.ToolCall) -> alloy.Block:
            return alloy.Block("not allowed")

    spy = Spy()
    provider = ScriptedProvider([tool_call("spy", {"text": "x"}) for _ in range(3)])
    result = await alloy.run(
        "go", provider=provider, tools=[spy], middleware=[DenyAll()], max_turns=3
    )
    assert result.status == "max_turns"
    assert spy.ran == []
    answered(result.messages)


async def test_replace_arguments_runs_the_tool_with_the_new_arguments() -> None:
    class Rewrite(alloy.Middleware):
        def before_tool_call(self, run: alloy.RunContext, call: alloy.ToolCall) -> Any:
            return alloy.ReplaceArguments({"text": call.arguments["text"].upper()})

    spy = Spy()
    provider = ScriptedProvider([tool_call("spy", {"text": "quiet"}), text("done")])
    result = await alloy.run("go", provider=provider, tools=[spy], middleware=[Rewrite()])
    assert spy.ran == ["QUIET"]
    assert result.messages[2].tool_results[0].content == "Spy: QUIET"
    assert dict(result.tool_calls[0].arguments) == {"text": "QUIET"}
    assert result.tool_calls[0].id == "call_1"


async def test_replaced_arguments_chain_through_later_middleware() -> None:
    seen: list[Any] = []

    class AddSuffix(alloy.Middleware):
        def before_tool_call(self, run: alloy.RunContext, call: alloy.ToolCall) -> Any:
            return alloy.ReplaceArguments({"text": call.arguments["text"] + "!"})

    class Look(alloy.Middleware):
        def before_tool_call(self, run: alloy.RunContext, call: alloy.ToolCall) -> None:
            seen.append(dict(call.arguments))

    spy = Spy()
    provider = ScriptedProvider([tool_call("spy", {"text": "hi"}), text("done")])
    await alloy.run(
        "go", provider=provider, tools=[spy], middleware=[AddSuffix(), AddSuffix(), Look()]
    )
    assert seen == [{"text": "hi!!"}]
    assert spy.ran == ["hi!!"]


async def test_replaced_arguments_are_validated() -> None:
    class Break(alloy.Middleware):
        def before_tool_call(self, run: alloy.RunContext, call: alloy.ToolCall) -> Any:
            return alloy.ReplaceArguments({"text": 5, "extra": True})

    spy = Spy()
    provider = ScriptedProvider([tool_call("spy", {"text": "fine"}), text("done")])
    result = await alloy.run("go", provider=provider, tools=[spy], middleware=[Break()])
    assert spy.ran == []
    answer = result.messages[2].tool_results[0]
    assert answer.is_error
    assert "argument 'text' must be a string" in answer.content
    assert "unexpected argument 'extra'" in answer.content
    assert result.tool_calls[0].outcome == "invalid_arguments"


# -- wrong return values ---------------------------------------------------------------------------

NON_TOOL_HOOKS = [
    "session_start",
    "before_completion",
    "after_tool_request",
    "after_tool_execution",
    "after_completion",
]


def _returning(hook: str, value: object) -> object:
    def method(*args: object) -> object:
        return value

    return SimpleNamespace(**{hook: method})


@pytest.mark.parametrize("hook", NON_TOOL_HOOKS)
@pytest.mark.parametrize(
    "value",
    [alloy.Block("nope"), alloy.ReplaceArguments({"text": "x"}), 42, "halt"],
    ids=["block", "replace", "int", "str"],
)
async def test_wrong_return_value_is_a_middleware_error_naming_the_hook(
    hook: str, value: object
) -> None:
    with pytest.raises(alloy.MiddlewareError) as caught:
        await alloy.run(
            "go",
            provider=two_calls_then_done(),
            tools=[Spy()],
            middleware=[_returning(hook, value)],
        )
    failure = caught.value
    assert failure.hook == hook
    assert hook in str(failure)
    assert repr(value) in str(failure)
    assert failure.result is not None
    assert failure.result.status == "error"
    answered(failure.result.messages)


async def test_block_from_before_completion_mentions_where_block_belongs() -> None:
    class Misplaced(alloy.Middleware):
        def before_completion(self, run: alloy.RunContext) -> alloy.Block:
            return alloy.Block("no")

    with pytest.raises(alloy.MiddlewareError, match="before_completion") as caught:
        await alloy.run("go", provider=ScriptedProvider([text("x")]), middleware=[Misplaced()])
    assert "before_tool_call" in str(caught.value)
    assert "Misplaced" in str(caught.value)


async def test_returning_the_run_context_is_a_middleware_error() -> None:
    # The Elixir habit: return the (updated) state.
    class ElixirStyle(alloy.Middleware):
        def before_completion(self, run: alloy.RunContext) -> alloy.RunContext:
            return run

    with pytest.raises(alloy.MiddlewareError) as caught:
        await alloy.run("go", provider=ScriptedProvider([text("x")]), middleware=[ElixirStyle()])
    assert caught.value.hook == "before_completion"


async def test_wrong_value_from_before_tool_call() -> None:
    class Weird(alloy.Middleware):
        def before_tool_call(self, run: alloy.RunContext, call: alloy.ToolCall) -> dict[str, str]:
            return {"text": "x"}

    spy = Spy()
    with pytest.raises(alloy.MiddlewareError) as caught:
        await alloy.run("go", provider=two_calls_then_done(), tools=[spy], middleware=[Weird()])
    assert caught.value.hook == "before_tool_call"
    assert spy.ran == []
    assert caught.value.result is not None
    answered(caught.value.result.messages)


# -- raising hooks ---------------------------------------------------------------------------------

ALL_HOOKS = [*HALTING_HOOKS, "before_tool_call", "on_error", "session_end"]


@pytest.mark.parametrize("hook", sorted(set(ALL_HOOKS)))
async def test_raising_hook_is_a_middleware_error_with_the_partial_result(hook: str) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError(f"bug in {hook}")

    if hook == "on_error":
        provider = ScriptedProvider([tool_call("spy", {"text": "a"}), error("Rate limited")])
    else:
        provider = two_calls_then_done()
    with pytest.raises(alloy.MiddlewareError) as caught:
        await alloy.run(
            "go",
            provider=provider,
            tools=[Spy()],
            middleware=[SimpleNamespace(**{hook: boom})],
        )
    failure = caught.value
    assert failure.hook == hook
    assert f"{hook} raised RuntimeError: bug in {hook}" in str(failure)
    assert isinstance(failure.__cause__, RuntimeError)
    assert failure.result is not None, "the error must carry the partial result"
    assert failure.result.messages[0] == alloy.Message.user("go")
    answered(failure.result.messages)
    if hook != "session_end":
        assert failure.result.status == "error"


async def test_raising_before_tool_call_runs_no_tool() -> None:
    class Broken(alloy.Middleware):
        def before_tool_call(self, run: alloy.RunContext, call: alloy.ToolCall) -> None:
            raise KeyError("current_tool_call")

    spy = Spy()
    with pytest.raises(alloy.MiddlewareError) as caught:
        await alloy.run("go", provider=two_calls_then_done(), tools=[spy], middleware=[Broken()])
    assert spy.ran == []
    result = caught.value.result
    assert result is not None
    assert result.turns == 1
    assert {r.outcome for r in result.tool_calls} == {"not_run"}
    answered(result.messages)


async def test_session_end_runs_after_a_middleware_error() -> None:
    ended: list[str] = []

    class Broken(alloy.Middleware):
        def before_completion(self, run: alloy.RunContext) -> None:
            raise ValueError("bad")

    class End(alloy.Middleware):
        def session_end(self, run: alloy.RunContext, result: alloy.Result) -> None:
            ended.append(result.status)

    with pytest.raises(alloy.MiddlewareError):
        await alloy.run("go", provider=ScriptedProvider([text("x")]), middleware=[Broken(), End()])
    assert ended == ["error"]


# -- on_error --------------------------------------------------------------------------------------


async def test_on_error_sees_the_provider_error_and_can_halt() -> None:
    seen: list[alloy.AlloyError] = []
    ended: list[str] = []

    class Policy(alloy.Middleware):
        def on_error(self, run: alloy.RunContext, error: alloy.AlloyError) -> alloy.Halt:
            seen.append(error)
            return alloy.Halt("error policy triggered")

        def session_end(self, run: alloy.RunContext, result: alloy.Result) -> None:
            ended.append(result.status)

    provider = ScriptedProvider([tool_call("spy", {"text": "a"}), error("HTTP 500: overloaded")])
    result = await alloy.run("go", provider=provider, tools=[Spy()], middleware=[Policy()])
    assert result.status == "halted"
    assert result.status != "error"
    assert result.reason == "error policy triggered"
    assert result.turns == 1
    assert len(result.messages) == 3  # nothing lost
    (error_seen,) = seen
    assert isinstance(error_seen, alloy.ProviderError)
    assert str(error_seen) == "HTTP 500: overloaded"
    assert ended == ["halted"]


async def test_on_error_without_halt_lets_the_error_propagate() -> None:
    seen: list[str] = []

    class Log(alloy.Middleware):
        async def on_error(self, run: alloy.RunContext, error: alloy.AlloyError) -> None:
            seen.append(str(error))

    provider = ScriptedProvider([error("API rate limited")])
    with pytest.raises(alloy.ProviderError) as caught:
        await alloy.run("go", provider=provider, middleware=[Log()])
    assert seen == ["API rate limited"]
    failure = caught.value
    assert failure.result is not None
    assert failure.result.status == "error"
    assert failure.result.reason == "API rate limited"


async def test_on_error_sees_script_exhaustion_and_a_crashing_provider() -> None:
    seen: list[type[BaseException]] = []

    class Log(alloy.Middleware):
        def on_error(self, run: alloy.RunContext, error: alloy.AlloyError) -> alloy.Halt:
            seen.append(type(error))
            return alloy.Halt("stop")

    class Crashing:
        async def complete(self, request: alloy.Request) -> alloy.Completion:
            raise ConnectionError("reset")

    result = await alloy.run("go", provider=ScriptedProvider([]), middleware=[Log()])
    assert result.status == "halted"
    result = await alloy.run("go", provider=Crashing(), middleware=[Log()])
    assert result.status == "halted"
    assert seen == [alloy.ScriptExhausted, alloy.ProviderError]


async def test_on_error_is_not_called_for_middleware_errors() -> None:
    seen: list[str] = []

    class Broken(alloy.Middleware):
        def before_completion(self, run: alloy.RunContext) -> None:
            raise ValueError("bad")

        def on_error(self, run: alloy.RunContext, error: alloy.AlloyError) -> None:
            seen.append(str(error))

    with pytest.raises(alloy.MiddlewareError):
        await alloy.run("go", provider=ScriptedProvider([text("x")]), middleware=[Broken()])
    assert seen == []


async def test_a_later_on_error_is_skipped_after_a_halt() -> None:
    later: list[str] = []

    class Halter(alloy.Middleware):
        def on_error(self, run: alloy.RunContext, error: alloy.AlloyError) -> alloy.Halt:
            return alloy.Halt("stop")

    class Later(alloy.Middleware):
        def on_error(self, run: alloy.RunContext, error: alloy.AlloyError) -> None:
            later.append("called")

    result = await alloy.run(
        "go", provider=ScriptedProvider([error("x")]), middleware=[Halter(), Later()]
    )
    assert result.status == "halted"
    assert later == []
