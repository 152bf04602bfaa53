"""What a run returns."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

import attrs

from ._messages import Message, Thinking, Usage
from ._provider import StopReason

__all__ = ["Result", "Status", "ToolCallRecord", "ToolOutcome"]


class Status(enum.StrEnum):
    """How a run ended. Compare with strings: ``result.status == "completed"``.

    - ``completed``: the model gave its final answer (see ``stop_reason`` for how).
    - ``max_turns``: the run reached ``max_turns`` model calls.
    - ``halted``: a middleware halted the run; ``result.reason`` says why.
    - ``cancelled``: the run was cancelled (a streamed run after ``break`` or cancellation).
    - ``error``: the run failed; only seen on ``AlloyError.result``.

    >>> if result.status == alloy.Status.MAX_TURNS: ...
    """

    COMPLETED = "completed"
    MAX_TURNS = "max_turns"
    HALTED = "halted"
    CANCELLED = "cancelled"
    ERROR = "error"


ToolOutcome: TypeAlias = Literal[
    "ok", "error", "invalid_arguments", "unknown_tool", "blocked", "timeout", "cancelled", "not_run"
]


@attrs.frozen(kw_only=True)
class ToolCallRecord:
    """One tool call of a run: what was called, how it went, how long it took (seconds).

    ``outcome`` is ``"ok"`` or says why the result is an error: ``"error"`` (the tool raised),
    ``"invalid_arguments"``, ``"unknown_tool"``, ``"blocked"`` (by middleware), ``"timeout"``,
    ``"cancelled"`` or ``"not_run"`` (the run halted first)::

        >>> [(r.name, r.outcome, round(r.duration, 3)) for r in result.tool_calls]
        [('read', 'ok', 0.001), ('bash', 'timeout', 120.0)]
    """

    id: str
    name: str
    arguments: Mapping[str, Any]
    turn: int
    duration: float
    outcome: ToolOutcome = "ok"
    error: str | None = None

    @property
    def is_error(self) -> bool:
        """Whether the model was given an error result."""
        return self.outcome != "ok"


@attrs.frozen(kw_only=True)
class Result:
    """The outcome of a run.

    ``messages`` is the whole conversation, ready to continue with ``alloy.run(...,
    messages=result.messages)``; ``turns`` counts model calls; ``usage`` sums them::

        result = await alloy.run("What is 2+2?", provider=provider)
        result.text, result.status, result.turns   # ('4', 'completed', 1)
    """

    status: Status
    messages: tuple[Message, ...] = ()
    usage: Usage = Usage()
    turns: int = 0
    tool_calls: tuple[ToolCallRecord, ...] = ()
    stop_reason: StopReason | None = None
    reason: str | None = None

    @property
    def text(self) -> str:
        """The text of the last assistant message that has any (``""`` if none does)."""
        for message in reversed(self.messages):
            if message.role == "assistant":
                text = message.text
                if text:
                    return text
        return ""

    @property
    def thinking(self) -> str:
        """The visible reasoning of the last assistant message (``""`` if none)."""
        for message in reversed(self.messages):
            if message.role == "assistant":
                return "".join(b.text for b in message.content if isinstance(b, Thinking))
        return ""
