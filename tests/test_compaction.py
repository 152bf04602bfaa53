"""Context compaction: the estimate, the built-in compactor's stages, and compaction in a run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import alloy
from alloy import (
    Compaction,
    CompactionContext,
    CompactionResult,
    Image,
    Message,
    RedactedThinking,
    ServerToolCall,
    ServerToolResult,
    Text,
    Thinking,
    TokenCounter,
    ToolCall,
    ToolResult,
    ToolSpec,
    UnknownBlock,
    Usage,
)
from alloy._compaction import (
    IMAGE_TOKENS,
    MAX_SUMMARY_CALLS,
    SUMMARY_SYSTEM_PROMPT,
    SUMMARY_TAG,
    block_tokens,
    is_summary,
    message_tokens,
    overflow_numbers,
    request_tokens,
    text_tokens,
)
from alloy._config import build_config
from alloy.testing import FunctionProvider, ScriptedProvider, call, error, text, tool_call

# -- helpers ---------------------------------------------------------------------------------------


def history(
    rounds: int, size: int, *, thinking: bool = False, first: str = "Analyse the logs"
) -> list[Message]:
    """A first prompt, then ``rounds`` tool rounds whose results are ``size`` characters (and
    whose assistant text is about 100 tokens)."""
    messages = [Message.user(first)]
    for i in range(rounds):
        blocks: list[Any] = []
        if thinking:
            blocks.append(Thinking(f"I should read part {i}.", signature=f"sig-{i}"))
        blocks += [
            Text(f"Reading part {i}. " + "n" * 300),
            ToolCall(f"c{i}", "read", {"path": f"part{i}.log"}),
        ]
        messages.append(Message.assistant(blocks))
        messages.append(Message.user([ToolResult(f"c{i}", f"{i}:" + "x" * size)]))
    return messages


def context(
    messages: Sequence[Message],
    max_tokens: int,
    provider: Any = None,
    *,
    force: bool = False,
    system_prompt: str | None = None,
    counter: TokenCounter | None = None,
) -> CompactionContext:
    return CompactionContext(
        messages=tuple(messages),
        system_prompt=system_prompt,
        tools=(),
        max_tokens=max_tokens,
        counter=counter or TokenCounter(),
        provider=provider or ScriptedProvider([]),
        force=force,
    )


def is_summary_request(request: alloy.Request) -> bool:
    return request.system_prompt == SUMMARY_SYSTEM_PROMPT


def summarizer(summary: str = "## Goal\nAnalyse the logs.\n## Progress\nRead parts.", **usage: int):
    """A provider that answers summary requests with ``summary``; records them."""
    reply_usage = Usage(**usage) if usage else Usage(input_tokens=100, output_tokens=20)

    def model(request: alloy.Request) -> Any:
        assert is_summary_request(request), "only summary requests are expected here"
        return text(summary, usage=reply_usage)

    return FunctionProvider(model)


def answered(messages: Sequence[Message]) -> None:
    """Every tool result follows, in the next message, the call it answers."""
    for index, message in enumerate(messages):
        for result in message.tool_results:
            assert index > 0
            calls = {c.id for c in messages[index - 1].tool_calls}
            assert result.call_id in calls, f"result {result.call_id} has no call before it"


# -- the estimate (peer tests 185-205, adapted) ----------------------------------------------------


def test_text_is_utf8_bytes_over_three_rounded_up() -> None:
    assert text_tokens("") == 0
    assert text_tokens("hello") == 2
    assert text_tokens("x" * 100) == 34
    assert text_tokens("x" * 99) == 33


def test_non_latin_text_is_not_undercounted() -> None:
    # chars/4 would say 75 tokens for 300 CJK characters; tokenizers spend about one per char.
    assert text_tokens("日本語" * 100) == 300
    assert text_tokens("Привет" * 10) == 40  # 2 bytes a letter
    assert text_tokens("😀" * 30) == 40  # 4 bytes an emoji
    assert text_tokens("\ud800") == 1  # a lone surrogate does not crash it


def test_message_list_sums_its_messages() -> None:
    a, b = Message.user("x" * 40), Message.assistant("y" * 80)
    assert message_tokens(a) == 4 + 14
    assert request_tokens([a, b]) == 8 + message_tokens(a) + message_tokens(b)
    assert request_tokens([]) == 8


def test_every_block_kind_counts() -> None:
    call = ToolCall("call_1", "read", {"path": "README.md", "limit": 10})
    assert block_tokens(call) > text_tokens('{"path": "README.md", "limit": 10}')
    assert block_tokens(ToolResult("call_1", "r" * 80)) >= 27
    assert block_tokens(Thinking("t" * 400, signature="s" * 1_000)) == 134  # the signature is not
    assert block_tokens(RedactedThinking("d" * 300)) == 100
    assert block_tokens(ServerToolCall("s1", "code_execution", {"code": "1+1"})) > 0
    assert block_tokens(ServerToolResult("s1", "code_execution_tool_result", {"out": "2"})) > 0
    assert block_tokens(UnknownBlock({"type": "container_upload", "file_id": "f_1"})) > 0
    assert block_tokens(Thinking("")) == 0


def test_an_image_is_a_fixed_cost_not_its_base64() -> None:
    small, huge = Image("image/png", "AAAA"), Image("image/png", "A" * 3_000_000)
    assert block_tokens(small) == block_tokens(huge) == IMAGE_TOKENS


def test_the_whole_request_counts_system_prompt_and_tools() -> None:
    spec = ToolSpec("read", "Read a file." * 20, {"type": "object", "properties": {}})
    messages = [Message.user("hi")]
    bare = request_tokens(messages)
    assert request_tokens(messages, "s" * 300) == bare + 100
    assert request_tokens(messages, tools=[spec]) > bare + text_tokens(spec.description)


def test_counter_is_corrected_by_reported_usage() -> None:
    counter = TokenCounter()
    messages = [Message.user("x" * 3_000)]
    raw = counter.raw(messages)
    assert counter.estimate(messages) == raw
    assert counter.observe(raw, reported=raw * 2)
    assert counter.estimate(messages) == 2 * raw
    assert counter.observe(raw, reported=raw * 3 // 4)
    assert counter.estimate(messages) == math.ceil(raw * (raw * 3 // 4) / raw)


@pytest.mark.parametrize(
    ("raw", "reported"),
    [(3_000, 10), (3_000, 20_000), (3_000, 0), (100, 150)],
    ids=["a-fake-count", "absurdly-high", "not-reported", "too-small-to-measure"],
)
def test_implausible_reports_are_ignored(raw: int, reported: int) -> None:
    counter = TokenCounter()
    assert not counter.observe(raw, reported)
    assert counter.ratio == 1.0


def test_a_message_is_estimated_once_for_every_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    import alloy._compaction as compaction_module

    calls: list[Message] = []

    def counting(message: Message) -> int:
        calls.append(message)
        return message_tokens(message)

    monkeypatch.setattr(compaction_module, "message_tokens", counting)
    message = Message.user("x" * 30)
    first, second = TokenCounter(), TokenCounter()
    assert first.message(message) == first.message(message) == second.message(message) == 14
    assert calls == [message]  # remembered on the (immutable) message, across runs
    equal = Message.user("x" * 30)
    assert first.message(equal) == 14 and calls == [message, equal]
    # The memo is invisible: equality, hashing, repr and the history format ignore it.
    assert message == Message.user("x" * 30) and hash(message) == hash(Message.user("x" * 30))
    assert "14" not in repr(message)
    assert alloy.dump_messages([message]) == alloy.dump_messages([Message.user("x" * 30)])


def test_overflow_messages_are_parsed() -> None:
    assert overflow_numbers("prompt is too long: 210012 tokens > 200000 maximum") == (
        210_012,
        200_000,
    )
    assert overflow_numbers(
        "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 130015 tokens."
    ) == (130_015, 128_000)
    assert overflow_numbers(
        "Input tokens exceed the configured limit of 272,000 tokens. Your messages resulted in "
        "297,006 tokens."
    ) == (297_006, 272_000)
    assert overflow_numbers(
        "input length and `max_tokens` exceed context limit: 198000 + 4096 > 200000"
    ) == (198_000, 195_904)
    assert overflow_numbers("the context is too long") == (None, None)


# -- the budget ------------------------------------------------------------------------------------


def test_budget_arithmetic() -> None:
    compaction = Compaction()
    assert compaction.reserve_for(200_000) == 25_000
    assert compaction.limit_for(200_000) == 175_000
    assert compaction.reserve_for(1_000_000) == 32_768
    assert compaction.recent_for(175_000) == 52_500
    assert compaction.summary_for(175_000) == 8_000
    assert compaction.summary_for(4_000) == 500
    tuned = Compaction(reserve=8_000, keep_recent_tokens=10_000, summary_tokens=1_000)
    assert tuned.limit_for(100_000) == 92_000
    assert tuned.recent_for(92_000) == 10_000
    assert tuned.summary_for(92_000) == 1_000
    assert tuned.reserve_for(10_000) == 5_000, "a reserve never takes more than half"


@pytest.mark.parametrize(
    "settings",
    [
        {"reserve": 0},
        {"reserve": True},
        {"keep_recent_tokens": -1},
        {"keep_recent_tool_results": -1},
        {"summary_tokens": 0},
        {"summary_timeout": 0},
        {"summary_timeout": float("nan")},
        {"min_tool_result_chars": "2k"},
        {"summarize": "yes"},
        {"summary_prompt": "Summarise this."},
        {"summary_system_prompt": None},
    ],
)
def test_bad_compaction_settings(settings: dict[str, Any]) -> None:
    with pytest.raises(alloy.ConfigError):
        Compaction(**settings)


@pytest.mark.parametrize(
    "options",
    [
        {"max_tokens": 0},
        {"max_tokens": True},
        {"max_tokens": 1.5e5},
        {"compaction": "yes"},
        {"compaction": None},
        {"compaction": object()},
    ],
)
def test_bad_run_options(options: dict[str, Any]) -> None:
    with pytest.raises(alloy.ConfigError):
        build_config("hi", provider=ScriptedProvider([]), **options)


class Modelled(ScriptedProvider):
    def __init__(self, model: str, script: Sequence[Any] = ()) -> None:
        super().__init__(script)
        self.model = model


def test_max_tokens_follows_the_model_unless_given() -> None:
    config = build_config("hi", provider=Modelled("claude-haiku-4-5-20251001"))
    assert (config.max_tokens, config.max_tokens_explicit) == (200_000, False)
    assert config.with_provider(Modelled("gpt-5.4")).max_tokens == 922_000
    assert config.with_provider(ScriptedProvider([])).max_tokens == 200_000  # no model: default
    overridden = build_config(
        "hi", provider=Modelled("acme"), model_overrides={"acme": 64_000, "gpt-5.4": 500_000}
    )
    assert overridden.max_tokens == 64_000
    assert overridden.with_provider(Modelled("gpt-5.4-2026-03-05")).max_tokens == 500_000
    explicit = build_config("hi", provider=Modelled("gpt-5.4"), max_tokens=50_000)
    assert (explicit.max_tokens, explicit.max_tokens_explicit) == (50_000, True)
    assert explicit.with_provider(Modelled("claude-haiku-4-5")).max_tokens == 50_000


def test_compaction_option_values() -> None:
    assert isinstance(build_config("hi", provider=ScriptedProvider([])).compaction, Compaction)
    assert build_config("hi", provider=ScriptedProvider([]), compaction=False).compaction is None
    tuned = Compaction(reserve=10)
    assert build_config("hi", provider=ScriptedProvider([]), compaction=tuned).compaction is tuned


class Recorder:
    """A custom compactor that records what it was given and changes nothing."""

    def __init__(self) -> None:
        self.contexts: list[CompactionContext] = []

    async def compact(self, context: CompactionContext) -> CompactionResult | None:
        self.contexts.append(context)
        return None


async def test_agent_set_model_rederives_the_budget() -> None:
    recorder = Recorder()
    first = Modelled("claude-haiku-4-5", [text("one")])
    async with alloy.Agent.open(provider=first, compaction=recorder) as agent:
        await agent.chat("hi")
        await agent.set_model(Modelled("gpt-5.4", [text("two")]))
        await agent.chat("again")
    assert [c.max_tokens for c in recorder.contexts] == [200_000, 922_000]

    recorder = Recorder()
    first = Modelled("claude-haiku-4-5", [text("one")])
    async with alloy.Agent.open(provider=first, compaction=recorder, max_tokens=9_000) as agent:
        await agent.chat("hi")
        await agent.set_model(Modelled("gpt-5.4", [text("two")]))
        await agent.chat("again")
    assert [c.max_tokens for c in recorder.contexts] == [9_000, 9_000]


# -- the compactor, stage by stage (peer tests 170-184, adapted) ----------------------------------


async def test_unchanged_within_budget() -> None:
    messages = history(3, 100)
    assert await Compaction().compact(context(messages, 200_000)) is None


async def test_old_tool_results_are_cleared_with_a_marker() -> None:
    messages = history(8, 1_200)
    messages[4] = Message.user([ToolResult("c1", "boom " * 300, is_error=True)])
    ctx = context(messages, 4_000)
    assert ctx.estimate() > Compaction().limit_for(4_000)
    result = await Compaction().compact(ctx)
    assert result is not None
    assert len(result.messages) == len(messages), "clearing alone was enough"
    assert result.cleared_tool_results == 5
    assert result.summarized_messages == result.dropped_messages == 0
    contents = [m.tool_results[0].content for m in result.messages[2::2]]
    assert contents[0] == "[tool result cleared to save context: read returned 1,202 characters]"
    assert contents[1].endswith("returned 1,500 characters]")
    assert result.messages[4].tool_results[0].is_error, "the error flag stays"
    assert contents[5:] == [m.tool_results[0].content for m in messages[12::2]], "last 3 kept"
    assert result.messages[0] is messages[0]
    assert ctx.estimate(result.messages) <= result.limit


async def test_small_tool_results_are_not_replaced_by_a_longer_marker() -> None:
    messages = history(6, 5)
    for i in range(3):
        messages.append(Message.assistant([ToolCall(f"big{i}", "read", {"path": "big"})]))
        messages.append(Message.user([ToolResult(f"big{i}", "z" * 3_000)]))
    messages.append(Message.assistant([ToolCall("big3", "read", {"path": "big"})]))
    messages.append(Message.user([ToolResult("big3", "z" * 300)]))
    result = await Compaction().compact(context(messages, 3_600))
    assert result is not None
    assert result.cleared_tool_results == 1, "only the big one; the small ones stay"
    assert [r.content for m in result.messages[1:13] for r in m.tool_results] == [
        f"{i}:xxxxx" for i in range(6)
    ]


async def test_first_and_recent_messages_are_kept_verbatim() -> None:
    messages = history(40, 2_000, first="original request")
    provider = summarizer()
    result = await Compaction().compact(context(messages, 6_000, provider))
    assert result is not None
    assert result.messages[0] is messages[0]
    assert result.messages[0].text == "original request"
    assert result.messages[-1] is messages[-1]
    assert result.messages[-2] is messages[-2]


async def test_old_reasoning_is_dropped_whole_and_the_last_kept() -> None:
    messages = [Message.user("go")]
    for i in range(6):
        reasoning = (
            Thinking("t" * 1_200, signature=f"sig-{i}") if i % 2 else RedactedThinking("r" * 1_200)
        )
        messages.append(Message.assistant([reasoning, ToolCall(f"c{i}", "read", {})]))
        messages.append(Message.user([ToolResult(f"c{i}", "ok")]))
    ctx = context(messages, 2_000)
    result = await Compaction().compact(ctx)
    assert result is not None
    assert result.dropped_thinking == 5
    assert result.summarized_messages == result.dropped_messages == 0
    assistants = [m for m in result.messages if m.role == "assistant"]
    assert all(m.content == (m.tool_calls[0],) for m in assistants[:-1])
    assert assistants[-1] is messages[-2], "the last assistant message keeps its reasoning"
    originals = [
        b for m in messages for b in m.content if isinstance(b, Thinking | RedactedThinking)
    ]
    kept = [
        b for m in result.messages for b in m.content if isinstance(b, Thinking | RedactedThinking)
    ]
    assert kept == originals[-1:], "reasoning is dropped whole, never edited"
    assert ctx.estimate(result.messages) <= result.limit


async def test_summary_replaces_the_older_part() -> None:
    messages = history(60, 2_000)
    provider = summarizer("## Goal\nAnalyse the logs.", input_tokens=900, output_tokens=60)
    ctx = context(messages, 8_000, provider, system_prompt="You analyse logs.")
    result = await Compaction().compact(ctx)
    assert result is not None
    assert result.fallback is None
    summary = result.messages[1]
    assert is_summary(summary) and summary.role == "user"
    assert summary.text.startswith(SUMMARY_TAG)
    assert "## Goal\nAnalyse the logs." in summary.text
    assert result.summarized_messages == len(messages) - len(result.messages) + 1
    assert provider.requests
    request = provider.requests[0]
    assert request.tools == ()
    prompt = request.messages[0].text
    for section in (
        "## Goal",
        "## Constraints & Preferences",
        "### Done",
        "### In Progress",
        "### Blocked",
        "## Key Decisions",
        "## Evidence & References",
        "## Next Steps",
        "## Critical Context",
    ):
        assert section in prompt
    assert "<task>\nUSER: Analyse the logs\n</task>" in prompt
    assert "Reading part 0. nnn" in prompt
    # The recent window starts at a tool round's call, never at its results.
    assert result.messages[2].role == "assistant"
    answered(result.messages)
    assert ctx.estimate(result.messages) <= result.limit
    assert ctx.estimate(result.messages) < ctx.estimate() // 4


async def test_summary_usage_is_reported() -> None:
    provider = summarizer(input_tokens=900, output_tokens=60)
    result = await Compaction().compact(context(history(60, 2_000), 8_000, provider))
    assert result is not None
    calls = len(provider.requests)
    assert result.usage == Usage(input_tokens=900 * calls, output_tokens=60 * calls)


async def test_a_later_compaction_updates_the_same_summary() -> None:
    provider = summarizer("## Goal\nFirst checkpoint.")
    first = await Compaction().compact(context(history(60, 2_000), 8_000, provider))
    assert first is not None
    grown = [*first.messages, *history(60, 2_000)[1:]]
    second_provider = summarizer("## Goal\nSecond checkpoint.")
    second = await Compaction().compact(context(grown, 8_000, second_provider))
    assert second is not None
    assert [is_summary(m) for m in second.messages].count(True) == 1
    assert "Second checkpoint." in second.messages[1].text
    assert "First checkpoint." not in second.messages[1].text
    prompt = second_provider.requests[0].messages[0].text
    assert "<previous-checkpoint>\n## Goal\nFirst checkpoint.\n</previous-checkpoint>" in prompt


async def test_a_long_older_part_is_summarised_in_a_few_calls() -> None:
    provider = summarizer()
    result = await Compaction().compact(context(history(300, 3_000), 8_000, provider))
    assert result is not None and result.fallback is None
    assert 1 < len(provider.requests) <= MAX_SUMMARY_CALLS + 1
    previous = [r.messages[0].text for r in provider.requests[1:]]
    assert all("<previous-checkpoint>" in p for p in previous), "each call updates the last"
    counter = TokenCounter()
    for request in provider.requests:
        assert counter.estimate(request.messages, request.system_prompt) <= result.limit


async def test_a_too_long_summary_is_clipped() -> None:
    provider = summarizer("S" * 100_000)
    compaction = Compaction(summary_tokens=300)
    result = await compaction.compact(context(history(60, 2_000), 8_000, provider))
    assert result is not None
    assert text_tokens(result.messages[1].text) < 300 + 60


@pytest.mark.parametrize(
    "failure",
    [error("Overloaded"), text("   "), error(alloy.AuthenticationError("bad key"))],
    ids=["provider-error", "empty-summary", "auth-error"],
)
async def test_failed_summary_falls_back_to_truncation(failure: Any) -> None:
    messages = history(60, 2_000)
    ctx = context(messages, 8_000, ScriptedProvider([failure]))
    result = await Compaction().compact(ctx)
    assert result is not None
    assert result.fallback is not None and "summary" in result.fallback
    assert result.summarized_messages == 0
    assert result.dropped_messages > 0
    note = result.messages[1]
    assert is_summary(note)
    assert f"[{result.dropped_messages} more messages were dropped without a summary" in note.text
    assert result.messages[0] is messages[0]
    assert result.messages[-1] is messages[-1]
    assert ctx.estimate(result.messages) <= result.limit
    answered(result.messages)
    # What is kept is the newest part, in order.
    kept = [c.id for m in result.messages[2:] for c in m.tool_calls]
    assert kept == [c.id for m in messages for c in m.tool_calls][-len(kept) :]


async def test_summaries_can_be_turned_off() -> None:
    messages = history(60, 2_000)
    provider = ScriptedProvider([])
    result = await Compaction(summarize=False).compact(context(messages, 8_000, provider))
    assert result is not None
    assert result.fallback == "summaries are turned off"
    assert result.dropped_messages > 0
    assert provider.requests == []


async def test_truncation_keeps_an_earlier_summary() -> None:
    first = await Compaction().compact(
        context(history(60, 2_000), 8_000, summarizer("## Goal\nKeep me."))
    )
    assert first is not None
    grown = [*first.messages, *history(80, 2_000)[1:]]
    result = await Compaction().compact(context(grown, 8_000, ScriptedProvider([error("down")])))
    assert result is not None
    assert "## Goal\nKeep me." in result.messages[1].text
    assert "more messages were dropped without a summary" in result.messages[1].text


async def test_the_latest_huge_tool_result_is_shortened() -> None:
    messages = [*history(3, 100), *history(1, 60_000)[1:]]
    messages[-1] = Message.user([ToolResult("c0", "日本" * 30_000)])
    ctx = context(messages, 8_000, summarizer())
    result = await Compaction().compact(ctx)
    assert result is not None
    assert result.truncated_tool_results == 1
    content = result.messages[-1].tool_results[0].content
    assert "[tool result truncated: kept " in content
    assert "of 60,000 characters]" in content
    assert len(content) >= Compaction().min_tool_result_chars
    assert ctx.estimate(result.messages) <= result.limit


async def test_shortening_never_goes_below_the_floor() -> None:
    messages = [Message.user("go"), *history(1, 30_000)[1:]]
    compaction = Compaction(min_tool_result_chars=5_000)
    result = await compaction.compact(context(messages, 1_000))
    assert result is not None
    content = result.messages[-1].tool_results[0].content
    assert 5_000 <= len(content) <= 5_100
    assert context(messages, 1_000).estimate(result.messages) > result.limit  # not possible


async def test_forced_compaction_shrinks_even_within_budget() -> None:
    messages = history(30, 1_000)
    ctx = context(messages, 200_000, summarizer(), force=True)
    result = await Compaction().compact(ctx)
    assert result is not None
    assert result.limit <= ctx.estimate() * 3 // 4
    assert ctx.estimate(result.messages) <= result.limit


async def test_summary_timeout_falls_back(autojump_clock: trio.testing.MockClock) -> None:
    async def slow(request: alloy.Request) -> Any:
        await trio.sleep(1_000)
        return text("too late")

    compaction = Compaction(summary_timeout=30)
    start = trio.current_time()
    result = await compaction.compact(context(history(60, 2_000), 8_000, FunctionProvider(slow)))
    assert result is not None
    assert result.fallback == "the summary call ran out of time"
    assert trio.current_time() - start == pytest.approx(30)
    assert result.dropped_messages > 0


async def test_summary_takes_at_most_half_the_callers_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def slow(request: alloy.Request) -> Any:
        await trio.sleep(1_000)
        return text("too late")

    start = trio.current_time()
    with trio.fail_after(100):
        result = await Compaction().compact(
            context(history(60, 2_000), 8_000, FunctionProvider(slow))
        )
    assert result is not None
    assert result.fallback == "the summary call ran out of time"
    assert trio.current_time() - start == pytest.approx(50)


async def test_cancelling_during_the_summary_call_cancels_the_compaction() -> None:
    started = trio.Event()

    async def hang(request: alloy.Request) -> Any:
        started.set()
        await trio.sleep_forever()

    outcome: list[Any] = []
    async with trio.open_nursery() as nursery:

        async def compact() -> None:
            outcome.append(
                await Compaction().compact(
                    context(history(60, 2_000), 8_000, FunctionProvider(hang))
                )
            )

        nursery.start_soon(compact)
        await started.wait()
        nursery.cancel_scope.cancel()
    assert outcome == []


# -- compaction in a run -------------------------------------------------------------------------


def looping_model(rounds: int, size: int, *, summary: str = "## Goal\nRead all parts.") -> Any:
    """A model that reads ``rounds`` parts of ``size`` characters, then answers; it also writes
    summaries when asked."""
    turns = 0

    def model(request: alloy.Request) -> Any:
        nonlocal turns
        if is_summary_request(request):
            return text(summary, usage=Usage(input_tokens=500, output_tokens=40))
        turns += 1
        if turns > rounds:
            return text("All parts read.")
        return tool_call("read", {"part": turns, "size": size}, text="Next part. " + "p" * 300)

    return FunctionProvider(model)


@alloy.tool
async def read(part: int, size: int) -> str:
    """Read one part."""
    return f"part {part}: " + "y" * size


async def test_a_run_compacts_and_reports_it() -> None:
    provider = looping_model(12, 3_000)
    seen: list[tuple[str, Any]] = []

    class Watch(alloy.Middleware):
        def after_compaction(self, run: alloy.RunContext, compaction: alloy.Compacted) -> None:
            seen.append(("after_compaction", (compaction, list(run.messages))))

        def before_completion(self, run: alloy.RunContext) -> None:
            seen.append(("before_completion", list(run.messages)))

    events: list[alloy.Event] = []
    async with alloy.stream(
        "Read every part", provider=provider, tools=[read], max_tokens=6_000, middleware=[Watch()]
    ) as run:
        async for event in run:
            events.append(event)
    result = run.result
    assert result is not None and result.status == "completed"
    compacted = [e for e in events if isinstance(e, alloy.Compacted)]
    assert compacted
    for event in compacted:
        assert event.before > event.limit >= event.after
        assert event.max_tokens == 6_000
        assert event.limit == Compaction().limit_for(6_000)
        assert not event.forced
    hooks = [s for s in seen if s[0] == "after_compaction"]
    assert len(hooks) == len(compacted)
    for (_, (hook_event, _)), event in zip(hooks, compacted, strict=True):
        assert hook_event == attrs.evolve(event, seq=0), "the hook gets the event's values"
    # The event belongs to the turn it precedes, and before_completion sees the result.
    for event in compacted:
        later = [e for e in events if isinstance(e, alloy.TurnCompleted) and e.seq > event.seq]
        assert later and later[0].turn == event.turn
    first_hook = seen.index(hooks[0])
    assert seen[first_hook + 1][0] == "before_completion"
    assert seen[first_hook + 1][1] == hooks[0][1][1]
    counter = TokenCounter()
    specs = (alloy.ToolSpec.of(read),)
    main = [r for r in provider.requests if not is_summary_request(r)]
    for request in main:
        assert counter.estimate(request.messages, request.system_prompt, specs) <= 6_000
    answered(result.messages)


async def test_the_summary_usage_is_in_the_run_usage() -> None:
    provider = looping_model(50, 3_000)
    result = await alloy.run(
        "Read every part", provider=provider, tools=[read], max_tokens=8_000, max_turns=100
    )
    assert result.status == "completed"
    summaries = [r for r in provider.requests if is_summary_request(r)]
    assert summaries, "the run summarised"
    turns = result.turns
    assert turns == len(provider.requests) - len(summaries)
    expected = Usage(input_tokens=10, output_tokens=5)
    total = Usage()
    for _ in range(turns):
        total = total + expected
    for _ in summaries:
        total = total + Usage(input_tokens=500, output_tokens=40)
    assert result.usage == total
    assert is_summary(result.messages[1])


async def test_compaction_can_be_turned_off() -> None:
    provider = looping_model(12, 3_000)
    result = await alloy.run(
        "Read every part", provider=provider, tools=[read], max_tokens=6_000, compaction=False
    )
    assert result.status == "completed"
    assert not any(is_summary_request(r) for r in provider.requests)
    assert all("cleared" not in r.content for m in result.messages for r in m.tool_results), (
        "nothing was compacted"
    )


async def test_a_custom_compactor_is_called_before_every_model_call() -> None:
    class KeepLastRound:
        def __init__(self) -> None:
            self.calls: list[CompactionContext] = []

        async def compact(self, context: CompactionContext) -> CompactionResult | None:
            self.calls.append(context)
            if len(context.messages) <= 3:
                return None
            first, *rest = context.messages
            return CompactionResult(messages=(first, *rest[-2:]), limit=123)

    compactor = KeepLastRound()
    events: list[alloy.Event] = []
    result = await alloy.run(
        "Read every part",
        provider=looping_model(4, 10),
        tools=[read],
        compaction=compactor,
        on_event=events.append,
    )
    assert result.status == "completed"
    assert len(compactor.calls) == result.turns
    assert [len(c.messages) for c in compactor.calls] == [1, 3, 5, 5, 5]
    assert all(c.max_tokens == 200_000 for c in compactor.calls)
    compacted = [e for e in events if isinstance(e, alloy.Compacted)]
    assert len(compacted) == 3 and all(e.limit == 123 for e in compacted)


@pytest.mark.parametrize(
    "outcome",
    [RuntimeError("bug"), "not a result", CompactionResult(messages=("not a message",))],  # type: ignore[arg-type]
)
async def test_a_broken_custom_compactor_is_a_middleware_error(outcome: Any) -> None:
    class Broken:
        async def compact(self, context: CompactionContext) -> Any:
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

    with pytest.raises(alloy.MiddlewareError) as caught:
        await alloy.run("hi", provider=ScriptedProvider([text("hi")]), compaction=Broken())
    assert caught.value.hook == "compaction"
    assert caught.value.result is not None


async def test_halt_from_after_compaction_halts_the_run() -> None:
    class Stop(alloy.Middleware):
        def after_compaction(self, run: alloy.RunContext, compaction: alloy.Compacted) -> Any:
            return alloy.Halt("compacted once, enough")

    result = await alloy.run(
        "Read every part",
        provider=looping_model(12, 3_000),
        tools=[read],
        max_tokens=6_000,
        middleware=[Stop()],
    )
    assert result.status == "halted"
    assert result.reason == "compacted once, enough"


async def test_context_length_exceeded_forces_compaction_and_one_retry() -> None:
    requests: list[alloy.Request] = []
    refused = alloy.ContextLengthExceeded(
        "prompt is too long: 9000 tokens > 7000 maximum", provider="scripted"
    )

    def model(request: alloy.Request) -> Any:
        if is_summary_request(request):
            return text("## Goal\nRead.")
        requests.append(request)
        if len(requests) == 1:
            raise refused
        return text("done")

    events: list[alloy.Event] = []
    messages = history(30, 1_000)
    result = await alloy.run(
        provider=FunctionProvider(model), messages=messages, on_event=events.append
    )
    assert result.status == "completed"
    assert result.turns == 1
    assert len(requests) == 2
    compacted = [e for e in events if isinstance(e, alloy.Compacted)]
    assert len(compacted) == 1 and compacted[0].forced
    assert compacted[0].max_tokens == 7_000, "the window the error stated was learned"
    sizes = [request_tokens(r.messages) for r in requests]
    assert sizes[1] <= sizes[0] * 3 // 4


async def test_context_length_exceeded_is_raised_when_nothing_can_change() -> None:
    refused = error(alloy.ContextLengthExceeded("prompt is too long", provider="scripted"))
    with pytest.raises(alloy.ContextLengthExceeded):
        await alloy.run("hi", provider=ScriptedProvider([refused, text("never")]))


async def test_context_length_exceeded_twice_is_raised() -> None:
    attempts = 0

    def model(request: alloy.Request) -> Any:
        nonlocal attempts
        if is_summary_request(request):
            return text("## Goal\nx")
        attempts += 1
        raise alloy.ContextLengthExceeded("prompt is too long", provider="scripted")

    with pytest.raises(alloy.ContextLengthExceeded) as caught:
        await alloy.run(provider=FunctionProvider(model), messages=history(30, 1_000))
    assert attempts == 2, "retried once"
    assert caught.value.result is not None


async def test_context_length_exceeded_without_compaction_is_raised() -> None:
    refused = error(alloy.ContextLengthExceeded("prompt is too long", provider="scripted"))
    with pytest.raises(alloy.ContextLengthExceeded):
        await alloy.run(
            provider=ScriptedProvider([refused, text("never")]),
            messages=history(30, 1_000),
            compaction=False,
        )


async def test_reported_usage_corrects_the_estimate() -> None:
    """A provider whose tokenizer counts twice the estimate gets compacted twice as early."""
    requests: list[alloy.Request] = []

    def model(request: alloy.Request) -> Any:
        if is_summary_request(request):
            return text("## Goal\nRead.")
        requests.append(request)
        reported = 2 * request_tokens(request.messages, request.system_prompt, request.tools)
        usage = Usage(input_tokens=reported, output_tokens=5)
        if len(requests) > 6:
            return text("done", usage=usage)
        part = len(requests)
        return alloy.testing.reply(call("read", {"part": part, "size": 1_500}), usage=usage)

    events: list[alloy.Event] = []
    await alloy.run(
        "Read",
        provider=FunctionProvider(model),
        tools=[read],
        max_tokens=4_000,
        compaction=Compaction(keep_recent_tool_results=10),
        on_event=events.append,
    )
    compacted = [e for e in events if isinstance(e, alloy.Compacted)]
    assert compacted
    limit = Compaction().limit_for(4_000)
    first = compacted[0]
    assert first.before > limit >= first.before / 2, "the raw estimate alone would fit"
    for request in requests[1:]:
        assert 2 * request_tokens(request.messages, request.system_prompt, request.tools) <= limit


async def test_cancelling_a_run_during_its_summary_call() -> None:
    """The summary call is part of the run: cancelling the run cancels it, and the partial
    result holds the conversation as it was before the compaction began."""
    started = trio.Event()
    turns = 0

    async def model(request: alloy.Request) -> Any:
        nonlocal turns
        if is_summary_request(request):
            started.set()
            await trio.sleep_forever()
        turns += 1
        return tool_call("read", {"part": turns, "size": 3_000}, text="Next. " + "p" * 300)

    handle: alloy.Run | None = None
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:

            async def cancel_when_summarising() -> None:
                await started.wait()
                scope.cancel()

            nursery.start_soon(cancel_when_summarising)
            async with alloy.stream(
                "Read every part",
                provider=FunctionProvider(model),
                tools=[read],
                max_tokens=8_000,
                max_turns=200,
            ) as handle:
                async for _ in handle:
                    pass
    assert scope.cancelled_caught
    assert started.is_set()
    assert handle is not None and handle.result is not None
    result = handle.result
    assert result.status == "cancelled"
    assert not any(is_summary(m) for m in result.messages), "the compaction did not finish"
    assert result.turns == turns
    answered(result.messages)
    assert result.messages[-1].tool_results, "the last round is complete"
