"""Typed events a streamed run yields, in order.

Every event carries ``seq`` (strictly increasing within one run, in the order events are
delivered) and ``turn`` (the 1-based number of the model turn it belongs to). A provider
creates the delta events with the defaults; the run stamps ``seq`` and ``turn`` when it
delivers them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeAlias

import attrs

from ._messages import Message, ToolCall, ToolResult, Usage

if TYPE_CHECKING:
    from ._provider import StopReason
    from ._result import Result, ToolCallRecord

__all__ = [
    "Compacted",
    "Delta",
    "Event",
    "RunCompleted",
    "TextDelta",
    "ThinkingDelta",
    "ToolCallDelta",
    "ToolCallStarted",
    "ToolFinished",
    "ToolStarted",
    "TurnCompleted",
]


@attrs.frozen(kw_only=True)
class TextDelta:
    """A piece of the assistant's text, as the model streams it.

    >>> async for event in run:
    ...     if isinstance(event, alloy.TextDelta):
    ...         print(event.text, end="")
    """

    text: str
    seq: int = 0
    turn: int = 0


@attrs.frozen(kw_only=True)
class ThinkingDelta:
    """A piece of the model's visible reasoning.

    >>> case alloy.ThinkingDelta(text=t): log.debug(t)
    """

    text: str
    seq: int = 0
    turn: int = 0


@attrs.frozen(kw_only=True)
class ToolCallStarted:
    """The model began a tool call (its arguments follow as ``ToolCallDelta`` events).

    ``index`` is the call's position within the turn.

    >>> case alloy.ToolCallStarted(name=name): print(f"calling {name}...")
    """

    index: int
    id: str
    name: str
    seq: int = 0
    turn: int = 0


@attrs.frozen(kw_only=True)
class ToolCallDelta:
    """A fragment of a tool call's JSON arguments, as the model streams them.

    >>> case alloy.ToolCallDelta(index=i, arguments=fragment): buffers[i].append(fragment)
    """

    index: int
    arguments: str
    seq: int = 0
    turn: int = 0


@attrs.frozen(kw_only=True)
class ToolStarted:
    """A tool call began executing.

    >>> case alloy.ToolStarted(call=call): print(f"running {call.name}")
    """

    call: ToolCall
    seq: int = 0
    turn: int = 0


@attrs.frozen(kw_only=True)
class ToolFinished:
    """A tool call finished: its result, how long it took and its error, if any.

    >>> case alloy.ToolFinished(record=r): print(f"{r.name} took {r.duration:.2f}s")
    """

    call: ToolCall
    result: ToolResult
    record: ToolCallRecord
    seq: int = 0
    turn: int = 0


@attrs.frozen(kw_only=True)
class TurnCompleted:
    """The model finished one turn: its message, why it stopped and what it cost.

    >>> case alloy.TurnCompleted(stop_reason=reason, usage=u): print(reason, u.output_tokens)
    """

    message: Message
    stop_reason: StopReason
    usage: Usage
    request_id: str | None = None
    rate_limits: Mapping[str, str] = attrs.field(factory=dict)
    seq: int = 0
    turn: int = 0


@attrs.frozen(kw_only=True)
class Compacted:
    """The conversation was compacted before a model call, to fit the context budget.

    ``before`` and ``after`` are the estimated tokens of the whole request (system prompt, tool
    definitions, messages); ``limit`` is what it had to fit under (``max_tokens`` minus the
    reserve); ``forced`` is true when the provider had refused the request as too long. The
    counts say what was done; ``fallback`` says why the older messages were dropped instead of
    summarised (``None`` when they were not); ``usage`` is what the summary call cost (already
    added to the run's usage). See ``docs/compaction.md``.

    >>> case alloy.Compacted(before=b, after=a): print(f"compacted {b} -> {a} tokens")
    """

    before: int
    after: int
    limit: int
    max_tokens: int
    forced: bool = False
    cleared_tool_results: int = 0
    dropped_thinking: int = 0
    summarized_messages: int = 0
    dropped_messages: int = 0
    truncated_tool_results: int = 0
    fallback: str | None = None
    usage: Usage = Usage()
    seq: int = 0
    turn: int = 0


@attrs.frozen(kw_only=True)
class RunCompleted:
    """The run ended; ``result`` is the same value as ``run.result``. Always the last event.

    >>> case alloy.RunCompleted(result=result): print(result.status)
    """

    result: Result
    seq: int = 0
    turn: int = 0


Delta: TypeAlias = TextDelta | ThinkingDelta | ToolCallStarted | ToolCallDelta
"""What a streaming provider sends while the model speaks."""

Event: TypeAlias = Delta | ToolStarted | ToolFinished | TurnCompleted | Compacted | RunCompleted
"""Everything ``alloy.stream`` yields."""
