"""alloy.testing: scripted and function providers, reply builders, assertions about runs.

Ports the Elixir test-provider and testing-helper tests, and checks what was broken there: the
helpers must work against real runs (a scripted tool call really runs the tool, successfully),
and a failed assertion says what was expected and what happened.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
import trio

import alloy
from alloy.testing import (
    Fail,
    FunctionProvider,
    Reply,
    ScriptedProvider,
    assert_tool_called,
    call,
    delay,
    error,
    refute_tool_called,
    reply,
    text,
    tool_call,
    tool_calls,
)

REQUEST = alloy.Request(messages=(alloy.Message.user("hi"),))


async def stream_one(
    provider: ScriptedProvider | FunctionProvider, request: alloy.Request = REQUEST
) -> tuple[alloy.Completion, list[alloy.Delta]]:
    """Call ``provider.stream`` and collect the deltas it sent."""
    send, receive = trio.open_memory_channel[alloy.Delta](1000)
    completion = await provider.stream(request, send)
    send.close()
    return completion, [delta async for delta in receive]


# -- reply builders -------------------------------------------------------------------------------


def test_text_builds_an_end_turn_reply() -> None:
    item = text("Hello!")
    assert item.blocks == (alloy.Text("Hello!"),)
    assert item.stop_reason == alloy.StopReason.END_TURN
    assert item.usage == alloy.Usage(input_tokens=10, output_tokens=5)
    assert item.delay == 0


def test_text_with_thinking_and_a_stop_reason() -> None:
    item = text("cut", thinking="hmm", stop_reason="max_tokens")
    assert item.blocks == (alloy.Thinking("hmm", signature="scripted-signature"), alloy.Text("cut"))
    assert item.stop_reason == "max_tokens"


def test_tool_call_builds_a_tool_use_reply() -> None:
    item = tool_call("read", {"path": "a.txt"}, text="Let me look.")
    assert item.blocks == (
        alloy.Text("Let me look."),
        alloy.ToolCall(id="", name="read", arguments={"path": "a.txt"}),
    )
    assert item.stop_reason == alloy.StopReason.TOOL_USE
    assert tool_call("x").blocks == (alloy.ToolCall(id="", name="x", arguments={}),)


def test_reply_infers_the_stop_reason() -> None:
    with_calls = reply("Looking.", call("read", {"path": "a"}), call("bash", id="mine"))
    assert with_calls.stop_reason == "tool_use"
    assert with_calls.blocks == (
        alloy.Text("Looking."),
        alloy.ToolCall(id="", name="read", arguments={"path": "a"}),
        alloy.ToolCall(id="mine", name="bash", arguments={}),
    )
    assert reply("just text").stop_reason == "end_turn"
    assert reply("x", stop_reason="refusal").stop_reason == alloy.StopReason.REFUSAL
    usage = alloy.Usage(input_tokens=1)
    assert reply("x", usage=usage).usage == usage


def test_error_builds_a_failure() -> None:
    item = error("rate limited", retryable=True)
    assert isinstance(item, Fail)
    assert isinstance(item.error, alloy.ProviderError)
    assert str(item.error) == "rate limited"
    assert item.error.retryable is True
    assert item.error.provider == "scripted"
    assert error("x").error.retryable is False
    custom = alloy.ProviderError("quota", provider="acme")
    assert error(custom).error is custom


def test_delay_keeps_the_item() -> None:
    slow = delay(2.0, text("slow"))
    assert isinstance(slow, Reply)
    assert slow.delay == 2.0
    assert slow.blocks == text("slow").blocks
    assert delay(1.0, error("x")).delay == 1.0


def test_script_items_are_checked() -> None:
    with pytest.raises(TypeError, match=r"script\[1\] is 'oops'"):
        ScriptedProvider([text("ok"), "oops"])  # type: ignore[list-item]


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk_size must be at least 1"):
        ScriptedProvider([], chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size must be at least 1"):
        FunctionProvider(lambda request: "x", chunk_size=0)


# -- ScriptedProvider ------------------------------------------------------------------------------


async def test_plays_in_order_and_records_requests() -> None:
    provider = ScriptedProvider([text("First"), text("Second")])
    assert provider.remaining == 2
    first = await provider.complete(REQUEST)
    assert first.message == alloy.Message.assistant("First")
    assert first.stop_reason == "end_turn"
    assert first.usage == alloy.Usage(input_tokens=10, output_tokens=5)
    assert provider.remaining == 1
    other = alloy.Request(messages=(alloy.Message.user("again"),), system_prompt="Be brief.")
    second = await provider.complete(other)
    assert second.message.text == "Second"
    assert provider.remaining == 0
    assert provider.requests == [REQUEST, other]


async def test_scripted_tool_use_reply() -> None:
    provider = ScriptedProvider([tool_call("echo", {"text": "hi"})])
    completion = await provider.complete(REQUEST)
    assert completion.stop_reason == "tool_use"
    assert completion.message.tool_calls == (
        alloy.ToolCall(id="call_1", name="echo", arguments={"text": "hi"}),
    )


async def test_exhausted_script_raises_script_exhausted() -> None:
    provider = ScriptedProvider([text("only one")])
    await provider.complete(REQUEST)
    with pytest.raises(alloy.ScriptExhausted) as caught:
        await provider.complete(REQUEST)
    assert str(caught.value) == (
        "ScriptedProvider has no reply left for request 2 (the script had 1)"
    )
    assert isinstance(caught.value, alloy.ProviderError)
    assert caught.value.provider == "scripted"
    assert len(provider.requests) == 2
    assert provider.remaining == 0


async def test_scripted_error_is_raised_then_the_script_goes_on() -> None:
    provider = ScriptedProvider([error("timeout"), text("recovered")])
    with pytest.raises(alloy.ProviderError, match="^timeout$"):
        await provider.complete(REQUEST)
    assert provider.remaining == 1
    assert (await provider.complete(REQUEST)).message.text == "recovered"


async def test_scripted_error_fails_a_run_with_the_partial_result() -> None:
    provider = ScriptedProvider([error(alloy.ProviderError("overloaded", retryable=True))])
    with pytest.raises(alloy.ProviderError) as caught:
        await alloy.run("hi", provider=provider)
    assert caught.value.retryable
    assert caught.value.result is not None
    assert caught.value.result.messages == (alloy.Message.user("hi"),)


async def test_delay(autojump_clock: trio.testing.MockClock) -> None:
    provider = ScriptedProvider([delay(2.0, text("slow")), delay(3.0, error("late failure"))])
    start = trio.current_time()
    completion = await provider.complete(REQUEST)
    assert completion.message.text == "slow"
    assert trio.current_time() - start == pytest.approx(2.0)
    with pytest.raises(alloy.ProviderError, match="late failure"):
        await provider.complete(REQUEST)
    assert trio.current_time() - start == pytest.approx(5.0)


async def test_delay_can_be_cut_by_a_cancel_scope(autojump_clock: trio.testing.MockClock) -> None:
    provider = ScriptedProvider([delay(100.0, text("too slow"))])
    with trio.move_on_after(1.0) as scope:
        await alloy.run("hi", provider=provider)
    assert scope.cancelled_caught


async def test_delta_delay(autojump_clock: trio.testing.MockClock) -> None:
    provider = ScriptedProvider([text("a b c")], delta_delay=0.5)
    start = trio.current_time()
    completion, deltas = await stream_one(provider)
    assert [d.text for d in deltas if isinstance(d, alloy.TextDelta)] == ["a ", "b ", "c"]
    assert trio.current_time() - start == pytest.approx(1.5)
    assert completion.message.text == "a b c"


# -- streaming -------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [None, 1, 3, 1000])
async def test_streamed_text_pieces_add_up_to_the_text(chunk_size: int | None) -> None:
    content = "Hello there, world!  Two spaces\nand a newline. 日本語 😀"
    provider = ScriptedProvider([text(content, thinking="Let me think.")], chunk_size=chunk_size)
    completion, deltas = await stream_one(provider)
    pieces = [d.text for d in deltas if isinstance(d, alloy.TextDelta)]
    thoughts = [d.text for d in deltas if isinstance(d, alloy.ThinkingDelta)]
    assert "".join(pieces) == content == completion.message.text
    assert "".join(thoughts) == "Let me think."
    assert all(piece for piece in pieces)
    if chunk_size == 1:
        assert len(pieces) == len(content)
    if chunk_size is None:
        assert pieces[:3] == ["Hello ", "there, ", "world!  "]
    # Thinking streams before the text, as in the message.
    first_text = next(i for i, d in enumerate(deltas) if isinstance(d, alloy.TextDelta))
    assert all(isinstance(d, alloy.ThinkingDelta) for d in deltas[:first_text])


async def test_chunk_size_one_streams_each_character() -> None:
    provider = ScriptedProvider([text("Hi!")], chunk_size=1)
    _, deltas = await stream_one(provider)
    assert deltas == [
        alloy.TextDelta(text="H"),
        alloy.TextDelta(text="i"),
        alloy.TextDelta(text="!"),
    ]


async def test_stream_returns_the_same_completion_as_complete() -> None:
    script = [
        text("Same answer", thinking="hmm"),
        reply("Calling.", call("read", {"path": "a"}), call("bash", {"command": "ls"})),
    ]
    plain = ScriptedProvider(script)
    streaming = ScriptedProvider(script)
    for _ in script:
        expected = await plain.complete(REQUEST)
        got, _ = await stream_one(streaming)
        assert got == expected


async def test_tool_calls_stream_as_a_start_and_argument_fragments() -> None:
    arguments = {
        "path": "src/alloy/_loop.py",
        "content": "a long value " * 5 + '日本語 "quoted" \\ 😀',
        "n": 3,
        "nested": {"list": [1, 2.5, None, True]},
    }
    provider = ScriptedProvider(
        [reply("Let me write.", call("write", arguments), call("ls", {}, id="mine"))]
    )
    completion, deltas = await stream_one(provider)
    tool_deltas = [d for d in deltas if not isinstance(d, alloy.TextDelta)]
    assert tool_deltas[0] == alloy.ToolCallStarted(index=0, id="call_1", name="write")
    fragments: dict[int, list[str]] = {}
    starts: list[alloy.ToolCallStarted] = []
    for delta in tool_deltas:
        if isinstance(delta, alloy.ToolCallStarted):
            starts.append(delta)
            fragments[delta.index] = []
        else:
            assert isinstance(delta, alloy.ToolCallDelta)
            # Fragments belong to the call started last.
            assert delta.index == starts[-1].index
            fragments[delta.index].append(delta.arguments)
    assert starts == [
        alloy.ToolCallStarted(index=0, id="call_1", name="write"),
        alloy.ToolCallStarted(index=1, id="mine", name="ls"),
    ]
    assert len(fragments[0]) > 1  # really streamed in pieces
    assert json.loads("".join(fragments[0])) == arguments
    assert json.loads("".join(fragments[1])) == {}
    assert completion.message.tool_calls[0].arguments == arguments


async def test_complete_and_stream_share_one_script() -> None:
    provider = ScriptedProvider([text("First"), text("Second"), text("Third")])
    first = await provider.complete(REQUEST)
    second, _ = await stream_one(provider)
    third = await provider.complete(REQUEST)
    assert [c.message.text for c in (first, second, third)] == ["First", "Second", "Third"]
    assert len(provider.requests) == 3


async def test_call_ids_are_numbered_across_turns_and_explicit_ids_kept() -> None:
    provider = ScriptedProvider(
        [
            reply(call("a"), call("b", id="mine"), call("c")),
            tool_call("d"),
            tool_call("e", id="toolu_01"),
            tool_call("f"),
        ]
    )
    ids = [[c.id for c in (await provider.complete(REQUEST)).message.tool_calls] for _ in range(4)]
    assert ids == [["call_1", "mine", "call_2"], ["call_3"], ["toolu_01"], ["call_4"]]


async def test_streamed_run_equals_a_plain_run(echo: alloy.Tool) -> None:
    def script() -> list[Reply]:
        return [
            tool_call("echo", {"text": "world"}, text="Checking."),
            text("Done!", thinking="The tool answered."),
        ]

    plain = await alloy.run("go", provider=ScriptedProvider(script()), tools=[echo])
    events: list[alloy.Event] = []
    streamed = await alloy.run(
        "go", provider=ScriptedProvider(script()), tools=[echo], on_event=events.append
    )
    assert streamed.status == plain.status == "completed"
    assert streamed.turns == plain.turns == 2
    assert streamed.messages == plain.messages
    assert streamed.usage == plain.usage
    assert streamed.tool_calls[0].outcome == plain.tool_calls[0].outcome == "ok"
    by_turn: dict[int, str] = {}
    for event in events:
        if isinstance(event, alloy.TextDelta):
            by_turn[event.turn] = by_turn.get(event.turn, "") + event.text
    assert by_turn == {1: "Checking.", 2: "Done!"}


async def test_streamed_tool_call_through_a_run(echo: alloy.Tool) -> None:
    provider = ScriptedProvider([tool_call("echo", {"text": "x" * 50}), text("ok")])
    async with alloy.stream("go", provider=provider, tools=[echo]) as run:
        events = [event async for event in run]
    started = [e for e in events if isinstance(e, alloy.ToolCallStarted)]
    fragments = [e.arguments for e in events if isinstance(e, alloy.ToolCallDelta)]
    assert started == [alloy.ToolCallStarted(index=0, id="call_1", name="echo", seq=1, turn=1)]
    assert json.loads("".join(fragments)) == {"text": "x" * 50}
    assert run.result is not None
    assert run.result.messages[2].tool_results[0].content == "Echo: " + "x" * 50


# -- FunctionProvider -------------------------------------------------------------------------------


async def test_function_provider_with_a_sync_function(echo: alloy.Tool) -> None:
    def model(request: alloy.Request) -> Reply | str:
        last = request.messages[-1]
        if not last.tool_results:
            return tool_call("echo", {"text": last.text})
        return f"The tool said: {last.tool_results[0].content}"

    provider = FunctionProvider(model)
    result = await alloy.run("ping", provider=provider, tools=[echo])
    assert result.text == "The tool said: Echo: ping"
    assert result.turns == 2
    assert len(provider.requests) == 2
    assert provider.requests[0].messages == (alloy.Message.user("ping"),)
    assert result.messages[1].tool_calls[0].id == "call_1"


async def test_function_provider_with_an_async_function(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def model(request: alloy.Request) -> str:
        await trio.sleep(1)
        return f"echo: {request.messages[-1].text}"

    result = await alloy.run("hello", provider=FunctionProvider(model))
    assert result.text == "echo: hello"


async def test_function_provider_accepts_a_completion() -> None:
    def model(request: alloy.Request) -> alloy.Completion:
        return alloy.Completion(
            message=alloy.Message.assistant("cut off"),
            stop_reason=alloy.StopReason.MAX_TOKENS,
            usage=alloy.Usage(input_tokens=7, output_tokens=2),
        )

    result = await alloy.run("write", provider=FunctionProvider(model))
    assert result.text == "cut off"
    assert result.stop_reason == "max_tokens"
    assert result.usage == alloy.Usage(input_tokens=7, output_tokens=2)


async def test_function_provider_streams_like_the_scripted_one() -> None:
    provider = FunctionProvider(lambda request: "Hi there!", chunk_size=2)
    completion, deltas = await stream_one(provider)
    assert [d.text for d in deltas if isinstance(d, alloy.TextDelta)] == [
        "Hi",
        " t",
        "he",
        "re",
        "!",
    ]
    assert completion.message.text == "Hi there!"


@pytest.mark.parametrize("bad", [None, 42, {"text": "hi"}, alloy.Message.assistant("hi")])
async def test_function_provider_bad_return_is_a_provider_error(bad: object) -> None:
    provider = FunctionProvider(lambda request: bad)  # type: ignore[arg-type,return-value]
    with pytest.raises(alloy.ProviderError) as caught:
        await alloy.run("hi", provider=provider)
    failure = caught.value
    assert isinstance(failure.__cause__, TypeError)
    assert "TypeError" in str(failure)
    assert repr(bad) in str(failure)
    assert "return text(...)" in str(failure)
    assert failure.result is not None
    assert failure.result.status == "error"


async def test_function_provider_exception_is_a_provider_error() -> None:
    def model(request: alloy.Request) -> str:
        raise KeyError("choices")

    with pytest.raises(alloy.ProviderError, match="KeyError") as caught:
        await alloy.run("hi", provider=FunctionProvider(model))
    assert isinstance(caught.value.__cause__, KeyError)


async def test_function_provider_can_raise_a_provider_error() -> None:
    def model(request: alloy.Request) -> str:
        raise alloy.ProviderError("rate limited", retryable=True)

    with pytest.raises(alloy.ProviderError, match="^rate limited$") as caught:
        await alloy.run("hi", provider=FunctionProvider(model))
    assert caught.value.retryable


# -- assertions ----------------------------------------------------------------------------------


async def _run_with_calls(echo: alloy.Tool, *calls: alloy.ToolCall) -> alloy.Result:
    provider = ScriptedProvider([reply(*calls), text("Final answer")])
    return await alloy.run("go", provider=provider, tools=[echo])


async def test_scripted_tool_call_really_runs_the_tool(echo: alloy.Tool) -> None:
    # The reference's helpers passed while the echo tool crashed; here the call succeeds.
    provider = ScriptedProvider([tool_call("echo", {"text": "hello"}), text("Done!")])
    result = await alloy.run("go", provider=provider, tools=[echo])
    assert result.status == "completed"
    assert result.text == "Done!"
    answer = result.messages[2].tool_results[0]
    assert (answer.content, answer.is_error) == ("Echo: hello", False)
    assert [r.outcome for r in result.tool_calls] == ["ok"]


async def test_assert_tool_called_passes_and_returns_the_call(echo: alloy.Tool) -> None:
    result = await _run_with_calls(
        echo, call("echo", {"text": "hello"}), call("echo", {"text": "bye"})
    )
    found = assert_tool_called(result, "echo")
    assert found.id == "call_1"
    assert assert_tool_called(result, "echo", text="bye").id == "call_2"


async def test_assert_tool_called_matches_arguments_partially(echo: alloy.Tool) -> None:
    provider = ScriptedProvider(
        [tool_call("multi", {"path": "a.txt", "limit": 10, "nested": {"x": [1]}}), text("ok")]
    )
    result = await alloy.run("go", provider=provider, tools=[echo])
    assert_tool_called(result, "multi", path="a.txt")
    assert_tool_called(result, "multi", limit=10, nested={"x": [1]})
    with pytest.raises(AssertionError):
        assert_tool_called(result, "multi", limit=11)


async def test_assert_tool_called_fails_when_not_called(echo: alloy.Tool) -> None:
    result = await _run_with_calls(echo, call("echo", {"text": "hello"}))
    with pytest.raises(AssertionError) as caught:
        assert_tool_called(result, "bash")
    assert str(caught.value) == "expected a call to tool 'bash', but the run called echo"


async def test_assert_tool_called_fails_when_no_tool_was_called() -> None:
    result = await alloy.run("go", provider=ScriptedProvider([text("hi")]))
    with pytest.raises(AssertionError, match="but the run called no tools"):
        assert_tool_called(result, "bash")


async def test_assert_tool_called_fails_on_other_arguments(echo: alloy.Tool) -> None:
    result = await _run_with_calls(
        echo, call("echo", {"text": "hello"}), call("echo", {"text": "bye"})
    )
    with pytest.raises(AssertionError) as caught:
        assert_tool_called(result, "echo", text="nope")
    message = str(caught.value)
    assert "tool 'echo' was called, but never with {'text': 'nope'}" in message
    assert "{'text': 'hello'}" in message
    assert "{'text': 'bye'}" in message


async def test_assert_tool_called_with_an_unknown_argument_name(echo: alloy.Tool) -> None:
    # The reference raised ArgumentError converting the key; here it is a plain failed assertion.
    result = await _run_with_calls(echo, call("echo", {"text": "hello"}))
    with pytest.raises(AssertionError, match="never with"):
        assert_tool_called(result, "echo", never_seen_key_xyz=1)


async def test_refute_tool_called(echo: alloy.Tool) -> None:
    result = await _run_with_calls(
        echo, call("echo", {"text": "hello"}), call("echo", {"text": "bye"})
    )
    refute_tool_called(result, "bash")
    with pytest.raises(AssertionError) as caught:
        refute_tool_called(result, "echo")
    message = str(caught.value)
    assert "expected no call to tool 'echo', but it was called 2 time(s)" in message
    assert "{'text': 'hello'}" in message


async def test_tool_calls_lists_calls_in_order(echo: alloy.Tool) -> None:
    provider = ScriptedProvider(
        [
            reply(call("echo", {"text": "1"}), call("other", {})),
            tool_call("echo", {"text": "2"}),
            text("done"),
        ]
    )
    result = await alloy.run("go", provider=provider, tools=[echo])
    everything = tool_calls(result)
    assert [(c.id, c.name) for c in everything] == [
        ("call_1", "echo"),
        ("call_2", "other"),
        ("call_3", "echo"),
    ]
    echoes: Sequence[alloy.ToolCall] = tool_calls(result, "echo")
    assert [c.arguments["text"] for c in echoes] == ["1", "2"]
    assert tool_calls(result, "missing") == []


async def test_tool_calls_empty_and_server_calls_excluded() -> None:
    result = await alloy.run("go", provider=ScriptedProvider([text("hi")]))
    assert tool_calls(result) == []
    server: Any = alloy.ServerToolCall(id="srv_1", name="web_search", arguments={"q": "x"})
    provider = ScriptedProvider([reply(server, "found it", stop_reason="end_turn")])
    result = await alloy.run("go", provider=provider)
    assert tool_calls(result) == []
    refute_tool_called(result, "web_search")
