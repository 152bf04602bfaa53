"""Hypothesis strategies for Alloy's values, shared by the test modules.

Import them as ``from strategies import conversations, messages`` (pytest puts ``tests/`` on
``sys.path``). Every strategy builds only values that survive a JSON round trip unchanged: text
without lone surrogates, finite floats, lists (not tuples) inside JSON values.
"""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import strategies as st

from alloy import (
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
from alloy._messages import Block  # the content-block union (``alloy.Block`` is middleware's)

__all__ = [
    "assistant_messages",
    "blocks",
    "conversations",
    "images",
    "json_objects",
    "json_values",
    "messages",
    "redacted_thinking_blocks",
    "roles",
    "server_tool_calls",
    "server_tool_results",
    "text_blocks",
    "texts",
    "thinking_blocks",
    "tool_call_ids",
    "tool_calls",
    "tool_results",
    "unknown_blocks",
    "usages",
    "user_messages",
]

# Strings a random alphabet rarely hits but real conversations do: several scripts, emoji
# (including joined and flagged sequences), combining marks, right-to-left text, control chars.
_SAMPLES = (
    "",
    "hello",
    "Привет, мир",
    "日本語のテキスト",
    "مرحبا بالعالم",
    "שלום",
    "नमस्ते",
    "😀🎉👩‍💻🇫🇷",
    "e\u0301",
    "tab\tnew\nline\r\n",
    '{"not": "json"}',
    "\x00\x1f\x7f",
    "\\u0000 and \\n",
)


def texts(*, max_size: int = 40) -> st.SearchStrategy[str]:
    """Unicode text: any script, emoji, control characters; never a lone surrogate.

    (``codec="utf-8"`` is what excludes surrogates: they cannot be encoded.)
    """
    return st.one_of(
        st.sampled_from(_SAMPLES),
        st.text(st.characters(codec="utf-8"), max_size=max_size),
    )


def _scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        texts(max_size=20),
    )


def json_values(*, max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value as ``json.loads`` returns it: None, bool, int, float, str, list, dict."""
    return st.recursive(
        _scalars(),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(texts(max_size=10), children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def json_objects(*, max_size: int = 4) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object (a dict with string keys), as tool arguments are."""
    return st.dictionaries(texts(max_size=10), json_values(max_leaves=6), max_size=max_size)


def roles() -> st.SearchStrategy[str]:
    """``"user"`` or ``"assistant"``."""
    return st.sampled_from(("user", "assistant"))


def tool_call_ids() -> st.SearchStrategy[str]:
    """Ids in the shapes providers use (``toolu_...``, ``call_...``), or any text."""
    return st.one_of(
        st.builds(
            lambda prefix, suffix: prefix + suffix,
            st.sampled_from(("toolu_", "call_", "fc_", "srvtoolu_")),
            st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", max_size=24),
        ),
        texts(max_size=12),
    )


def _tool_names() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(("read", "write", "bash", "web_search", "code_execution")),
        texts(max_size=12),
    )


# -- one strategy per block kind -----------------------------------------------------------------


def text_blocks() -> st.SearchStrategy[Text]:
    return st.builds(Text, texts())


def thinking_blocks() -> st.SearchStrategy[Thinking]:
    return st.builds(
        Thinking,
        texts(),
        signature=st.none() | texts(max_size=20),
        provider=st.none() | st.sampled_from(["anthropic", "openai", "chat"]),
        id=st.none() | texts(max_size=10),
    )


def redacted_thinking_blocks() -> st.SearchStrategy[RedactedThinking]:
    return st.builds(
        RedactedThinking, texts(max_size=30), provider=st.none() | st.just("anthropic")
    )


def tool_calls(*, ids: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[ToolCall]:
    return st.builds(
        ToolCall, tool_call_ids() if ids is None else ids, _tool_names(), json_objects()
    )


def tool_results(
    *, call_ids: st.SearchStrategy[str] | None = None
) -> st.SearchStrategy[ToolResult]:
    return st.builds(
        ToolResult, tool_call_ids() if call_ids is None else call_ids, texts(), st.booleans()
    )


def images() -> st.SearchStrategy[Image]:
    return st.builds(
        Image,
        st.sampled_from(("image/png", "image/jpeg", "image/gif", "image/webp")),
        st.binary(max_size=48).map(lambda raw: base64.b64encode(raw).decode("ascii")),
    )


def server_tool_calls() -> st.SearchStrategy[ServerToolCall]:
    return st.builds(ServerToolCall, tool_call_ids(), _tool_names(), json_objects())


def server_tool_results() -> st.SearchStrategy[ServerToolResult]:
    return st.builds(
        ServerToolResult,
        tool_call_ids(),
        st.sampled_from(("code_execution_tool_result", "web_search_tool_result")) | texts(),
        json_values(),
    )


def unknown_blocks() -> st.SearchStrategy[UnknownBlock]:
    """Provider blocks Alloy does not know: a JSON object, usually with its own ``"type"``."""
    kinds = st.sampled_from(("container_upload", "mcp_tool_use", "web_fetch_result")) | texts()
    data = st.one_of(
        st.builds(lambda kind, rest: {**rest, "type": kind}, kinds, json_objects()),
        json_objects(),
    )
    return st.builds(UnknownBlock, data, provider=st.sampled_from((None, "anthropic", "openai")))


def blocks() -> st.SearchStrategy[Block]:
    """Any content block, of any kind."""
    return st.one_of(
        text_blocks(),
        thinking_blocks(),
        redacted_thinking_blocks(),
        tool_calls(),
        tool_results(),
        images(),
        server_tool_calls(),
        server_tool_results(),
        unknown_blocks(),
    )


# -- messages ------------------------------------------------------------------------------------


def user_messages() -> st.SearchStrategy[Message]:
    """A user message with the blocks a user turn holds: text, images, tool results."""
    content = st.one_of(text_blocks(), images(), tool_results(), unknown_blocks())
    return st.builds(Message.user, st.lists(content, min_size=1, max_size=4))


def assistant_messages() -> st.SearchStrategy[Message]:
    """An assistant message: text, reasoning, client and server tool calls."""
    content = st.one_of(
        text_blocks(),
        thinking_blocks(),
        redacted_thinking_blocks(),
        tool_calls(),
        server_tool_calls(),
        server_tool_results(),
        unknown_blocks(),
    )
    return st.builds(Message.assistant, st.lists(content, min_size=1, max_size=4))


def messages() -> st.SearchStrategy[Message]:
    """Any message: either role, any blocks in any order, possibly none."""
    return st.builds(Message, roles(), st.lists(blocks(), max_size=5))


# Built once, not per draw: building (recursive) strategies inside a composite is slow.
_IDS = tool_call_ids()
_NAMES = _tool_names()
_ARGUMENTS = json_objects()
_TEXTS = texts()
_TEXT_BLOCKS = text_blocks()
_REASONING = thinking_blocks() | redacted_thinking_blocks()
_SERVER_CALLS = server_tool_calls()
_SERVER_CONTENT = server_tool_results()
_OPENINGS = st.lists(text_blocks() | images(), min_size=1, max_size=2)


def _assistant_turn(draw: st.DrawFn, call_ids: list[str]) -> Message:
    """An assistant turn; the ids of the tool calls it makes are appended to ``call_ids``."""
    content: list[Block] = []
    if draw(st.booleans()):
        content.append(draw(_REASONING))
    if draw(st.booleans()):
        content.append(draw(_TEXT_BLOCKS))
    if draw(st.integers(0, 4)) == 0:  # now and then the provider ran a tool of its own
        call = draw(_SERVER_CALLS)
        result = draw(_SERVER_CONTENT)
        content += [call, ServerToolResult(call.id, result.kind, result.content)]
    for _ in range(draw(st.integers(0, 3))):
        call_id = draw(_IDS.filter(lambda i: i not in call_ids))
        call_ids.append(call_id)
        content.append(ToolCall(call_id, draw(_NAMES), draw(_ARGUMENTS)))
    return Message.assistant(content or [draw(_TEXT_BLOCKS)])


@st.composite
def conversations(draw: st.DrawFn, *, max_turns: int = 5) -> list[Message]:
    """A realistic transcript.

    It opens with a user message and alternates roles; every ``ToolCall`` in an assistant message
    is answered, in any order, by a ``ToolResult`` with the same ``call_id`` in the next user
    message, and call ids are unique across the conversation. It ends with either role.
    """
    conversation = [Message.user(draw(_OPENINGS))]
    call_ids: list[str] = []
    turns = draw(st.integers(0, max_turns))
    for turn in range(turns):
        reply = _assistant_turn(draw, call_ids)
        conversation.append(reply)
        if reply.tool_calls:
            answers: list[Block] = [
                ToolResult(call.id, draw(_TEXTS), draw(st.booleans())) for call in reply.tool_calls
            ]
            answers = list(draw(st.permutations(answers)))
            if draw(st.booleans()):
                answers.append(draw(_TEXT_BLOCKS))
            conversation.append(Message.user(answers))
        elif turn < turns - 1:
            conversation.append(Message.user(draw(_OPENINGS)))
    return conversation


def usages() -> st.SearchStrategy[Usage]:
    """Token usage with any non-negative counters."""
    counts = st.integers(min_value=0, max_value=2**40)
    return st.builds(
        Usage,
        input_tokens=counts,
        output_tokens=counts,
        cache_read_tokens=counts,
        cache_write_tokens=counts,
        reasoning_tokens=counts,
    )
