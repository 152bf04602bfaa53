"""The issue's "done when": a 300-turn run with large tool outputs under a small budget, over
real HTTP to the fake wire server, never sends a request over budget.

The provider is a real ``OpenAICompat`` talking to a ``WireServer`` on loopback. The server's
script is written just in time by a thin wrapper that sees each request before it goes out: the
model's next tool call for a turn, a structured summary for a summary request (recognised by its
system prompt). The wrapper also plays the provider's tokenizer: it reports 1.2 times the
heuristic estimate as the request's input tokens, so the run must learn the correction to stay
under budget. The check reads the requests the server recorded, decodes their JSON back into
messages, and estimates them with the same estimator.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx2
import trio

import alloy
from alloy import Message, Text, ToolCall, ToolResult, ToolSpec, Usage
from alloy._compaction import SUMMARY_SYSTEM_PROMPT, is_summary, request_tokens
from alloy.providers import OpenAICompat
from alloy.testing import WireServer, call, reply

TURNS = 300
MAX_TOKENS = 8_000
TOKENIZER = 1.2  # the "real" tokenizer counts 20% more than the heuristic


def page_text(page: int) -> str:
    """A large tool output; every 25th page is huge and mostly Japanese."""
    if page % 25 == 0:
        return f"page {page}\n" + "ログの行です。" * 8_000  # 56,000 characters, 3 bytes each
    return f"page {page}\n" + "".join(f"line {i}: status ok, {page * i}\n" for i in range(180))


@alloy.tool
async def fetch(page: int) -> str:
    """Fetch one page of the log."""
    return page_text(page)


class JustInTime:
    """Writes the wire server's next reply once it has seen the request, then sends it."""

    name = "chat"

    def __init__(self, server: WireServer, inner: OpenAICompat) -> None:
        self.server = server
        self.inner = inner
        self.turn = 0
        self.summaries = 0
        self.raw: list[int] = []

    async def complete(self, request: alloy.Request) -> alloy.Completion:
        raw = request_tokens(request.messages, request.system_prompt, request.tools)
        self.raw.append(raw)
        usage = Usage(input_tokens=math.ceil(raw * TOKENIZER), output_tokens=40)
        if request.system_prompt == SUMMARY_SYSTEM_PROMPT:
            self.summaries += 1
            summary = (
                "## Goal\nRead every page of the log.\n## Constraints & Preferences\nNone\n"
                f"## Progress\n### Done\nPages 1-{self.turn} read (checkpoint {self.summaries}).\n"
                "### In Progress\nReading the next page.\n### Blocked\nNone\n"
                "## Key Decisions\nRead pages in order.\n## Evidence & References\nAll ok.\n"
                f"## Next Steps\nFetch page {self.turn + 1}.\n## Critical Context\nNone"
            )
            self.server.extend([reply(summary, usage=usage)])
        elif self.turn < TURNS:
            self.turn += 1
            self.server.extend(
                [
                    reply(
                        f"Reading page {self.turn}.",
                        call("fetch", {"page": self.turn}),
                        usage=usage,
                    )
                ]
            )
        else:
            self.turn += 1
            self.server.extend([reply("Every page is fine.", usage=usage)])
        return await self.inner.complete(request)


def decode_chat(body: dict[str, Any]) -> tuple[str | None, tuple[ToolSpec, ...], list[Message]]:
    """A chat completions request body back as (system prompt, tools, messages)."""
    system: str | None = None
    messages: list[Message] = []
    results: list[Any] = []

    def flush() -> None:
        if results:
            messages.append(Message.user(list(results)))
            results.clear()

    for item in body["messages"]:
        role = item["role"]
        if role == "system":
            system = item["content"]
        elif role == "tool":
            results.append(ToolResult(item["tool_call_id"], item["content"]))
        elif role == "user":
            flush()
            messages.append(Message.user(item["content"]))
        else:
            flush()
            blocks: list[Any] = [Text(item["content"])] if item.get("content") else []
            for wire in item.get("tool_calls", ()):
                function = wire["function"]
                arguments = json.loads(function["arguments"])
                blocks.append(ToolCall(wire["id"], function["name"], arguments))
            messages.append(Message.assistant(blocks))
    flush()
    tools = tuple(
        ToolSpec(t["function"]["name"], t["function"]["description"], t["function"]["parameters"])
        for t in body.get("tools", ())
    )
    return system, tools, messages


async def test_a_300_turn_run_never_sends_a_request_over_budget() -> None:
    events: list[alloy.Event] = []
    with trio.fail_after(60):
        async with (
            WireServer(format="chat") as server,
            httpx2.AsyncClient(trust_env=False) as client,
            OpenAICompat(api_url=server.url, model="local-model", client=client) as inner,
        ):
            provider = JustInTime(server, inner)
            result = await alloy.run(
                "Read every page of the log and tell me whether it is fine.",
                provider=provider,
                tools=[fetch],
                max_tokens=MAX_TOKENS,
                max_turns=TURNS + 1,
                on_event=events.append,
            )
    assert server.errors == []
    assert result.status == "completed", result.reason
    assert result.turns == TURNS + 1
    assert result.text == "Every page is fine."
    assert provider.summaries >= 5, "the run summarised again and again"
    assert len(server.requests) == TURNS + 1 + provider.summaries

    limit = alloy.Compaction().limit_for(MAX_TOKENS)
    worst = 0
    for recorded, raw in zip(server.requests, provider.raw, strict=True):
        system, tools, messages = decode_chat(recorded.body)
        decoded = request_tokens(messages, system, tools)
        assert decoded == raw, "the wire request holds exactly what was estimated"
        worst = max(worst, math.ceil(decoded * TOKENIZER))
    assert worst <= limit, f"a request of {worst} tokens went out; the limit is {limit}"
    assert worst > limit * 0.8, "the budget was used, not wasted"

    compacted = [e for e in events if isinstance(e, alloy.Compacted)]
    assert sum(e.summarized_messages > 0 for e in compacted) == provider.summaries
    assert any(e.truncated_tool_results for e in compacted), "the huge pages were shortened"
    assert all(e.after <= e.limit for e in compacted)
    assert is_summary(result.messages[1])
    assert f"checkpoint {provider.summaries}" in result.messages[1].text
    summary_usage = Usage(input_tokens=0)
    for event in compacted:
        summary_usage = summary_usage + event.usage
    assert result.usage.output_tokens == 40 * (TURNS + 1 + provider.summaries)
    assert summary_usage.output_tokens == 40 * provider.summaries
