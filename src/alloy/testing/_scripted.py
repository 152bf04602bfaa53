"""Providers that answer from a script or a Python function, streaming like a real model."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import attrs
import trio

from .._errors import AlloyError, ProviderError, ScriptExhausted
from .._events import TextDelta, ThinkingDelta, ToolCallDelta, ToolCallStarted
from .._messages import Block, Message, Text, Thinking, ToolCall, Usage
from .._provider import Completion, DeltaSink, Request, StopReason

__all__ = [
    "Fail",
    "FunctionProvider",
    "Reply",
    "ScriptedProvider",
    "call",
    "delay",
    "error",
    "reply",
    "text",
    "tool_call",
]

DEFAULT_USAGE = Usage(input_tokens=10, output_tokens=5)
_WORDS = re.compile(r"\S+\s*|\s+")


@attrs.frozen(kw_only=True)
class Reply:
    """One scripted model reply. Build it with ``text``, ``tool_call`` or ``reply``.

    >>> Reply(blocks=(Text("hi"),), stop_reason=StopReason.END_TURN)   # text("hi") is the same
    """

    blocks: tuple[Block, ...]
    stop_reason: StopReason = StopReason.END_TURN
    usage: Usage = DEFAULT_USAGE
    delay: float = 0.0


@attrs.frozen(kw_only=True)
class Fail:
    """A scripted failure: the provider raises ``error`` (after ``delay`` seconds).

    >>> Fail(error=alloy.RateLimitError("slow down", retryable=True))   # or error("...")
    """

    error: AlloyError
    delay: float = 0.0


ScriptItem = Reply | Fail


def reply(
    *blocks: Block | str,
    stop_reason: StopReason | str | None = None,
    usage: Usage = DEFAULT_USAGE,
) -> Reply:
    """A reply of any blocks; strings become ``Text``. The stop reason defaults to
    ``tool_use`` when there are tool calls, else ``end_turn``.

    >>> reply(Thinking("hmm", signature="sig"), "Let me look.", call("read", {"path": "a"}))
    """
    content = tuple(Text(b) if isinstance(b, str) else b for b in blocks)
    if stop_reason is None:
        has_calls = any(isinstance(b, ToolCall) for b in content)
        stop_reason = StopReason.TOOL_USE if has_calls else StopReason.END_TURN
    return Reply(blocks=content, stop_reason=StopReason(stop_reason), usage=usage)


def text(
    content: str,
    *,
    thinking: str | None = None,
    stop_reason: StopReason | str = StopReason.END_TURN,
    usage: Usage = DEFAULT_USAGE,
) -> Reply:
    """A text reply (optionally after some visible thinking).

    >>> text("The version is 0.1.0")
    >>> text("It was cut off mid-sen", stop_reason="max_tokens")
    """
    blocks: list[Block] = []
    if thinking is not None:
        blocks.append(Thinking(thinking, signature="scripted-signature"))
    blocks.append(Text(content))
    return Reply(blocks=tuple(blocks), stop_reason=StopReason(stop_reason), usage=usage)


def call(
    name: str, arguments: Mapping[str, Any] | None = None, *, id: str | None = None
) -> ToolCall:
    """A tool call block for ``reply``; without ``id`` the provider numbers it (call_1, ...).

    >>> reply(call("read", {"path": "a.txt"}), call("bash", {"command": "ls"}))
    """
    return ToolCall(id=id or "", name=name, arguments=dict(arguments or {}))


def tool_call(
    name: str,
    arguments: Mapping[str, Any] | None = None,
    *,
    id: str | None = None,
    text: str | None = None,
    usage: Usage = DEFAULT_USAGE,
) -> Reply:
    """A reply that calls one tool (optionally after some text).

    >>> tool_call("read", {"path": "pyproject.toml"})
    """
    blocks: list[Block] = [] if text is None else [Text(text)]
    blocks.append(call(name, arguments, id=id))
    return Reply(blocks=tuple(blocks), stop_reason=StopReason.TOOL_USE, usage=usage)


def error(failure: AlloyError | str, *, retryable: bool = False) -> Fail:
    """A scripted failure; a string becomes a ``ProviderError``.

    >>> error("rate limited", retryable=True)
    """
    if isinstance(failure, str):
        failure = ProviderError(failure, provider="scripted", retryable=retryable)
    return Fail(error=failure)


def delay(seconds: float, item: ScriptItem) -> ScriptItem:
    """The same reply or failure, after ``seconds`` (use Trio's MockClock in tests).

    >>> delay(2.0, text("slow answer"))
    """
    return attrs.evolve(item, delay=seconds)


class CallNumbering:
    """Gives tool calls without an id the ids ``call_1``, ``call_2``... across a script."""

    def __init__(self) -> None:
        self._count = 0

    def __call__(self, reply: Reply) -> Reply:
        blocks: list[Block] = []
        for block in reply.blocks:
            if isinstance(block, ToolCall) and not block.id:
                self._count += 1
                block = ToolCall(
                    id=f"call_{self._count}", name=block.name, arguments=block.arguments
                )
            blocks.append(block)
        return attrs.evolve(reply, blocks=tuple(blocks))


class _Streamer:
    """Shared by both providers: number calls, record requests, stream a reply as deltas."""

    def __init__(self, chunk_size: int | None, delta_delay: float) -> None:
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.requests: list[Request] = []
        self._chunk_size = chunk_size
        self._delta_delay = delta_delay
        self._number = CallNumbering()

    def _chunks(self, content: str) -> list[str]:
        if self._chunk_size is None:
            return _WORDS.findall(content)
        size = self._chunk_size
        return [content[i : i + size] for i in range(0, len(content), size)]

    async def _deliver(self, item: Reply, deltas: DeltaSink | None) -> Completion:
        if item.delay:
            await trio.sleep(item.delay)
        if deltas is not None:
            index = 0
            for block in item.blocks:
                if isinstance(block, Text):
                    for piece in self._chunks(block.text):
                        await self._pause()
                        await deltas.send(TextDelta(text=piece))
                elif isinstance(block, Thinking):
                    for piece in self._chunks(block.text):
                        await self._pause()
                        await deltas.send(ThinkingDelta(text=piece))
                elif isinstance(block, ToolCall):
                    await self._pause()
                    await deltas.send(ToolCallStarted(index=index, id=block.id, name=block.name))
                    encoded = json.dumps(dict(block.arguments), ensure_ascii=False)
                    for start in range(0, len(encoded), 16):
                        await self._pause()
                        await deltas.send(
                            ToolCallDelta(index=index, arguments=encoded[start : start + 16])
                        )
                    index += 1
        return Completion(
            message=Message("assistant", item.blocks),
            stop_reason=item.stop_reason,
            usage=item.usage,
            model="scripted",
        )

    async def _pause(self) -> None:
        if self._delta_delay:
            await trio.sleep(self._delta_delay)
        else:
            await trio.lowlevel.checkpoint()


class ScriptedProvider(_Streamer):
    """A provider that plays a script of replies in order and records every request.

    It streams text in word-sized deltas (``chunk_size`` characters if given, with
    ``delta_delay`` seconds between deltas), tool calls as a start and argument fragments::

        provider = ScriptedProvider([
            tool_call("read", {"path": "pyproject.toml"}),
            delay(1.0, text("The version is 0.1.0")),
        ])
        result = await alloy.run("Version?", provider=provider, tools=[Read])
        provider.requests[0].messages   # what the model was sent
        provider.remaining              # 0

    A request after the script ran out raises ``alloy.ScriptExhausted``.
    """

    name = "scripted"

    def __init__(
        self,
        script: Iterable[ScriptItem],
        *,
        chunk_size: int | None = None,
        delta_delay: float = 0.0,
    ) -> None:
        super().__init__(chunk_size, delta_delay)
        self._script = list(script)
        for index, item in enumerate(self._script):
            if not isinstance(item, Reply | Fail):
                raise TypeError(
                    f"script[{index}] is {item!r}; use text(), tool_call(), reply(), error() or delay()"
                )
        self._next = 0

    @property
    def remaining(self) -> int:
        """How many scripted items have not been played yet."""
        return len(self._script) - self._next

    async def complete(self, request: Request) -> Completion:
        """Play the next scripted item."""
        return await self._play(request, None)

    async def stream(self, request: Request, deltas: DeltaSink) -> Completion:
        """Play the next scripted item, streaming it into ``deltas``."""
        return await self._play(request, deltas)

    async def _play(self, request: Request, deltas: DeltaSink | None) -> Completion:
        self.requests.append(request)
        if self._next >= len(self._script):
            raise ScriptExhausted(
                f"ScriptedProvider has no reply left for request {len(self.requests)} "
                f"(the script had {len(self._script)})",
                provider=self.name,
            )
        item = self._script[self._next]
        self._next += 1
        if isinstance(item, Fail):
            if item.delay:
                await trio.sleep(item.delay)
            raise item.error
        return await self._deliver(self._number(item), deltas)


FunctionReply = Reply | Completion | str


class FunctionProvider(_Streamer):
    """A provider whose replies come from a function of the request (sync or async).

    The function returns a ``Reply`` (``text(...)``, ``tool_call(...)``), a ``Completion``, or
    a plain string::

        def model(request: alloy.Request) -> Reply:
            if not request.messages[-1].tool_results:
                return tool_call("read", {"path": "notes.txt"})
            return text(f"The file says: {request.messages[-1].tool_results[0].content}")

        provider = FunctionProvider(model)
    """

    name = "function"

    def __init__(
        self,
        function: Callable[[Request], FunctionReply | Awaitable[FunctionReply]],
        *,
        chunk_size: int | None = None,
        delta_delay: float = 0.0,
    ) -> None:
        super().__init__(chunk_size, delta_delay)
        self._function = function

    async def complete(self, request: Request) -> Completion:
        """Ask the function for a reply."""
        return await self._play(request, None)

    async def stream(self, request: Request, deltas: DeltaSink) -> Completion:
        """Ask the function for a reply and stream it into ``deltas``."""
        return await self._play(request, deltas)

    async def _play(self, request: Request, deltas: DeltaSink | None) -> Completion:
        self.requests.append(request)
        outcome = self._function(request)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if isinstance(outcome, str):
            outcome = text(outcome)
        if isinstance(outcome, Completion):
            outcome = Reply(
                blocks=outcome.message.content, stop_reason=outcome.stop_reason, usage=outcome.usage
            )
        if not isinstance(outcome, Reply):
            raise TypeError(
                f"the FunctionProvider function returned {outcome!r}; return text(...), "
                "tool_call(...), reply(...), a Completion or a string"
            )
        return await self._deliver(self._number(outcome), deltas)
