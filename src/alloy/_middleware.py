"""Middleware: hooks that watch and steer a run.

A middleware is any object with some of the hook methods below (subclass ``Middleware`` for
the no-op defaults and type hints). Hooks may be sync or async. They run in list order, share
the live ``RunContext``, and may return ``Halt(reason)`` to stop the run; ``before_tool_call``
may also return ``Block(reason)`` or ``ReplaceArguments(arguments)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ._errors import AlloyError, ConfigError, MiddlewareError
from ._messages import Message, ToolCall, ToolResult, Usage

if TYPE_CHECKING:
    from ._events import Compacted
    from ._provider import Completion, Provider, StopReason
    from ._result import Result, ToolCallRecord
    from ._tools._tool import Tool

__all__ = [
    "Block",
    "Halt",
    "HookResult",
    "Middleware",
    "ReplaceArguments",
    "RunContext",
]

HOOKS = (
    "session_start",
    "after_compaction",
    "before_completion",
    "after_tool_request",
    "before_tool_call",
    "after_tool_execution",
    "after_completion",
    "on_error",
    "session_end",
)


@attrs.frozen
class Halt:
    """Return from any hook to stop the run with status ``"halted"`` and this reason.

    >>> def before_completion(self, run):
    ...     if run.usage.total_tokens > 100_000:
    ...         return alloy.Halt("token budget spent")
    """

    reason: str


@attrs.frozen
class Block:
    """Return from ``before_tool_call`` to refuse one call; the model sees the reason.

    >>> def before_tool_call(self, run, call):
    ...     if call.name == "bash" and "rm -rf" in call.arguments["command"]:
    ...         return alloy.Block("destructive commands need approval")
    """

    reason: str


@attrs.frozen
class ReplaceArguments:
    """Return from ``before_tool_call`` to run the call with other arguments.

    >>> def before_tool_call(self, run, call):
    ...     return alloy.ReplaceArguments({**call.arguments, "timeout": 10})
    """

    arguments: Mapping[str, Any]


HookResult = Halt | Block | ReplaceArguments | None


@attrs.define(kw_only=True, eq=False)
class RunContext:
    """The live state of one run, shared by every hook.

    Hooks may change ``messages`` (before a model call), ``system_prompt`` and ``context``;
    later hooks and the next model call see the change::

        class Remember(alloy.Middleware):
            def before_completion(self, run):
                run.system_prompt = f"{run.system_prompt}\\nToday is {date.today()}."
    """

    provider: Provider
    messages: list[Message]
    system_prompt: str | None
    tools: Mapping[str, Tool]
    context: Any
    working_directory: Path
    turn: int = 0
    usage: Usage = Usage()
    tool_calls: list[ToolCallRecord] = attrs.field(factory=list)
    stop_reason: StopReason | None = None
    status: str = "running"
    reason: str | None = None


class Middleware:
    """Base class with a no-op for every hook; override the ones you need.

    Order within a turn: (``after_compaction`` when the history was compacted) →
    ``before_completion`` → model call → ``after_tool_request`` →
    ``before_tool_call`` (per call, before any runs) → tools → ``after_tool_execution``; the
    last model call is followed by ``after_completion``. ``session_start`` and ``session_end``
    wrap the run; ``on_error`` sees a failed model call (return ``Halt`` to end the run quietly
    instead of raising)::

        class Audit(alloy.Middleware):
            async def after_tool_execution(self, run, results):
                await log.write([r.content for r in results])
    """

    def session_start(self, run: RunContext) -> Any:
        """The run begins, before its first model call."""

    def after_compaction(self, run: RunContext, compaction: Compacted) -> Any:
        """The conversation was just compacted (before a model call, before
        ``before_completion``); ``run.messages`` holds the compacted history."""

    def before_completion(self, run: RunContext) -> Any:
        """Before each model call."""

    def after_tool_request(self, run: RunContext, calls: Sequence[ToolCall]) -> Any:
        """The model asked for tool calls, before any is approved or run."""

    def before_tool_call(self, run: RunContext, call: ToolCall) -> Any:
        """Once per call, in order, before any call of the turn runs: allow, block, rewrite."""

    def after_tool_execution(self, run: RunContext, results: Sequence[ToolResult]) -> Any:
        """The turn's tool results were added to the conversation."""

    def after_completion(self, run: RunContext, completion: Completion) -> Any:
        """The model gave its final answer (a reply without tool calls)."""

    def on_error(self, run: RunContext, error: AlloyError) -> Any:
        """A model call failed."""

    def session_end(self, run: RunContext, result: Result) -> Any:
        """The run is over (``Halt`` is ignored here)."""


class HaltRun(Exception):
    """Raised inside the loop when a hook halted the run."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_NO_HOOKS: dict[str, list[Callable[..., Any]]] = {name: [] for name in HOOKS}
"""Shared by every run without middleware (never modified)."""


class Hooks:
    """The run's middleware, ready to call: one bound-method list per hook."""

    __slots__ = ("_hooks",)

    def __init__(self, middleware: Sequence[object]) -> None:
        if not middleware:
            self._hooks = _NO_HOOKS
            return
        hooks: dict[str, list[Callable[..., Any]]] = {name: [] for name in HOOKS}
        base = {name: getattr(Middleware, name) for name in HOOKS}
        for item in middleware:
            for name in HOOKS:
                method = getattr(item, name, None)
                if method is None or getattr(type(item), name, None) is base[name]:
                    continue
                if not callable(method):
                    raise ConfigError(f"middleware {item!r}: {name} is not callable")
                hooks[name].append(method)
        self._hooks = hooks

    def __bool__(self) -> bool:
        return any(self._hooks.values())

    def has(self, name: str) -> bool:
        """Whether any middleware implements the hook ``name``."""
        return bool(self._hooks[name])

    async def run(self, name: str, *args: Any) -> None:
        """Call every implementation of hook ``name``; raise ``HaltRun`` on ``Halt``."""
        for method in self._hooks[name]:
            outcome = await _call(name, method, args)
            if outcome is None:
                continue
            if isinstance(outcome, Halt):
                if name == "session_end":
                    continue
                raise HaltRun(outcome.reason)
            raise MiddlewareError(
                f"{_label(method)}.{name} returned {outcome!r}; it may return None or "
                "alloy.Halt(reason) (Block and ReplaceArguments only from before_tool_call)",
                hook=name,
            )

    async def before_tool_call(self, run: RunContext, call: ToolCall) -> ToolCall | Block:
        """The call to run (maybe with replaced arguments), or a ``Block``."""
        for method in self._hooks["before_tool_call"]:
            outcome = await _call("before_tool_call", method, (run, call))
            if outcome is None:
                continue
            if isinstance(outcome, Halt):
                raise HaltRun(outcome.reason)
            if isinstance(outcome, Block):
                return outcome
            if isinstance(outcome, ReplaceArguments):
                call = ToolCall(id=call.id, name=call.name, arguments=dict(outcome.arguments))
                continue
            raise MiddlewareError(
                f"{_label(method)}.before_tool_call returned {outcome!r}; it may return None, "
                "alloy.Halt, alloy.Block or alloy.ReplaceArguments",
                hook="before_tool_call",
            )
        return call


def _label(method: Callable[..., Any]) -> str:
    owner = getattr(method, "__self__", None)
    return type(owner).__name__ if owner is not None else getattr(method, "__qualname__", "hook")


async def _call(name: str, method: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    try:
        outcome = method(*args)
        if inspect.isawaitable(outcome):
            outcome = await outcome
    except (HaltRun, AlloyError):
        raise
    except Exception as exc:
        raise MiddlewareError(
            f"{_label(method)}.{name} raised {type(exc).__name__}: {exc}", hook=name
        ) from exc
    return outcome
