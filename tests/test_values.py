"""Values: messages and their blocks, usage, results, statuses and tool-call records."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given

import alloy
from strategies import messages, usages

# -- messages ------------------------------------------------------------------------------------


def test_user_and_assistant_constructors() -> None:
    user = alloy.Message.user("hello")
    assert user.role == "user"
    assert user.content == (alloy.Text("hello"),)
    assert user.text == "hello"
    assistant = alloy.Message.assistant("hi there")
    assert assistant == alloy.Message("assistant", [alloy.Text("hi there")])
    assert assistant.role == "assistant"


def test_content_becomes_a_tuple() -> None:
    blocks = [alloy.Text("describe this"), alloy.Image(media_type="image/jpeg", data="base64data")]
    message = alloy.Message.user(blocks)
    assert isinstance(message.content, tuple)
    assert message.content == tuple(blocks)
    blocks.append(alloy.Text("later"))  # the message does not share the caller's list
    assert len(message.content) == 2


def test_mixed_text_and_image_blocks() -> None:
    image = alloy.Image(media_type="image/jpeg", data="base64data")
    message = alloy.Message.user([alloy.Text("describe this"), image])
    assert message.content[1] == image
    assert message.text == "describe this"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("plain", "plain"),
        ([alloy.Text("a"), alloy.Text("b"), alloy.Text("c")], "abc"),
        ([alloy.Thinking("hidden"), alloy.Text("shown")], "shown"),
        ([alloy.Image(media_type="image/png", data="x")], ""),
        ([], ""),
        (
            [
                alloy.Text("Let me look."),
                alloy.ToolCall(id="c1", name="read", arguments={"text": "not me"}),
                alloy.Text(" Done."),
            ],
            "Let me look. Done.",
        ),
    ],
)
def test_text_joins_text_blocks_only(
    content: str | list[alloy.ContentBlock], expected: str
) -> None:
    assert alloy.Message.assistant(content).text == expected


def test_tool_calls_exclude_server_tool_calls() -> None:
    call = alloy.ToolCall(id="toolu_1", name="read", arguments={"path": "a"})
    server = alloy.ServerToolCall(id="srvtoolu_1", name="code_execution", arguments={"code": "1"})
    message = alloy.Message.assistant(
        [
            alloy.Text("Working."),
            server,
            alloy.ServerToolResult(call_id="srvtoolu_1", kind="code_execution_tool_result"),
            call,
        ]
    )
    assert message.tool_calls == (call,)
    only_server = alloy.Message.assistant([server])
    assert only_server.tool_calls == ()
    assert alloy.Message.assistant("text").tool_calls == ()


def test_tool_results() -> None:
    first = alloy.ToolResult(call_id="c1", content="it worked")
    second = alloy.ToolResult(call_id="c2", content="boom", is_error=True)
    message = alloy.Message.user(
        [
            first,
            alloy.ServerToolResult(call_id="s1", kind="web_search_tool_result", content=[]),
            alloy.Text("note"),
            second,
        ]
    )
    assert message.tool_results == (first, second)
    assert first.is_error is False
    assert alloy.Message.user("hi").tool_results == ()


@pytest.mark.parametrize("role", ["system", "tool", "User", ""])
def test_role_is_validated(role: str) -> None:
    with pytest.raises(ValueError, match="role"):
        alloy.Message(role, "hi")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        alloy.Message.user("hi"),
        alloy.Text("x"),
        alloy.ToolCall(id="c", name="n"),
        alloy.ToolResult(call_id="c", content="x"),
        alloy.Usage(),
        alloy.Result(status=alloy.Status.COMPLETED),
        alloy.ToolCallRecord(id="c", name="n", arguments={}, turn=1, duration=0.0),
    ],
    ids=lambda v: type(v).__name__,
)
def test_values_are_frozen(value: object) -> None:
    field = attrs.fields(type(value))[0].name
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(value, field, None)


def test_values_are_hashable_and_compare_by_value() -> None:
    a = alloy.Message.user([alloy.Text("x"), alloy.Image(media_type="image/png", data="d")])
    b = alloy.Message.user([alloy.Text("x"), alloy.Image(media_type="image/png", data="d")])
    assert a == b
    assert hash(a) == hash(b)
    assert a != alloy.Message.assistant(
        [alloy.Text("x"), alloy.Image(media_type="image/png", data="d")]
    )


def test_tool_call_arguments_default_to_empty() -> None:
    assert alloy.ToolCall(id="c", name="n").arguments == {}
    assert (
        alloy.ToolCall(id="c", name="n").arguments is not alloy.ToolCall(id="d", name="n").arguments
    )


@given(messages())
def test_text_and_calls_are_views_of_the_content(message: alloy.Message) -> None:
    assert message.text == "".join(b.text for b in message.content if type(b) is alloy.Text)
    assert message.tool_calls == tuple(b for b in message.content if type(b) is alloy.ToolCall)
    assert message.tool_results == tuple(b for b in message.content if type(b) is alloy.ToolResult)


# -- usage ---------------------------------------------------------------------------------------


def test_usage_defaults_to_zero() -> None:
    usage = alloy.Usage()
    assert usage.total_tokens == 0
    assert (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
    ) == (0, 0, 0, 0, 0)


def test_usage_adds_every_field() -> None:
    a = alloy.Usage(
        input_tokens=10,
        output_tokens=5,
        cache_read_tokens=1,
        cache_write_tokens=2,
        reasoning_tokens=3,
    )
    b = alloy.Usage(
        input_tokens=3,
        output_tokens=7,
        cache_read_tokens=4,
        cache_write_tokens=5,
        reasoning_tokens=6,
    )
    assert a + b == alloy.Usage(
        input_tokens=13,
        output_tokens=12,
        cache_read_tokens=5,
        cache_write_tokens=7,
        reasoning_tokens=9,
    )
    assert (a + b).total_tokens == 25
    assert sum([a, b], alloy.Usage()) == a + b


def test_usage_total_is_input_plus_output() -> None:
    usage = alloy.Usage(
        input_tokens=100, output_tokens=50, cache_read_tokens=80, reasoning_tokens=20
    )
    assert usage.total_tokens == 150


def test_usage_added_to_something_else_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        alloy.Usage() + 1  # type: ignore[operator]


@pytest.mark.parametrize(
    "field",
    [
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
    ],
)
def test_negative_usage_raises(field: str) -> None:
    with pytest.raises(ValueError, match=f"Usage.{field} must not be negative, got -1"):
        alloy.Usage(**{field: -1})


@given(usages(), usages(), usages())
def test_usage_addition_is_associative_and_commutative(
    a: alloy.Usage, b: alloy.Usage, c: alloy.Usage
) -> None:
    assert (a + b) + c == a + (b + c)
    assert a + b == b + a
    assert a + alloy.Usage() == a
    assert (a + b).total_tokens == a.total_tokens + b.total_tokens


# -- results -------------------------------------------------------------------------------------


def test_result_defaults() -> None:
    result = alloy.Result(status=alloy.Status.COMPLETED)
    assert result.messages == ()
    assert result.usage == alloy.Usage()
    assert result.turns == 0
    assert result.tool_calls == ()
    assert result.stop_reason is None
    assert result.reason is None
    assert result.text == ""
    assert result.thinking == ""


def test_result_text_is_the_last_assistant_text() -> None:
    call = alloy.ToolCall(id="c1", name="read", arguments={})
    result = alloy.Result(
        status=alloy.Status.MAX_TURNS,
        messages=(
            alloy.Message.user("question"),
            alloy.Message.assistant("first reply"),
            alloy.Message.user("more"),
            alloy.Message.assistant([alloy.Text("last "), alloy.Text("reply"), call]),
            alloy.Message.user([alloy.ToolResult(call_id="c1", content="tool text")]),
        ),
    )
    assert result.text == "last reply"


def test_result_text_skips_assistant_messages_without_text() -> None:
    result = alloy.Result(
        status=alloy.Status.MAX_TURNS,
        messages=(
            alloy.Message.user("q"),
            alloy.Message.assistant("Let me check."),
            alloy.Message.user([alloy.ToolResult(call_id="c1", content="x")]),
            alloy.Message.assistant([alloy.ToolCall(id="c2", name="read")]),
        ),
    )
    assert result.text == "Let me check."


def test_result_text_is_empty_without_assistant_messages() -> None:
    result = alloy.Result(status=alloy.Status.HALTED, messages=(alloy.Message.user("user text"),))
    assert result.text == ""


def test_result_thinking_is_the_last_assistant_reasoning() -> None:
    result = alloy.Result(
        status=alloy.Status.COMPLETED,
        messages=(
            alloy.Message.user("q"),
            alloy.Message.assistant([alloy.Thinking("old thought"), alloy.Text("a")]),
            alloy.Message.user("q2"),
            alloy.Message.assistant(
                [
                    alloy.Thinking("Let me ", signature="s1"),
                    alloy.RedactedThinking(data="opaque"),
                    alloy.Thinking("think.", signature="s2"),
                    alloy.Text("42"),
                ]
            ),
        ),
    )
    assert result.thinking == "Let me think."
    assert result.text == "42"


def test_result_thinking_is_empty_when_the_last_reply_did_not_think() -> None:
    result = alloy.Result(
        status=alloy.Status.COMPLETED,
        messages=(
            alloy.Message.assistant([alloy.Thinking("old"), alloy.Text("a")]),
            alloy.Message.assistant("b"),
        ),
    )
    assert result.thinking == ""


# -- statuses, stop reasons, records --------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "value"),
    [
        (alloy.Status.COMPLETED, "completed"),
        (alloy.Status.MAX_TURNS, "max_turns"),
        (alloy.Status.HALTED, "halted"),
        (alloy.Status.CANCELLED, "cancelled"),
        (alloy.Status.ERROR, "error"),
    ],
)
def test_status_compares_with_strings(status: alloy.Status, value: str) -> None:
    assert status == value
    assert alloy.Status(value) is status
    assert str(status) == value
    assert f"{status}" == value


def test_halted_is_distinct_from_error() -> None:
    assert alloy.Status.HALTED != alloy.Status.ERROR
    assert alloy.Status.HALTED != "error"


@pytest.mark.parametrize(
    "value", ["end_turn", "tool_use", "max_tokens", "stop_sequence", "refusal", "pause_turn"]
)
def test_stop_reason_compares_with_strings(value: str) -> None:
    reason = alloy.StopReason(value)
    assert reason == value
    assert str(reason) == value


def test_unknown_status_or_stop_reason_raises() -> None:
    with pytest.raises(ValueError):
        alloy.Status("done")
    with pytest.raises(ValueError):
        alloy.StopReason("length")


@pytest.mark.parametrize(
    ("outcome", "is_error"),
    [
        ("ok", False),
        ("error", True),
        ("invalid_arguments", True),
        ("unknown_tool", True),
        ("blocked", True),
        ("timeout", True),
        ("cancelled", True),
        ("not_run", True),
    ],
)
def test_tool_call_record_is_error(outcome: str, is_error: bool) -> None:
    record = alloy.ToolCallRecord(
        id="c1",
        name="read",
        arguments={"path": "a"},
        turn=1,
        duration=0.5,
        outcome=outcome,  # type: ignore[arg-type]
        error=None if outcome == "ok" else "why",
    )
    assert record.is_error is is_error


def test_tool_call_record_defaults_to_ok() -> None:
    record = alloy.ToolCallRecord(id="c1", name="read", arguments={}, turn=1, duration=0.0)
    assert (record.outcome, record.error, record.is_error) == ("ok", None, False)


@pytest.mark.parametrize(
    "content", [b"bytes", ["a plain string in a list"], [{"type": "text"}], [3]]
)
def test_message_content_must_be_a_string_or_blocks(content: object) -> None:
    with pytest.raises(TypeError, match="message content must be a string or blocks"):
        alloy.Message.user(content)  # type: ignore[arg-type]
