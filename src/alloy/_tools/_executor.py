"""Running the tool calls of one turn: approved in order, executed in parallel, isolated.

Each call runs under its own deadline (parallel calls each in a task of their own); whatever
happens to it (an exception, an unknown name, invalid arguments, a timeout, a block) becomes an
error result at its index, and never touches its siblings. Calls of ``sequential`` tools run after the others, one at a
time. Cancelling the run cancels them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs
import trio

from .._emit import Emitter
from .._errors import ToolError, ToolTimeout
from .._events import ToolFinished, ToolStarted
from .._messages import ToolCall, ToolResult
from .._middleware import Block, Hooks, RunContext
from .._result import ToolCallRecord, ToolOutcome
from ._function import _as_text
from ._tool import Tool, ToolContext
from ._validate import schema_errors

__all__ = ["ToolRunner"]


@attrs.define(eq=False)
class ToolRunner:
    """Executes tool calls for one run; finished results stay in ``finished`` until the turn
    is recorded, so a cancelled run keeps the results that did arrive."""

    run: RunContext
    hooks: Hooks
    emitter: Emitter | None
    tool_timeout: float | None
    allowed_roots: tuple[Path, ...]
    finished: dict[str, ToolResult] = attrs.field(factory=dict)
    started: list[str] = attrs.field(factory=list)  # a few ids: a list is the lightest

    def forget(self) -> None:
        """Drop the previous turn's bookkeeping."""
        self.finished.clear()
        self.started.clear()

    async def execute(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        """Approve, run and record ``calls``; the results come back in call order."""
        self.forget()
        approved: list[ToolCall | Block] = []
        for call in calls:
            approved.append(await self.hooks.before_tool_call(self.run, call))
        parallel = [
            index
            for index, item in enumerate(approved)
            if not (isinstance(item, ToolCall) and self._is_sequential(item))
        ]
        in_parallel = set(parallel)
        sequential = [index for index in range(len(calls)) if index not in in_parallel]
        results: list[ToolResult | None] = [None] * len(calls)

        async def one(index: int) -> None:
            results[index] = await self._one(calls[index], approved[index])

        if len(parallel) == 1:
            await one(parallel[0])
        elif parallel:
            async with trio.open_nursery() as turn_nursery:
                for index in parallel:
                    turn_nursery.start_soon(one, index)
        for index in sequential:
            await one(index)
        return [result for result in results if result is not None]

    def _is_sequential(self, call: ToolCall) -> bool:
        tool = self.run.tools.get(call.name)
        return bool(getattr(tool, "sequential", False))

    async def _one(self, original: ToolCall, decision: ToolCall | Block) -> ToolResult:
        call = decision if isinstance(decision, ToolCall) else original
        emitter = self.emitter
        if emitter is not None:
            await emitter.emit(ToolStarted, call=call)
        self.started.append(call.id)
        started = trio.current_time()
        content, outcome, error = await self._outcome(call, decision)
        duration = trio.current_time() - started
        result = ToolResult(call_id=call.id, content=_clean(content), is_error=outcome != "ok")
        record = ToolCallRecord(
            id=call.id,
            name=call.name,
            arguments=call.arguments,
            turn=self.run.turn,
            duration=duration,
            outcome=outcome,
            error=error,
        )
        self.finished[call.id] = result
        self.run.tool_calls.append(record)
        if emitter is not None:
            await emitter.emit(ToolFinished, call=call, result=result, record=record)
        return result

    async def _outcome(
        self, call: ToolCall, decision: ToolCall | Block
    ) -> tuple[str, ToolOutcome, str | None]:
        if isinstance(decision, Block):
            message = f"Blocked: {decision.reason}"
            return message, "blocked", message
        tool = self.run.tools.get(call.name)
        if tool is None:
            available = ", ".join(sorted(self.run.tools)) or "none"
            message = f"Unknown tool {call.name!r}. Available tools: {available}."
            return message, "unknown_tool", message
        problems = schema_errors(call.arguments, tool.input_schema)
        if problems:
            message = f"Invalid arguments for tool {call.name!r}: " + "; ".join(problems) + "."
            return message, "invalid_arguments", message
        context = ToolContext(
            working_directory=self.run.working_directory,
            allowed_roots=self.allowed_roots,
            context=self.run.context,
            call=call,
            turn=self.run.turn,
        )
        own = getattr(tool, "timeout", None)
        timeout = own if own is not None else self.tool_timeout
        return await self._bounded(tool, call, context, timeout)

    async def _bounded(
        self, tool: Tool, call: ToolCall, context: ToolContext, limit: float | None
    ) -> tuple[str, ToolOutcome, str | None]:
        """Run the tool in this task, under a deadline of ``limit`` seconds when given.

        At the deadline the tool is cancelled and its cleanup runs to its end (a cleanup it
        shields from cancellation is waited for, as Trio waits for any shielded work)."""
        try:
            if limit is None:
                value = await tool.execute(call.arguments, context)
            else:
                with trio.CancelScope(deadline=trio.current_time() + limit) as scope:
                    value = await tool.execute(call.arguments, context)
                if scope.cancelled_caught:
                    message = f"Tool {call.name!r} timed out after {limit:g}s."
                    if getattr(tool, "runs_in_thread", False):
                        message += " Its worker thread was abandoned and may still be running."
                    return message, "timeout", message
        except Exception as exc:
            message = _describe_failure(call.name, exc)
            return message, ("timeout" if isinstance(exc, ToolTimeout) else "error"), message
        return _as_text(value), "ok", None


def _describe_failure(name: str, error: BaseException) -> str:
    """What the model is told about a tool that raised (a group shows its members)."""
    if isinstance(error, BaseExceptionGroup):
        leaves = _leaves(error)
        if len(leaves) == 1:
            return _describe_failure(name, leaves[0])
        return f"Tool {name!r} failed in {len(leaves)} ways: " + "; ".join(
            f"{type(leaf).__name__}: {leaf}" for leaf in leaves
        )
    if isinstance(error, ToolError):
        return str(error) or f"Tool {name!r} failed."
    return f"Tool {name!r} raised {type(error).__name__}: {error}"


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for member in group.exceptions:
        if isinstance(member, BaseExceptionGroup):
            found.extend(_leaves(member))
        else:
            found.append(member)
    return found


def _clean(text: str) -> str:
    """Replace lone surrogates so the result always encodes as UTF-8 JSON."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text
