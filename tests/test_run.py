"""The loop through alloy.run: turns, statuses, usage, history, stop reasons, options."""

from __future__ import annotations

import pytest
import trio

import alloy
from alloy.testing import (
    ScriptedProvider,
    assert_tool_called,
    call,
    error,
    reply,
    text,
    tool_call,
)


async def test_one_turn_text() -> None:
    provider = ScriptedProvider([text("The answer is 4.")])
    result = await alloy.run("What is 2+2?", provider=provider)
    assert result.text == "The answer is 4."
    assert result.status == "completed"
    assert result.turns == 1
    assert result.stop_reason == "end_turn"
    assert result.reason is None
    assert [m.role for m in result.messages] == ["user", "assistant"]


async def test_tool_loop_reads_a_file(tmp_path: trio.Path) -> None:
    from alloy.tools import Read

    (tmp_path / "pyproject.toml").write_text('[project]\nversion = "0.1.0"\n')
    provider = ScriptedProvider(
        [tool_call("read", {"path": "pyproject.toml"}), text("The version is 0.1.0")]
    )
    result = await alloy.run(
        "Read pyproject.toml and tell me the version",
        provider=provider,
        tools=[Read],
        working_directory=tmp_path,
    )
    assert result.text == "The version is 0.1.0"
    assert result.status == "completed"
    assert result.turns == 2
    assert len(result.messages) == 4
    tool_result = result.messages[2].tool_results[0]
    assert tool_result.call_id == result.messages[1].tool_calls[0].id
    assert 'version = "0.1.0"' in tool_result.content
    assert not tool_result.is_error
    assert_tool_called(result, "read", path="pyproject.toml")
    # The second request carried the tool result to the model.
    assert provider.requests[1].messages[-1].tool_results == (tool_result,)


async def test_usage_accumulates_across_turns(echo: object) -> None:
    provider = ScriptedProvider(
        [
            tool_call("echo", {"text": "a"}, usage=alloy.Usage(input_tokens=10, output_tokens=5)),
            text("done", usage=alloy.Usage(input_tokens=12, output_tokens=3, cache_read_tokens=8)),
        ]
    )
    result = await alloy.run("go", provider=provider, tools=[echo])
    assert result.usage == alloy.Usage(input_tokens=22, output_tokens=8, cache_read_tokens=8)


async def test_continues_from_history() -> None:
    history = (alloy.Message.user("Why?"), alloy.Message.assistant("Because."))
    provider = ScriptedProvider([text("Because math!")])
    result = await alloy.run("And then?", provider=provider, messages=history)
    assert len(result.messages) == 4
    assert result.messages[:2] == history
    assert provider.requests[0].messages[-1] == alloy.Message.user("And then?")
    # The result's messages continue the conversation as they are.
    provider2 = ScriptedProvider([text("ok")])
    again = await alloy.run("more", provider=provider2, messages=result.messages)
    assert again.messages[:4] == result.messages


async def test_no_prompt_with_history() -> None:
    provider = ScriptedProvider([text("Hello!")])
    result = await alloy.run(provider=provider, messages=[alloy.Message.user("Hi")])
    assert len(result.messages) == 2
    assert result.text == "Hello!"


async def test_system_prompt_and_tool_specs_reach_the_provider(echo: object) -> None:
    provider = ScriptedProvider([text("hi")])
    await alloy.run(
        "hello",
        provider=provider,
        system_prompt="Be brief.",
        tools=[echo],
        provider_options={"temperature": 0.1},
    )
    request = provider.requests[0]
    assert request.system_prompt == "Be brief."
    assert [spec.name for spec in request.tools] == ["echo"]
    assert request.tools[0].input_schema["required"] == ["text"]
    assert request.options == {"temperature": 0.1}


async def test_max_turns(echo: object) -> None:
    provider = ScriptedProvider([tool_call("echo", {"text": str(i)}) for i in range(30)])
    result = await alloy.run("loop", provider=provider, tools=[echo], max_turns=5)
    assert result.status == "max_turns"
    assert result.turns == 5
    assert provider.remaining == 25
    # The last allowed turn's tools ran: the transcript ends with their results.
    assert result.messages[-1].tool_results[0].content == "Echo: 4"


async def test_parallel_calls_keep_call_order(echo: object) -> None:
    provider = ScriptedProvider(
        [reply(call("echo", {"text": "one"}), call("echo", {"text": "two"})), text("both")]
    )
    result = await alloy.run("go", provider=provider, tools=[echo])
    results = result.messages[2].tool_results
    assert [r.content for r in results] == ["Echo: one", "Echo: two"]
    assert [r.call_id for r in results] == ["call_1", "call_2"]


async def test_max_tokens_truncation_is_visible() -> None:
    provider = ScriptedProvider([text("It was cut off mid-sen", stop_reason="max_tokens")])
    result = await alloy.run("write", provider=provider)
    assert result.status == "completed"
    assert result.stop_reason == alloy.StopReason.MAX_TOKENS
    assert result.text == "It was cut off mid-sen"


async def test_refusal_is_distinct() -> None:
    provider = ScriptedProvider([text("I can't help with that.", stop_reason="refusal")])
    result = await alloy.run("bad", provider=provider)
    assert result.stop_reason == "refusal"


async def test_pause_turn_sends_the_conversation_back() -> None:
    provider = ScriptedProvider(
        [text("Working on it...", stop_reason="pause_turn"), text("Finished.")]
    )
    result = await alloy.run("long job", provider=provider)
    assert result.turns == 2
    assert result.text == "Finished."
    assert provider.requests[1].messages[-1] == alloy.Message.assistant("Working on it...")


async def test_truncated_tool_call_is_answered_not_run(echo: object) -> None:
    provider = ScriptedProvider(
        [
            reply(call("echo", {"text": "x"}), stop_reason="max_tokens"),
            text("retrying differently"),
        ]
    )
    result = await alloy.run("go", provider=provider, tools=[echo])
    answer = result.messages[2].tool_results[0]
    assert answer.is_error
    assert "cut off" in answer.content
    assert result.tool_calls[0].outcome == "not_run"
    assert result.status == "completed"


async def test_provider_error_raises_one_alloy_error_with_partial_result(echo: object) -> None:
    provider = ScriptedProvider([tool_call("echo", {"text": "a"}), error("Rate limited")])
    with pytest.raises(alloy.ProviderError) as caught:
        await alloy.run("go", provider=provider, tools=[echo])
    failure = caught.value
    assert str(failure) == "Rate limited"
    assert failure.result is not None
    assert failure.result.status == "error"
    assert failure.result.turns == 1
    assert len(failure.result.messages) == 3  # nothing lost
    assert failure.result.reason == "Rate limited"


async def test_a_buggy_provider_becomes_a_provider_error() -> None:
    class Broken:
        async def complete(self, request: alloy.Request) -> alloy.Completion:
            raise KeyError("choices")

    with pytest.raises(alloy.ProviderError, match="Broken raised KeyError"):
        await alloy.run("hi", provider=Broken())


async def test_provider_returning_garbage_is_a_provider_error() -> None:
    class Garbage:
        async def complete(self, request: alloy.Request) -> object:
            return {"text": "hi"}

    with pytest.raises(alloy.ProviderError, match="expected an alloy.Completion"):
        await alloy.run("hi", provider=Garbage())  # type: ignore[arg-type]


async def test_script_exhausted() -> None:
    provider = ScriptedProvider([])
    with pytest.raises(alloy.ScriptExhausted, match="no reply left for request 1"):
        await alloy.run("hi", provider=provider)


async def test_provider_without_stream_works_when_streaming() -> None:
    class Plain:
        async def complete(self, request: alloy.Request) -> alloy.Completion:
            return alloy.Completion(
                message=alloy.Message.assistant("plain"), stop_reason=alloy.StopReason.END_TURN
            )

    events: list[alloy.Event] = []
    result = await alloy.run("hi", provider=Plain(), on_event=events.append)
    assert result.text == "plain"
    assert [type(e).__name__ for e in events] == ["TurnCompleted", "RunCompleted"]


def test_unknown_option_raises_type_error() -> None:
    with pytest.raises(TypeError, match="max_turn"):
        alloy.run_sync("hi", provider=ScriptedProvider([text("x")]), max_turn=3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"provider": None}, "provider must have an async complete"),
        ({"max_turns": 0}, "max_turns must be a positive integer"),
        ({"tool_timeout": -1}, "tool_timeout must be a positive number"),
        ({"working_directory": "/definitely/not/here"}, "not an existing directory"),
        ({"messages": "hello"}, "messages must be a list"),
        ({"messages": ["hello"]}, r"messages\[0\] must be an alloy.Message"),
        ({"tools": [object()]}, r"tools\[0\]: .* is not a tool"),
        ({"system_prompt": 3}, "system_prompt must be a string"),
    ],
)
def test_bad_values_raise_config_error(options: dict[str, object], message: str) -> None:
    options.setdefault("provider", ScriptedProvider([text("x")]))
    with pytest.raises(alloy.ConfigError, match=message):
        alloy.run_sync("hi", **options)


def test_nothing_to_send() -> None:
    with pytest.raises(alloy.ConfigError, match="nothing to send"):
        alloy.run_sync(provider=ScriptedProvider([]))


def test_duplicate_tool_names(echo: object) -> None:
    with pytest.raises(alloy.ConfigError, match="two tools are named 'echo'"):
        alloy.run_sync("hi", provider=ScriptedProvider([]), tools=[echo, echo])


def test_tool_class_instead_of_instance() -> None:
    from alloy.tools import ReadTool

    with pytest.raises(alloy.ConfigError, match="pass an instance"):
        alloy.run_sync("hi", provider=ScriptedProvider([]), tools=[ReadTool])


def test_run_sync() -> None:
    result = alloy.run_sync("hi", provider=ScriptedProvider([text("hello")]))
    assert result.text == "hello"


async def test_plain_functions_become_tools() -> None:
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    provider = ScriptedProvider([tool_call("add", {"a": 2, "b": 3}), text("5")])
    result = await alloy.run("2+3", provider=provider, tools=[add])
    assert result.messages[2].tool_results[0].content == "5"


async def test_result_text_is_last_assistant_text(echo: object) -> None:
    provider = ScriptedProvider(
        [tool_call("echo", {"text": "a"}, text="Let me check."), tool_call("echo", {"text": "b"})]
    )
    result = await alloy.run("go", provider=provider, tools=[echo], max_turns=2)
    assert result.status == "max_turns"
    assert result.text == "Let me check."


async def test_thinking_is_kept_verbatim() -> None:
    provider = ScriptedProvider([text("42", thinking="Let me think.")])
    result = await alloy.run("q", provider=provider)
    assert result.thinking == "Let me think."
    thinking = result.messages[-1].content[0]
    assert thinking == alloy.Thinking("Let me think.", signature="scripted-signature")
