"""Helpers shared by the test modules (``from support import ...``; pytest puts ``tests/`` on
the import path)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import trio

import alloy
from alloy._codec import _wire
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


def decode_counting_json(
    monkeypatch: Any, codec: Any, events: Sequence[Any]
) -> tuple[alloy.Completion, int]:
    """Feed ``events`` to ``codec.StreamDecoder``; return the completion and how many characters
    were handed to JSON parsing: ``json.loads``, or (the codecs' hot paths and ``_wire.loads``)
    the C scanner under it, ``_wire.scan_json``."""
    assert codec.loads is _wire.loads  # which uses _wire.scan_json, and json.loads for the rest
    parsed = 0
    loads, scan = json.loads, _wire.scan_json

    def counting_loads(text: str | bytes, *args: Any, **kwargs: Any) -> Any:
        nonlocal parsed
        parsed += len(text)
        return loads(text, *args, **kwargs)

    def counting_scan(text: str, index: int) -> tuple[Any, int]:
        nonlocal parsed
        parsed += len(text) - index
        return scan(text, index)

    monkeypatch.setattr(json, "loads", counting_loads)
    monkeypatch.setattr(_wire, "scan_json", counting_scan)
    decoder = codec.StreamDecoder()
    for event in events:
        decoder.feed(event)
    completion = decoder.finish()
    monkeypatch.undo()
    return completion, parsed
