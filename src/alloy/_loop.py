"""One run: model turn, then the turn's tools in parallel, until the model is done.

Everything happens in the caller's task (parallel tool calls in a nursery of the turn), so
nothing outlives the run.
A run ends in exactly one of three ways: it returns a ``Result``; it raises one bare
``AlloyError`` carrying the partial ``Result``; or it is cancelled, after recording a partial
``Result`` (status ``cancelled``) in which every tool call has a result.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable

import trio

from ._compaction import CompactionStep
from ._config import RunConfig
from ._emit import Emitter
from ._errors import AlloyError, ContextLengthExceeded, ProviderError
from ._events import TurnCompleted
from ._messages import Message, Text, ToolCall, ToolResult
from ._middleware import HaltRun, Hooks, RunContext
from ._provider import Completion, Request, StopReason, provider_name
from ._result import Result, Status, ToolCallRecord, ToolOutcome
from ._tools._executor import ToolRunner

__all__ = ["execute_run", "is_cancellation"]

_NOT_RUN = {
    StopReason.MAX_TOKENS: (
        "Not run: the reply was cut off at the output token limit, so this call may be "
        "incomplete. Try again with a shorter reply."
    ),
    StopReason.REFUSAL: "Not run: the reply ended in a refusal.",
}
"""Stop reasons whose tool calls are answered with an error instead of being run."""

SESSION_END_GRACE = 5.0
"""Seconds ``session_end`` hooks get to run after the run was cancelled."""


async def execute_run(
    config: RunConfig,
    emitter: Emitter | None = None,
    on_partial: Callable[[Result], None] | None = None,
    messages: list[Message] | None = None,
) -> Result:
    """Run the loop. On cancellation, ``on_partial`` receives the partial result first.
    ``messages`` replaces ``config.messages`` (an agent's history plus its new prompt); the run
    takes the list over."""
    run = RunContext(
        provider=config.provider,
        messages=list(config.messages) if messages is None else messages,
        system_prompt=config.system_prompt,
        tools=config.tools,
        context=config.context,
        working_directory=config.working_directory,
    )
    hooks = config.hooks
    session_hooks = config.session_hooks
    failure: AlloyError | None = None
    runner = ToolRunner(
        run=run,
        hooks=hooks,
        emitter=emitter,
        tool_timeout=config.tool_timeout,
        allowed_roots=config.allowed_roots,
    )
    try:
        await _drive(run, config, hooks, runner, emitter)
    except HaltRun as halt:
        _close_open_calls(run, runner, "not_run", f"Not run: the run was halted ({halt.reason}).")
        run.status, run.reason = Status.HALTED, halt.reason
    except AlloyError as exc:
        failure = exc
        _keep_streamed_text(run, emitter)
        _close_open_calls(run, runner, "not_run", f"Not run: the run failed ({exc}).")
        run.status, run.reason = Status.ERROR, str(exc)
    except BaseException as exc:
        if not is_cancellation(exc):
            raise
        _record_cancellation(run, runner, emitter)
        if on_partial is not None:
            on_partial(_result(run))
        with trio.move_on_after(SESSION_END_GRACE, shield=True):
            try:
                if session_hooks:
                    await _session_end(hooks, run)
            except AlloyError as hook_error:
                # The cancellation must go on; say what failed instead of raising it.
                warnings.warn(
                    f"session_end failed while the run was cancelled: {hook_error}",
                    RuntimeWarning,
                    stacklevel=1,
                )
        raise
    try:
        if failure is not None and hooks.has("on_error") and isinstance(failure, ProviderError):
            try:
                await hooks.run("on_error", run, failure)
            except HaltRun as halt:
                run.status, run.reason = Status.HALTED, halt.reason
                failure = None
        if failure is not None:
            failure.result = _result(run)
            if session_hooks:
                await _session_end(hooks, run)
            raise failure
        result = _result(run)
        if session_hooks:
            await _session_end(hooks, run)
    except AlloyError as exc:
        # A failing on_error or session_end hook: the error still carries the partial result.
        if exc.result is None:
            if run.status not in (Status.ERROR, Status.HALTED):
                run.status, run.reason = Status.ERROR, str(exc)
            exc.result = _result(run)
        raise
    return result


async def _drive(
    run: RunContext, config: RunConfig, hooks: Hooks, runner: ToolRunner, emitter: Emitter | None
) -> None:
    if config.session_hooks:
        await hooks.run("session_start", run)
    compaction = CompactionStep.of(config)
    retried = False  # a turn refused as too long is retried once, after forced compaction
    while True:
        if run.turn >= config.max_turns:
            run.status = Status.MAX_TURNS
            return
        if compaction is not None:  # before_completion sees the compacted history
            await compaction.before_turn(run, hooks, emitter)
        await hooks.run("before_completion", run)
        if compaction is not None:
            compaction.sending(run, unchanged=not hooks.has("before_completion"))
        try:
            completion = await _model_call(run, config, emitter)
        except ContextLengthExceeded as exc:
            if compaction is None or retried:
                raise
            if not await compaction.overflowed(run, hooks, emitter, exc):
                raise
            retried = True
            continue
        except AlloyError:
            raise
        except Exception as exc:
            name = provider_name(config.provider)
            raise ProviderError(
                f"{name} raised {type(exc).__name__}: {exc}", provider=name
            ) from exc
        if not isinstance(completion, Completion) or completion.message.role != "assistant":
            name = provider_name(config.provider)
            raise ProviderError(
                f"{name} returned {completion!r}; expected an alloy.Completion with an assistant "
                "message",
                provider=name,
            )
        retried = False
        if compaction is not None:
            compaction.observe(completion.usage)
        run.turn += 1
        run.usage = run.usage + completion.usage
        run.stop_reason = completion.stop_reason
        run.messages.append(completion.message)
        if emitter is not None:
            await emitter.emit(
                TurnCompleted,
                message=completion.message,
                stop_reason=completion.stop_reason,
                usage=completion.usage,
                request_id=completion.request_id,
                rate_limits=completion.rate_limits,
            )
        calls = completion.message.tool_calls
        runner.forget()  # results of earlier turns never answer this turn's calls
        if calls:
            if completion.stop_reason in _NOT_RUN:
                results = _close_open_calls(
                    run, runner, "not_run", _NOT_RUN[completion.stop_reason]
                )
            else:
                await hooks.run("after_tool_request", run, calls)
                results = await runner.execute(calls)
                run.messages.append(Message.user(results))
            await hooks.run("after_tool_execution", run, results)
            continue
        if completion.stop_reason == StopReason.PAUSE_TURN:
            continue
        await hooks.run("after_completion", run, completion)
        run.status = Status.COMPLETED
        return


def _model_call(
    run: RunContext, config: RunConfig, emitter: Emitter | None
) -> Awaitable[Completion]:
    """The turn's model call, to be awaited by ``_drive`` (so it has no frame of its own while
    the reply is awaited): streamed when there is a listener and the provider can stream."""
    provider = config.provider
    request = Request(
        messages=tuple(run.messages),
        system_prompt=run.system_prompt,
        tools=config.tool_specs,
        options=config.provider_options,
    )
    if emitter is not None:
        emitter.begin_turn(run.turn + 1)
        stream = getattr(provider, "stream", None)
        if stream is not None:
            return stream(request, emitter)  # type: ignore[no-any-return]
    return provider.complete(request)


def is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is ``trio.Cancelled``, bare or in a group of nothing else."""
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        return rest is None
    return False


def _open_calls(run: RunContext) -> tuple[ToolCall, ...]:
    """The tool calls of the last assistant message, if the conversation ends with it."""
    if run.messages and run.messages[-1].role == "assistant":
        return run.messages[-1].tool_calls
    return ()


def _close_open_calls(
    run: RunContext, runner: ToolRunner, outcome: ToolOutcome, note: str
) -> list[ToolResult]:
    """Give every unanswered call of the last assistant message a result, so the transcript
    stays valid for the next request; calls that did finish keep their real result."""
    calls = _open_calls(run)
    if not calls:
        return []
    results: list[ToolResult] = []
    for call in calls:
        result = runner.finished.get(call.id)
        if result is None:
            text = note
            tool = run.tools.get(call.name)
            if call.id in runner.started and getattr(tool, "runs_in_thread", False):
                text += " Its worker thread was abandoned and may still be running."
            result = ToolResult(call_id=call.id, content=text, is_error=True)
            run.tool_calls.append(
                ToolCallRecord(
                    id=call.id,
                    name=call.name,
                    arguments=call.arguments,
                    turn=run.turn,
                    duration=0.0,
                    outcome=outcome,
                    error=text,
                )
            )
        results.append(result)
    run.messages.append(Message.user(results))
    return results


def _keep_streamed_text(run: RunContext, emitter: Emitter | None) -> None:
    """The model call of this turn ended early (cancelled, failed): keep the text it streamed."""
    if emitter is not None and run.turn < emitter.turn:
        partial = emitter.partial_text()
        if partial:
            run.messages.append(Message.assistant((Text(partial),)))


def _record_cancellation(run: RunContext, runner: ToolRunner, emitter: Emitter | None) -> None:
    _keep_streamed_text(run, emitter)
    _close_open_calls(
        run, runner, "cancelled", "Cancelled: the run was cancelled before this call finished."
    )
    run.status, run.reason = Status.CANCELLED, "cancelled"


def _result(run: RunContext) -> Result:
    return Result(
        status=Status(run.status),
        messages=tuple(run.messages),
        usage=run.usage,
        turns=run.turn,
        tool_calls=tuple(run.tool_calls),
        stop_reason=run.stop_reason,
        reason=run.reason,
    )


async def _session_end(hooks: Hooks, run: RunContext) -> None:
    if hooks.has("session_end"):
        await hooks.run("session_end", run, _result(run))
