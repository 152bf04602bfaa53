"""Helpers shared by the test modules (``from support import ...``; pytest puts ``tests/`` on
the import path)."""

from __future__ import annotations

from collections.abc import Sequence

import trio

import alloy


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
