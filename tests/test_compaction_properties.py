"""Properties of compaction over random conversations (tool rounds, reasoning, images, any text).

Whatever the conversation, the budget and the summariser's behaviour (a summary of any length,
an error, an empty reply, summaries turned off), the compacted conversation:

- keeps the first message, the same object;
- keeps every tool result right after the call it answers, and every answered call answered;
- keeps the order of what it keeps (edits only shorten tool results and drop reasoning);
- never edits a reasoning block (signed or not): it is kept as it was or dropped whole;
- is under the limit, unless that is impossible: then it is down to the first message, the
  synthetic note and the last round, with that round's tool results at their shortest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, event, given, settings, strategies as st

from alloy import (
    Compaction,
    CompactionContext,
    Image,
    Message,
    RedactedThinking,
    Text,
    Thinking,
    TokenCounter,
    ToolCall,
    ToolResult,
)
from alloy._compaction import _SHORTEST, is_summary, request_tokens, text_tokens
from alloy.testing import FunctionProvider, ScriptedProvider, error, text
from strategies import conversations, texts

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_BULK = st.sampled_from(["x", "日本語", "Привет ", "😀", "line: ok\n", '{"k": [1, 2]} '])


@st.composite
def big_conversations(draw: st.DrawFn) -> list[Message]:
    """``conversations()`` with some tool results and texts blown up to many tokens."""
    conversation = draw(conversations(max_turns=12))
    grown: list[Message] = []
    for index, message in enumerate(conversation):
        blocks: list[Any] = []
        for block in message.content:
            if isinstance(block, ToolResult) and draw(st.booleans()):
                bulk = draw(_BULK) * draw(st.integers(0, 3_000))
                block = ToolResult(block.call_id, block.content + bulk, block.is_error)
            elif isinstance(block, Text) and index > 0 and draw(st.integers(0, 3)) == 0:
                block = Text(block.text + draw(_BULK) * draw(st.integers(0, 600)))
            blocks.append(block)
        grown.append(Message(message.role, blocks))
    return grown


@st.composite
def long_conversations(draw: st.DrawFn) -> list[Message]:
    """Many tool rounds of moderate size: the shape of a long agent run."""
    first: list[Any] = [Text(draw(texts()) or "go")]
    if draw(st.booleans()):
        first.append(Image("image/png", "iVBORw0KGgo" * draw(st.integers(1, 50))))
    conversation = [Message.user(first)]
    for turn in range(draw(st.integers(1, 60))):
        blocks: list[Any] = []
        reasoning = draw(st.integers(0, 3))
        if reasoning == 1:
            blocks.append(Thinking("r" * draw(st.integers(0, 900)), signature=f"sig{turn}"))
        elif reasoning == 2:
            blocks.append(RedactedThinking("d" * draw(st.integers(1, 900))))
        blocks.append(Text(f"step {turn} " + draw(_BULK) * draw(st.integers(0, 100))))
        calls = [
            ToolCall(f"call_{turn}_{k}", "read", {"n": turn, "k": k})
            for k in range(draw(st.integers(0, 3)))
        ]
        conversation.append(Message.assistant([*blocks, *calls]))
        if calls:
            results: list[Any] = [
                ToolResult(c.id, draw(_BULK) * draw(st.integers(0, 1_500)), draw(st.booleans()))
                for c in calls
            ]
            results = list(draw(st.permutations(results)))
            if draw(st.integers(0, 4)) == 0:
                results.append(Image("image/jpeg", "/9j/4AAQ"))
            conversation.append(Message.user(results))
        else:
            conversation.append(Message.user(draw(texts()) or "continue"))
    return conversation


def summariser(kind: str, length: int) -> Any:
    if kind == "fails":
        return ScriptedProvider([error("the summariser is down")] * 10)
    if kind == "empty":
        return ScriptedProvider([text("")] * 10)
    return FunctionProvider(lambda request: text("## Goal\n" + "s" * length))


def skeleton(message: Message) -> tuple[Any, ...]:
    """What compaction never changes in a kept message: its role and its non-reasoning blocks,
    tool results by id only."""
    keys: list[Any] = [message.role]
    for block in message.content:
        if isinstance(block, Thinking | RedactedThinking):
            continue
        if isinstance(block, ToolResult):
            keys.append(("result", block.call_id, block.is_error))
        else:
            keys.append(block)
    return tuple(keys)


def is_subsequence(part: Sequence[Any], whole: Sequence[Any]) -> bool:
    iterator = iter(whole)
    return all(any(item == candidate for candidate in iterator) for item in part)


def boundary(messages: Sequence[Message], index: int) -> bool:
    return not any(isinstance(b, ToolResult) for b in messages[index].content)


def check_structure(before: Sequence[Message], after: Sequence[Message]) -> None:
    assert after[0] is before[0], "the first message is kept"
    kept = [m for i, m in enumerate(after) if not (i == 1 and is_summary(m))]
    assert not any(is_summary(m) for m in kept[1:]), "at most one synthetic message, second"
    # Every tool result right after its call; every answered call still answered.
    answered = {r.call_id for m in before for r in m.tool_results}
    for index, message in enumerate(after):
        if message.tool_results:
            assert index > 0
            calls = {c.id for c in after[index - 1].tool_calls}
            assert {r.call_id for r in message.tool_results} <= calls
        open_calls = {c.id for c in message.tool_calls} & answered
        if open_calls:
            assert index + 1 < len(after)
            assert open_calls <= {r.call_id for r in after[index + 1].tool_results}
    # Order kept, reasoning never edited.
    assert is_subsequence([skeleton(m) for m in kept], [skeleton(m) for m in before])
    reasoning = [b for m in before for b in m.content if isinstance(b, Thinking | RedactedThinking)]
    for message in after:
        for block in message.content:
            if isinstance(block, Thinking | RedactedThinking):
                assert block in reasoning


def check_minimal(before: Sequence[Message], after: Sequence[Message], floor: int) -> None:
    """Over the limit is only allowed when nothing more could go."""
    starts = [k for k in range(1, len(before)) if boundary(before, k)]
    tail = [m for i, m in enumerate(after) if i > 0 and not (i == 1 and is_summary(m))]
    last = before[starts[-1] :] if starts else before[1:]
    assert [skeleton(m) for m in tail] == [skeleton(m) for m in last]
    for kept, original in zip(tail, last, strict=True):
        for result, source in zip(kept.tool_results, original.tool_results, strict=True):
            assert result.content == source.content or len(result.content) <= floor + _SHORTEST
    if len(after) > 1 and is_summary(after[1]):
        assert "(no summary)" in after[1].text, "the summary itself went before the last round"


@SETTINGS
@given(
    conversation=big_conversations(),
    share=st.floats(0.05, 0.3) | st.floats(0.3, 1.2),
    kind=st.sampled_from(["ok", "fails", "empty", "off"]),
    length=st.integers(0, 20_000),
    floor=st.sampled_from([0, 200, 2_000]),
    keep=st.integers(0, 4),
    force=st.booleans(),
)
async def test_compaction_properties(
    conversation: list[Message],
    share: float,
    kind: str,
    length: int,
    floor: int,
    keep: int,
    force: bool,
) -> None:
    counter = TokenCounter()
    estimate = counter.estimate(conversation, "Be brief.")
    max_tokens = max(int(estimate * share), 16)
    compaction = Compaction(
        summarize=kind != "off", min_tool_result_chars=floor, keep_recent_tool_results=keep
    )
    context = CompactionContext(
        messages=tuple(conversation),
        system_prompt="Be brief.",
        tools=(),
        max_tokens=max_tokens,
        counter=counter,
        provider=summariser(kind, length),
        force=force,
    )
    result = await compaction.compact(context)
    limit = compaction.limit_for(max_tokens)
    if force:
        limit = min(limit, max(estimate * 3 // 4, 1))
    if result is None:
        after: Sequence[Message] = conversation
        event("unchanged")
    else:
        after = result.messages
        assert result.limit == limit
        check_structure(conversation, after)
        event(
            "summarised"
            if result.summarized_messages
            else "truncated"
            if result.dropped_messages or result.truncated_tool_results
            else "cleared"
        )
    if context.estimate(after) > limit:
        event("over the limit: minimal")
        check_minimal(conversation, after, floor)


@SETTINGS
@given(
    conversation=long_conversations(),
    max_tokens=st.integers(1_500, 30_000),
    length=st.integers(0, 5_000),
    kind=st.sampled_from(["ok", "ok", "fails"]),
)
async def test_long_runs_are_summarised_under_the_limit(
    conversation: list[Message], max_tokens: int, length: int, kind: str
) -> None:
    counter = TokenCounter()
    compaction = Compaction()
    context = CompactionContext(
        messages=tuple(conversation),
        system_prompt="You read files.",
        tools=(),
        max_tokens=max_tokens,
        counter=counter,
        provider=summariser(kind, length),
    )
    result = await compaction.compact(context)
    limit = compaction.limit_for(max_tokens)
    after = conversation if result is None else result.messages
    if result is not None:
        check_structure(conversation, after)
        event("summarised" if result.summarized_messages else "not summarised")
        if kind == "fails" and result.summarized_messages == 0 and result.dropped_messages:
            assert result.fallback is not None
    if context.estimate(after) > limit:
        event("over the limit: minimal")
        check_minimal(conversation, after, compaction.min_tool_result_chars)


@settings(SETTINGS, max_examples=50)
@given(conversation=big_conversations(), ratio=st.floats(0.5, 3.0))
async def test_the_corrected_estimate_is_respected(
    conversation: list[Message], ratio: float
) -> None:
    """With a learned ratio the compacted request fits the corrected limit."""
    counter = TokenCounter(ratio=ratio)
    max_tokens = max(counter.estimate(conversation) // 3, 16)
    context = CompactionContext(
        messages=tuple(conversation),
        system_prompt=None,
        tools=(),
        max_tokens=max_tokens,
        counter=counter,
        provider=summariser("ok", 500),
    )
    result = await Compaction().compact(context)
    after = conversation if result is None else result.messages
    if context.estimate(after) > Compaction().limit_for(max_tokens):
        check_minimal(conversation, after, Compaction().min_tool_result_chars)


@SETTINGS
@given(texts(max_size=200), texts(max_size=200))
def test_text_estimate_never_undercounts_characters(a: str, b: str) -> None:
    assert text_tokens(a) * 3 >= len(a)
    assert text_tokens(a + b) <= text_tokens(a) + text_tokens(b)
    assert text_tokens(a) == -(-len(a.encode("utf-8")) // 3)


@settings(SETTINGS, max_examples=50)
@given(conversations(max_turns=6))
def test_counter_agrees_with_the_plain_estimate(conversation: list[Message]) -> None:
    counter = TokenCounter()
    assert counter.raw(conversation, "sys") == request_tokens(conversation, "sys")
    assert counter.raw(conversation, "sys") == request_tokens(conversation, "sys")  # cached
    calls = [b for m in conversation for b in m.content if isinstance(b, ToolCall)]
    assert all(request_tokens([Message.assistant([c])]) > 4 for c in calls)
