"""Assertions about what a run did."""

from __future__ import annotations

from typing import Any

from .._messages import ToolCall
from .._result import Result

__all__ = ["assert_tool_called", "refute_tool_called", "tool_calls"]


def tool_calls(result: Result, name: str | None = None) -> list[ToolCall]:
    """Every client tool call in the conversation (of tool ``name`` only, if given).

    >>> [c.arguments["path"] for c in tool_calls(result, "read")]
    ['pyproject.toml']
    """
    return [
        block
        for message in result.messages
        if message.role == "assistant"
        for block in message.tool_calls
        if name is None or block.name == name
    ]


def assert_tool_called(result: Result, name: str, /, **partial_arguments: Any) -> ToolCall:
    """Assert the model called ``name`` with at least these arguments; return that call.

    >>> assert_tool_called(result, "read", path="pyproject.toml")
    """
    calls = tool_calls(result)
    named = [c for c in calls if c.name == name]
    if not named:
        seen = ", ".join(sorted({c.name for c in calls})) or "no tools"
        raise AssertionError(f"expected a call to tool {name!r}, but the run called {seen}")
    for candidate in named:
        if all(
            key in candidate.arguments and candidate.arguments[key] == value
            for key, value in partial_arguments.items()
        ):
            return candidate
    shown = "\n".join(f"  {dict(c.arguments)!r}" for c in named)
    raise AssertionError(
        f"tool {name!r} was called, but never with {partial_arguments!r}; its calls were:\n{shown}"
    )


def refute_tool_called(result: Result, name: str, /) -> None:
    """Assert the model never called ``name``.

    >>> refute_tool_called(result, "bash")
    """
    named = [c for c in tool_calls(result) if c.name == name]
    if named:
        raise AssertionError(
            f"expected no call to tool {name!r}, but it was called {len(named)} time(s): "
            + ", ".join(repr(dict(c.arguments)) for c in named)
        )
