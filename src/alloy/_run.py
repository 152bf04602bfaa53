"""The public entry points: ``run``, ``stream`` and ``run_sync``."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Unpack

import trio

from ._config import RunConfig, RunOptions, build_config
from ._emit import Emitter
from ._errors import AlloyError
from ._events import Event, RunCompleted
from ._loop import execute_run
from ._messages import Block, Message
from ._result import Result

__all__ = ["Run", "run", "run_sync", "stream"]

EVENT_BUFFER = 16
"""Events buffered between a run and its consumer; a slower consumer parks the run."""

Prompt = str | Message | Sequence[Block] | None


async def run(
    prompt: Prompt = None,
    *,
    on_event: Callable[[Event], Awaitable[None] | None] | None = None,
    **options: Unpack[RunOptions],
) -> Result:
    """Run the agent loop until the model is done; return the ``Result``.

    ``prompt`` is appended to ``messages`` as a user message. ``on_event`` (sync or async)
    receives every event of the run, exactly as ``alloy.stream`` yields them::

        result = await alloy.run("Read pyproject.toml and tell me the version",
                                 provider=provider, tools=[Read])
        result.text, result.status, result.turns

    Options: ``provider`` (required), ``tools``, ``system_prompt``, ``messages``,
    ``max_turns=25``, ``middleware``, ``working_directory="."``, ``allowed_roots``,
    ``context``, ``tool_timeout=120.0`` (seconds, or None), ``provider_options``, and for
    context compaction ``max_tokens`` (the context budget; derived from the provider's model
    when not given), ``model_overrides`` and ``compaction`` (True, False, ``Compaction(...)``
    or a custom compactor). An unknown option raises ``TypeError``; a bad value raises
    ``alloy.ConfigError``.

    Raises:
        AlloyError: the model call (or a middleware) failed; ``error.result`` holds the
            partial result. Never an ExceptionGroup.
        trio.Cancelled: the caller's cancel scope fired; the run's tools were cancelled and
            their processes killed before this returned. Use ``alloy.stream`` to keep the
            partial result of a cancelled run.
    """
    config = build_config(prompt, **options)
    if on_event is None:
        return await execute_run(config)
    async with _open_stream(config) as handle:
        async for event in handle:
            outcome = on_event(event)
            if inspect.isawaitable(outcome):
                await outcome
    assert handle.result is not None
    return handle.result


def run_sync(prompt: Prompt = None, **options: Any) -> Result:
    """``alloy.run`` for scripts: starts Trio, runs, returns the ``Result``.

    >>> result = alloy.run_sync("Summarise README.md", provider=provider, tools=[Read])
    """

    async def main() -> Result:
        return await run(prompt, **options)

    return trio.run(main)


def stream(
    prompt: Prompt = None, **options: Unpack[RunOptions]
) -> AbstractAsyncContextManager[Run]:
    """Run the agent loop and yield its events as they happen.

    An async context manager (never a bare async generator)::

        async with alloy.stream("Explain OTP", provider=provider) as run:
            async for event in run:
                match event:
                    case alloy.TextDelta(text=text):
                        print(text, end="")
                    case alloy.ToolStarted(call=call):
                        print(f"[{call.name}]")
        print(run.result.status)

    Leaving the block early (``break``, an exception, cancellation) cancels the run: its tools
    are cancelled and their processes killed before the block exits. ``run.result`` then holds
    the partial result (status ``cancelled``), with the text streamed so far and a result for
    every tool call, ready to resume with ``messages=run.result.messages``. A failed run raises
    one ``AlloyError`` from the ``async for`` (or from the block's exit if you stopped reading).
    Options are those of ``alloy.run``.
    """
    return _open_stream(build_config(prompt, **options))


class Run:
    """A streamed run: iterate it for events; ``result`` is set once it has ended.

    >>> async with alloy.stream("hi", provider=provider) as run:
    ...     async for event in run: ...
    >>> run.result.status
    'completed'
    """

    __slots__ = ("_error", "_error_seen", "_receive", "result")

    def __init__(self, receive: trio.MemoryReceiveChannel[Event]) -> None:
        self._receive = receive
        self._error: AlloyError | None = None
        self._error_seen = False
        self.result: Result | None = None

    def _finish(self, result: Result | None, error: AlloyError | None = None) -> None:
        """Record how the run ended (``error`` is raised by iteration or at block exit)."""
        self.result = result
        self._error = error

    def _raise_unseen(self) -> None:
        """Raise the run's error if the consumer has not seen it yet."""
        if self._error is not None and not self._error_seen:
            self._error_seen = True
            raise self._error

    def __aiter__(self) -> Run:
        return self

    async def __anext__(self) -> Event:
        # Take what is already buffered without a trip through the scheduler (one wake-up per
        # batch of events, not per event); only wait when the buffer is empty. Cancellation is
        # still honoured on every call. The buffer is bounded, so this never runs unboundedly
        # without yielding.
        try:
            event = self._receive.receive_nowait()
        except trio.WouldBlock:
            try:
                return await self._receive.receive()
            except trio.EndOfChannel:
                pass
        except trio.EndOfChannel:
            await trio.lowlevel.checkpoint()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
            return event
        self._raise_unseen()
        raise StopAsyncIteration


@asynccontextmanager
async def _open_stream(config: RunConfig) -> AsyncIterator[Run]:
    send, receive = trio.open_memory_channel[Event](EVENT_BUFFER)
    handle = Run(receive)

    def keep_partial(result: Result) -> None:
        handle.result = result

    async def produce() -> None:
        with send:
            emitter = Emitter(send)
            try:
                result = await execute_run(config, emitter, keep_partial)
            except AlloyError as exc:
                handle._finish(exc.result, exc)
                return
            handle._finish(result)
            await emitter.emit(RunCompleted, result=result)

    body_error: BaseException | None = None
    with receive:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce)
                try:
                    yield handle
                except BaseException as exc:
                    # Re-raised below, bare: a nursery would wrap it in an ExceptionGroup.
                    body_error = exc
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            bare = _sole(group)
            raise bare from bare.__cause__
    if body_error is not None:
        raise body_error
    handle._raise_unseen()


def _sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside nested single-member groups, or the group itself."""
    current: BaseException = group
    while isinstance(current, BaseExceptionGroup) and len(current.exceptions) == 1:
        current = current.exceptions[0]
    return current
