"""Helpers shared by the test modules (``from support import ...``; pytest puts ``tests/`` on
the import path)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import trio

import alloy
from alloy.providers import Anthropic, OpenAI, OpenAICompat

MODELS = {"anthropic": "claude-test-1", "openai": "gpt-test-1", "chat": "llama-test-1"}
"""The model each wire format's provider asks for in the provider tests."""


def count_tasks() -> int:
    """Every task alive under the root task."""

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(child) for n in task.child_nurseries for child in n.child_tasks)

    return walk(trio.lowlevel.current_root_task())


def answered(messages: Sequence[alloy.Message]) -> None:
    """Every tool call of an assistant message has exactly one result in the next message."""
    for index, message in enumerate(messages):
        if message.role != "assistant" or not message.tool_calls:
            continue
        assert index + 1 < len(messages), "the transcript ends with unanswered tool calls"
        following = messages[index + 1]
        assert following.role == "user"
        assert sorted(r.call_id for r in following.tool_results) == sorted(
            c.id for c in message.tool_calls
        )


def make_provider(format: str, url: str, **options: Any) -> Any:
    """The provider class for ``format``, pointed at ``url``, with a test key."""
    options.setdefault("api_key", "sk-test")
    if format == "anthropic":
        return Anthropic(api_url=url, model=MODELS[format], **options)
    if format == "openai":
        return OpenAI(api_url=url, model=MODELS[format], **options)
    return OpenAICompat(api_url=url, model=MODELS[format], **options)


@asynccontextmanager
async def provider_at(format: str, url: str, **options: Any) -> AsyncIterator[Any]:
    """A provider on a client of our own (no proxies from the environment), both closed after."""
    async with (
        httpx2.AsyncClient(trust_env=False) as client,
        make_provider(format, url, client=client, **options) as provider,
    ):
        yield provider
