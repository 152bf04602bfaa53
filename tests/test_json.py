"""The JSON codec: conversations and usage as plain data, and back."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, strategies as st

from alloy import (
    ConfigError,
    Image,
    Message,
    RedactedThinking,
    ServerToolCall,
    ServerToolResult,
    Text,
    Thinking,
    ToolCall,
    ToolResult,
    UnknownBlock,
    Usage,
)
from alloy._codec._json import dump_messages, dump_usage, load_messages, load_usage
from alloy._codec._wire import is_object, loads as wire_loads
from strategies import (
    blocks,
    conversations,
    json_values,
    messages,
    usages,
)


def through_json(data: Any) -> Any:
    return json.loads(json.dumps(data))


# -- round trips ---------------------------------------------------------------------------------


@given(conversations())
def test_conversation_round_trips_through_json(conversation: list[Message]) -> None:
    assert load_messages(through_json(dump_messages(conversation))) == tuple(conversation)


@given(st.lists(messages(), max_size=6))
def test_any_messages_round_trip_through_json(items: list[Message]) -> None:
    assert load_messages(through_json(dump_messages(items))) == tuple(items)


@given(st.lists(messages(), max_size=4))
def test_dump_is_already_plain_json_data(items: list[Message]) -> None:
    dumped = dump_messages(items)
    assert through_json(dumped) == dumped  # no tuples, no objects: exactly what json gives back
    assert load_messages(dumped) == tuple(items)  # and loads without going through a string


@given(blocks())
def test_every_block_dumps_with_its_tag_first(block: Any) -> None:
    [dumped] = dump_messages([Message.user([block])])[0]["content"]
    assert next(iter(dumped)) == "type"


@given(usages())
def test_usage_round_trips_through_json(usage: Usage) -> None:
    assert load_usage(through_json(dump_usage(usage))) == usage


@given(conversations())
def test_conversations_answer_every_tool_call_in_the_next_message(
    conversation: list[Message],
) -> None:
    # The strategy's own promise, which other tests rely on.
    assert conversation[0].role == "user"
    for before, after in itertools.pairwise(conversation):
        assert before.role != after.role
        if before.role == "assistant":
            asked = sorted(call.id for call in before.tool_calls)
            assert sorted(result.call_id for result in after.tool_results) == asked
    if conversation[-1].role == "assistant":
        assert not conversation[-1].tool_calls


@given(json_values())
def test_json_values_are_json(value: Any) -> None:
    assert through_json(value) == value


def test_loaded_values_have_the_value_types() -> None:
    [message] = load_messages(
        [
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_call", "id": "c1", "name": "read", "arguments": {"a": [1, 2]}},
                ],
            }
        ]
    )
    assert type(message.content) is tuple
    [call] = message.content
    assert type(call) is ToolCall
    assert type(call.arguments) is dict
    assert call.arguments == {"a": [1, 2]}


def test_load_copies_the_data() -> None:
    data = [{"role": "user", "content": [{"type": "unknown", "data": {"x": [1]}}]}]
    [message] = load_messages(data)
    data[0]["content"][0]["data"]["x"].append(2)  # type: ignore[index]
    assert message.content == (UnknownBlock(data={"x": [1]}),)


def test_load_accepts_any_iterable_of_mappings() -> None:
    dumped = dump_messages([Message.user("a"), Message.assistant("b")])
    assert load_messages(iter(dumped)) == load_messages(tuple(dumped))
    assert load_messages([]) == ()


def test_dump_accepts_any_iterable_and_turns_tuples_into_lists() -> None:
    call = ToolCall("c1", "f", {"point": (1, 2), "nested": {"t": ()}})
    dumped = dump_messages(iter([Message.assistant([call])]))
    assert dumped[0]["content"][0]["arguments"] == {"point": [1, 2], "nested": {"t": []}}


# -- the format, pinned --------------------------------------------------------------------------

SHAPES: list[tuple[Any, dict[str, Any]]] = [
    (Text("hi"), {"type": "text", "text": "hi"}),
    (
        Thinking("hmm"),
        {"type": "thinking", "text": "hmm", "signature": None, "provider": None, "id": None},
    ),
    (
        Thinking("hmm", signature="EqQB"),
        {
            "type": "thinking",
            "text": "hmm",
            "signature": "EqQB",
            "provider": None,
            "id": None,
        },
    ),
    (RedactedThinking("EmwK"), {"type": "redacted_thinking", "data": "EmwK", "provider": None}),
    (
        ToolCall("call_1", "read", {"path": "README.md"}),
        {"type": "tool_call", "id": "call_1", "name": "read", "arguments": {"path": "README.md"}},
    ),
    (
        ToolCall("call_2", "now"),
        {"type": "tool_call", "id": "call_2", "name": "now", "arguments": {}},
    ),
    (
        ToolResult("call_1", "# Alloy"),
        {"type": "tool_result", "call_id": "call_1", "content": "# Alloy", "is_error": False},
    ),
    (
        ToolResult("call_1", "not found", is_error=True),
        {"type": "tool_result", "call_id": "call_1", "content": "not found", "is_error": True},
    ),
    (
        Image("image/png", "iVBORw0KGgo="),
        {"type": "image", "media_type": "image/png", "data": "iVBORw0KGgo="},
    ),
    (
        ServerToolCall("srvtoolu_1", "code_execution", {"code": "1+1"}),
        {
            "type": "server_tool_call",
            "id": "srvtoolu_1",
            "name": "code_execution",
            "arguments": {"code": "1+1"},
        },
    ),
    (
        ServerToolResult("srvtoolu_1", "code_execution_tool_result", {"stdout": "2\n"}),
        {
            "type": "server_tool_result",
            "call_id": "srvtoolu_1",
            "kind": "code_execution_tool_result",
            "content": {"stdout": "2\n"},
        },
    ),
    (
        ServerToolResult("srvtoolu_2", "web_search_tool_result"),
        {
            "type": "server_tool_result",
            "call_id": "srvtoolu_2",
            "kind": "web_search_tool_result",
            "content": None,
        },
    ),
    (
        UnknownBlock({"type": "container_upload", "file_id": "f_1"}, provider="anthropic"),
        {
            "type": "unknown",
            "data": {"type": "container_upload", "file_id": "f_1"},
            "provider": "anthropic",
        },
    ),
    (
        UnknownBlock({"type": "mystery"}),
        {"type": "unknown", "data": {"type": "mystery"}, "provider": None},
    ),
]


@pytest.mark.parametrize(("block", "shape"), SHAPES, ids=lambda v: getattr(v, "__name__", None))
def test_block_json_shape(block: Any, shape: dict[str, Any]) -> None:
    [dumped] = dump_messages([Message.assistant([block])])
    assert dumped == {"role": "assistant", "content": [shape]}
    assert list(dumped["content"][0]) == list(shape)  # key order too: the tag comes first
    assert load_messages([dumped]) == (Message.assistant([block]),)


def test_message_json_shape() -> None:
    conversation = [
        Message.user("What is in README.md?"),
        Message.assistant([Text("Let me look."), ToolCall("c1", "read", {"path": "README.md"})]),
        Message.user([ToolResult("c1", "# Alloy")]),
    ]
    assert dump_messages(conversation) == [
        {"role": "user", "content": [{"type": "text", "text": "What is in README.md?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {
                    "type": "tool_call",
                    "id": "c1",
                    "name": "read",
                    "arguments": {"path": "README.md"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "call_id": "c1", "content": "# Alloy", "is_error": False}
            ],
        },
    ]


def test_usage_json_shape() -> None:
    usage = Usage(input_tokens=10, output_tokens=5, cache_read_tokens=4, reasoning_tokens=2)
    assert dump_usage(usage) == {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_read_tokens": 4,
        "cache_write_tokens": 0,
        "reasoning_tokens": 2,
    }
    assert load_usage({"output_tokens": 7}) == Usage(output_tokens=7)  # missing counters are 0


def test_fields_with_defaults_may_be_left_out() -> None:
    data: list[dict[str, Any]] = [
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "text": "t"},
                {"type": "tool_call", "id": "c1", "name": "f"},
                {"type": "server_tool_result", "call_id": "s1", "kind": "k"},
                {"type": "unknown", "data": {}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "call_id": "c1", "content": "ok"}]},
    ]
    assert load_messages(data) == (
        Message.assistant(
            [Thinking("t"), ToolCall("c1", "f"), ServerToolResult("s1", "k"), UnknownBlock({})]
        ),
        Message.user([ToolResult("c1", "ok")]),
    )


# -- forward compatibility -----------------------------------------------------------------------


def test_unknown_tag_loads_as_unknown_block_with_the_whole_object() -> None:
    stored = {"type": "hologram", "frames": [1, 2, 3], "meta": {"fps": 24.0}}
    [message] = load_messages([{"role": "assistant", "content": [stored]}])
    assert message.content == (UnknownBlock(data=stored),)
    [block] = message.content
    assert isinstance(block, UnknownBlock)
    assert block.type == "hologram"
    # And it is kept from then on: dumping wraps it, loading unwraps it.
    assert load_messages(through_json(dump_messages([message]))) == (message,)


def test_extra_fields_in_known_blocks_and_messages_are_ignored() -> None:
    data = [
        {
            "role": "user",
            "name": "someone",
            "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
        }
    ]
    assert load_messages(data) == (Message.user("hi"),)


# -- bad data ------------------------------------------------------------------------------------


def _user(*blocks: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(blocks)}]


BAD_MESSAGES: list[tuple[Any, str]] = [
    ({"role": "user", "content": []}, "expected a list of messages, got object"),
    ("[]", "expected a list of messages, got string"),
    (None, "expected a list of messages, got null"),
    (42, "expected a list of messages, got number"),
    ([["user", "hi"]], "message 0: expected an object, got array"),
    ([{"content": []}], "message 0: missing field 'role'"),
    (
        [{"role": "system", "content": []}],
        "message 0: field 'role': expected 'user' or 'assistant', got 'system'",
    ),
    (
        [{"role": None, "content": []}],
        "message 0: field 'role': expected 'user' or 'assistant', got None",
    ),
    ([{"role": "user"}], "message 0: missing field 'content'"),
    (
        [{"role": "user", "content": "hi"}],
        "message 0: field 'content': expected an array of blocks, got string",
    ),
    (_user("hi"), "message 0: content[0]: expected an object, got string"),
    (_user({"text": "hi"}), "message 0: content[0]: missing field 'type'"),
    (
        _user({"type": 3, "text": "hi"}),
        "message 0: content[0]: field 'type': expected a string, got number",
    ),
    (_user({"type": "text"}), "message 0: content[0]: missing field 'text'"),
    (
        _user({"type": "text", "text": 5}),
        "message 0: content[0]: field 'text': expected a string, got number",
    ),
    (
        _user({"type": "tool_result", "content": "ok"}),
        "message 0: content[0]: missing field 'call_id'",
    ),
    (
        _user({"type": "tool_result", "call_id": "c1", "content": "ok", "is_error": "no"}),
        "message 0: content[0]: field 'is_error': expected a boolean, got string",
    ),
    (
        _user({"type": "thinking", "text": "t", "signature": 1}),
        "message 0: content[0]: field 'signature': expected a string, got number",
    ),
    (
        _user({"type": "tool_call", "id": "c1", "name": "f", "arguments": "{}"}),
        "message 0: content[0]: field 'arguments': expected an object, got string",
    ),
    (
        _user({"type": "tool_call", "id": "c1", "name": "f", "arguments": {1: "x"}}),
        "message 0: content[0]: field 'arguments': key 1 is not a string",
    ),
    (
        _user({"type": "server_tool_result", "call_id": "s", "kind": "k", "content": {"a": {1}}}),
        "message 0: content[0]: field 'content': at ['a']: set is not a JSON value",
    ),
    (
        _user({"type": "unknown", "data": [1]}),
        "message 0: content[0]: field 'data': expected an object, got array",
    ),
    (
        [{"role": "user", "content": []}, *_user({"type": "text", "text": "a"}, {"type": "image"})],
        "message 1: content[1]: missing field 'media_type'; "
        "message 1: content[1]: missing field 'data'",
    ),
]


@pytest.mark.parametrize(("data", "message"), BAD_MESSAGES)
def test_bad_messages_raise_config_error_naming_the_place(data: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_messages(data)
    assert str(info.value) == message
    assert not isinstance(info.value, BaseExceptionGroup)


def test_bad_data_error_chains_the_original() -> None:
    with pytest.raises(ConfigError) as info:
        load_messages(_user({"type": "tool_result", "content": "ok"}))
    assert info.value.__cause__ is not None  # raised from the cattrs error, for debugging


def test_the_example_from_the_docs() -> None:
    data = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}] * 3
    data.append(
        {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "tool_result"}]}
    )
    with pytest.raises(ConfigError, match=r"^message 3: content\[1\]: missing field 'call_id'"):
        load_messages(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "usage: expected an object, got array"),
        ({"input_tokens": "10"}, "usage: field 'input_tokens': expected an integer, got string"),
        ({"output_tokens": 1.5}, "usage: field 'output_tokens': expected an integer, got number"),
        (
            {"reasoning_tokens": True},
            "usage: field 'reasoning_tokens': expected an integer, got boolean",
        ),
        ({"input_tokens": -1}, "usage: Usage.input_tokens must not be negative, got -1"),
    ],
)
def test_bad_usage_raises_config_error(data: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_usage(data)
    assert str(info.value) == message


def _smuggled(item: object) -> Message:
    """A message holding a non-block, past the constructor's check (as only a bypass can)."""
    message = Message.user("placeholder")
    object.__setattr__(message, "content", (item,))
    return message


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ("hello", "expected an iterable of messages, got string"),
        (Message.user("hi"), "expected an iterable of messages, got Message"),
        (["hello"], "message 0: expected a Message, got string"),
        ([_smuggled("hello")], "message 0: content[0]: expected a content block, got string"),
        (
            [Message.user("a"), Message.assistant([ToolCall("c", "f", {"when": object()})])],
            "message 1: content[0]: at ['when']: object is not a JSON value",
        ),
    ],
)
def test_dumping_what_json_cannot_hold_raises_config_error(items: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        dump_messages(items)
    assert str(info.value) == message


def test_dump_usage_rejects_other_values() -> None:
    with pytest.raises(ConfigError, match="expected a Usage, got object"):
        dump_usage({"input_tokens": 1})  # type: ignore[arg-type]


# -- the wire codecs' JSON parsing (alloy._codec._wire.loads) --------------------------------------


def _outcome(parse: Any, data: Any) -> tuple[str, Any]:
    """What ``parse(data)`` gives: ``("value", v)`` or ``("error", (type, message))``."""
    try:
        return "value", parse(data)
    except Exception as exc:  # the exact exception is what is compared
        return "error", (type(exc), str(exc))


@given(
    value=json_values(),
    indent=st.sampled_from([None, 0, 2]),
    before=st.sampled_from(["", " ", "\n", " \t\r\n"]),
    after=st.sampled_from(["", " ", "\n", " \t\r\n", "x", " 1", "}"]),
    ascii_only=st.booleans(),
)
def test_wire_loads_is_json_loads(
    value: Any, indent: int | None, before: str, after: str, ascii_only: bool
) -> None:
    # The same value or the same error as json.loads, for text and for UTF-8 bytes, whatever
    # whitespace (or extra data) surrounds the value.
    text = before + json.dumps(value, indent=indent, ensure_ascii=ascii_only) + after
    for data in (text, text.encode()):
        assert _outcome(wire_loads, data) == _outcome(json.loads, data)


@pytest.mark.parametrize(
    "data",
    [
        "",
        " ",
        "{",
        '{"a": 1',
        '{"a": 1}}',
        '{"a": 1} {"b": 2}',
        "[1,]",
        '{"a" 1}',
        "NaN",
        '{"a": NaN, "b": -Infinity}',
        "\ufeff{}",
        '"\ud800"',
        "{}\x00",
        b"",
        b"{",
        b'{"a": "caf\xc3\xa9"}',
        b'{"a": "\xff"}',
        b'{"a": "\xed\xa0\x80"}',  # an encoded surrogate: json.loads decodes with surrogatepass
        b'\xef\xbb\xbf{"bom": true}',
        '{"utf": 16}'.encode("utf-16"),
        '{"utf": "16-le"}'.encode("utf-16-le"),
        '{"utf": 32}'.encode("utf-32"),
        b"{\x00}",
        bytearray(b'{"a": 1}'),
        "[" * 100_000 + "]" * 100_000,  # too deep: the same RecursionError
    ],
)
def test_wire_loads_edge_cases_match_json_loads(data: Any) -> None:
    assert _outcome(wire_loads, data) == _outcome(json.loads, data)


def test_wire_is_object_is_isinstance_mapping() -> None:
    from types import MappingProxyType

    for value in ({}, {"a": 1}, MappingProxyType({}), None, [], (), "x", 0, b"{}"):
        assert is_object(value) == isinstance(value, Mapping), value
