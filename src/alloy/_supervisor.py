"""Supervision: restart crashed children (agents or any task) by policy, OTP style.

A supervisor is a nursery. Each child incarnation runs in its own task under its own cancel
scope; the task catches ``Exception`` (never ``BaseException``: ``Cancelled`` and
``KeyboardInterrupt`` pass) and reports the exit to one control task, which applies the
child's restart policy and the supervisor's strategy, one exit at a time:

- restart ``"permanent"``: always restarted; ``"transient"``: restarted only after a crash
  (an exception), not after a normal return; ``"temporary"``: never restarted.
- strategy ``"one_for_one"``: only the child that exited is restarted; its siblings never
  notice. ``"one_for_all"``: every other child is stopped (in reverse start order) and all are
  restarted in start order. ``"rest_for_one"``: the children started after it are stopped and
  restarted with it. A temporary sibling that is stopped this way is not restarted.
- intensity: at most ``max_restarts`` restarts within any ``max_seconds`` (timed with
  ``trio.current_time()``, so ``MockClock`` works). A restart is counted when it is decided;
  the one that would exceed the limit instead stops every child and raises
  ``RestartIntensityExceeded`` (bare, ``__cause__`` = the child's exception) out of the
  ``async with`` block.

Restarts make a new agent with a new request queue, so address agents through the supervisor:
``sup.agent(name)`` returns a handle that follows the restarts. A restart begins from the
child's start options (the conversation does not survive a crash).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeAlias, Unpack

import attrs
import trio

from ._agent import Agent, AgentOptions, _bare, _prepare
from ._errors import AlloyError, ConfigError

__all__ = [
    "ChildSpec",
    "Restart",
    "RestartIntensityExceeded",
    "Strategy",
    "Supervisor",
    "open_supervisor",
]

Restart: TypeAlias = Literal["permanent", "transient", "temporary"]
"""When a child is restarted: ``"permanent"`` always, ``"transient"`` after a crash only,
``"temporary"`` never. ``ChildSpec(name="w", start=worker, restart="transient")``."""

Strategy: TypeAlias = Literal["one_for_one", "one_for_all", "rest_for_one"]
"""Which children restart with the one that exited: itself, all, or itself and the later
ones. ``alloy.open_supervisor(strategy="rest_for_one")``."""

_RESTARTS = ("permanent", "transient", "temporary")
_STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")


class RestartIntensityExceeded(AlloyError):
    """A child needed more than ``max_restarts`` restarts within ``max_seconds``.

    The supervisor stopped every child and raised this from its ``async with`` block;
    ``child`` names the child whose exit was one too many, ``__cause__`` is its exception::

        try:
            async with alloy.open_supervisor(max_restarts=3, max_seconds=5) as sup:
                ...
        except alloy.RestartIntensityExceeded as exc:
            log.error("%s keeps crashing: %r", exc.child, exc.__cause__)
    """

    def __init__(self, message: str, *, child: str, max_restarts: int, max_seconds: float) -> None:
        super().__init__(message)
        self.child = child
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds


@attrs.frozen(kw_only=True)
class ChildSpec:
    """How to start (and restart) one child of a supervisor.

    ``start`` is called like ``nursery.start`` calls a function: with ``task_status=``, and
    it must call ``task_status.started(value)`` once it is ready (``start_child`` returns
    ``value``; an exception before that is a failed start). For agents use
    ``ChildSpec.agent``::

        async def ticker(*, task_status=trio.TASK_STATUS_IGNORED):
            task_status.started()
            while True:
                await trio.sleep(1)
                bus.publish("ticks", trio.current_time())

        specs = [alloy.ChildSpec(name="ticker", start=ticker, restart="permanent"),
                 alloy.ChildSpec.agent("coder", provider=p, tools=[Read, Edit])]
        async with alloy.open_supervisor(children=specs) as sup:
            await sup.agent("coder").chat("hi")
    """

    name: str
    start: Callable[..., Awaitable[Any]]
    restart: Restart = "permanent"
    handle: Agent | None = None
    """The agent this spec starts (set by ``ChildSpec.agent``)."""

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a child's name must be a non-empty string, got {self.name!r}")
        if self.restart not in _RESTARTS:
            raise ConfigError(
                f"restart must be 'permanent', 'transient' or 'temporary', got {self.restart!r}"
            )
        if not callable(self.start):
            raise ConfigError(f"start must be an async function, got {self.start!r}")

    @classmethod
    def agent(
        cls, name: str, *, restart: Restart = "permanent", **options: Unpack[AgentOptions]
    ) -> ChildSpec:
        """A child that is an ``alloy.Agent``; the options are those of ``Agent.start``.

        Options are checked here. Every restart begins from them (same session id, initial
        history, provider)::

            spec = alloy.ChildSpec.agent("coder", provider=p, max_pending=4)
            await sup.start_child(spec)
            sup.agent("coder") is spec.handle    # True
        """
        prepared = _prepare(options, name)
        handle = Agent(prepared)

        async def start(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
            await handle._incarnate(prepared, task_status=task_status)

        return cls(name=name, start=start, restart=restart, handle=handle)


@attrs.define(eq=False)
class _Child:
    spec: ChildSpec
    incarnation: _Incarnation | None = None
    value: Any = None


@attrs.define(eq=False)
class _Incarnation:
    child: _Child
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    done: trio.Event = attrs.field(factory=trio.Event)
    started: bool = False
    stopping: bool = False
    error: Exception | None = None


class _Status:
    """The ``task_status`` handed to a child: remembers whether it started."""

    __slots__ = ("_incarnation", "_status")

    def __init__(self, status: trio.TaskStatus[Any], incarnation: _Incarnation) -> None:
        self._status = status
        self._incarnation = incarnation

    def started(self, value: Any = None) -> None:
        self._status.started(value)
        self._incarnation.started = True


class Supervisor:
    """A running supervisor; get one from ``alloy.open_supervisor``.

    ::

        async with alloy.open_supervisor(strategy="one_for_one", max_restarts=3,
                                         max_seconds=5) as sup:
            coder = await sup.start_agent("coder", provider=p, tools=[Read, Edit])
            await sup.agent("coder").chat("What does this project do?")
    """

    def __init__(self, strategy: Strategy, max_restarts: int, max_seconds: float) -> None:
        self.strategy: Strategy = strategy
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self.restarts = 0
        """Restarts so far (each child restarted counts once per decision)."""
        self._children: dict[str, _Child] = {}
        self._recent: list[float] = []
        self._lock = trio.Lock()
        self._closing = False
        self._nursery: trio.Nursery | None = None
        self._exits_send, self._exits_receive = trio.open_memory_channel[_Incarnation](math.inf)

    # -- public API --

    @property
    def children(self) -> tuple[str, ...]:
        """The children's names, in start order.

        >>> sup.children
        ('ticker', 'coder')
        """
        return tuple(self._children)

    async def start_child(self, spec: ChildSpec) -> Any:
        """Start a child and return what it passed to ``task_status.started``.

        A failed start raises here and the child is not added (no restart)::

            await sup.start_child(alloy.ChildSpec(name="ticker", start=ticker))
        """
        if not isinstance(spec, ChildSpec):
            raise ConfigError(f"start_child needs an alloy.ChildSpec, got {spec!r}")
        async with self._lock:
            if self._closing:
                raise RuntimeError("the supervisor is shutting down")
            if spec.name in self._children:
                raise ConfigError(f"the supervisor already has a child named {spec.name!r}")
            child = _Child(spec)
            await self._launch(child)
            self._children[spec.name] = child
            return child.value

    async def start_agent(
        self, name: str, *, restart: Restart = "permanent", **options: Unpack[AgentOptions]
    ) -> Agent:
        """Start a supervised agent; return its handle (which follows restarts).

        >>> coder = await sup.start_agent("coder", provider=p, tools=[Read, Edit])
        >>> coder is sup.agent("coder")
        True
        """
        spec = ChildSpec.agent(name, restart=restart, **options)
        await self.start_child(spec)
        assert spec.handle is not None
        return spec.handle

    def agent(self, name: str) -> Agent:
        """The agent child ``name``: a handle that reaches whichever incarnation is current.

        A call made while the agent is being restarted fails with ``AgentStopped``
        (``AgentCrashed`` for the calls the crash interrupted); try again. Raises
        ``KeyError`` for an unknown name (or a child that is not an agent)::

            result = await sup.agent("coder").chat("Fix the failing test")
        """
        child = self._children.get(name)
        if child is None or child.spec.handle is None:
            raise KeyError(f"the supervisor has no agent named {name!r}")
        return child.spec.handle

    def child(self, name: str) -> Any:
        """What child ``name``'s current incarnation passed to ``task_status.started``.

        >>> sup.child("ticker")
        """
        found = self._children.get(name)
        if found is None:
            raise KeyError(f"the supervisor has no child named {name!r}")
        return found.value

    async def stop_child(self, name: str) -> None:
        """Stop child ``name`` for good (no restart) and remove it.

        >>> await sup.stop_child("coder")    # its session_end hooks and on_shutdown run
        """
        async with self._lock:
            child = self._children.pop(name, None)
            if child is None:
                raise KeyError(f"the supervisor has no child named {name!r}")
            await self._stop(child)

    # -- machinery --

    async def _launch(self, child: _Child) -> None:
        assert self._nursery is not None
        incarnation = _Incarnation(child)
        child.incarnation = incarnation
        child.value = await self._nursery.start(self._run_child, incarnation)

    async def _run_child(
        self, incarnation: _Incarnation, *, task_status: trio.TaskStatus[Any]
    ) -> None:
        try:
            with incarnation.scope:
                try:
                    await incarnation.child.spec.start(
                        task_status=_Status(task_status, incarnation)
                    )
                except Exception as exc:
                    if not incarnation.started:
                        raise  # a failed start: raised from nursery.start to the starter
                    incarnation.error = exc
        finally:
            incarnation.done.set()
        if incarnation.started and not incarnation.stopping:
            self._exits_send.send_nowait(incarnation)

    async def _stop(self, child: _Child) -> None:
        incarnation = child.incarnation
        if incarnation is None or incarnation.done.is_set():
            return
        incarnation.stopping = True
        incarnation.scope.cancel()
        await incarnation.done.wait()

    async def _control(self) -> None:
        async for incarnation in self._exits_receive:
            async with self._lock:
                child = incarnation.child
                if (
                    self._closing
                    or child.incarnation is not incarnation
                    or self._children.get(child.spec.name) is not child
                ):
                    continue  # stale: that incarnation was replaced or removed meanwhile
                await self._exited(child, incarnation.error)

    async def _exited(self, child: _Child, error: Exception | None) -> None:
        """Apply ``child``'s restart policy and the strategy after it exited with ``error``."""
        restart = child.spec.restart
        if restart == "temporary" or (restart == "transient" and error is None):
            self._children.pop(child.spec.name, None)
            return
        self._count_restart(child, error)
        group = self._group(child)
        for other in reversed(group):
            if other is not child:
                await self._stop(other)
        for other in group:
            if other is not child and other.spec.restart == "temporary":
                self._children.pop(other.spec.name, None)
        for other in [c for c in group if c is child or c.spec.restart != "temporary"]:
            try:
                await self._launch(other)
            except Exception as exc:
                # A failed restart is another exit of that child: count it, apply the strategy.
                await self._exited(other, exc)
                return

    def _count_restart(self, child: _Child, error: Exception | None) -> None:
        now = trio.current_time()
        self._recent = [t for t in self._recent if now - t < self.max_seconds]
        if len(self._recent) >= self.max_restarts:
            raise RestartIntensityExceeded(
                f"child {child.spec.name!r} "
                + ("crashed" if error is not None else "exited")
                + f" after {len(self._recent)} restarts in the last {self.max_seconds:g} s "
                f"(max_restarts={self.max_restarts}); the supervisor gave up",
                child=child.spec.name,
                max_restarts=self.max_restarts,
                max_seconds=self.max_seconds,
            ) from error
        self._recent.append(now)
        self.restarts += 1

    def _group(self, child: _Child) -> list[_Child]:
        """The children restarted with ``child``, in start order."""
        if self.strategy == "one_for_one":
            return [child]
        order = list(self._children.values())
        if self.strategy == "one_for_all":
            return order
        return order[order.index(child) :]

    async def _shutdown(self) -> None:
        """Stop every child, in reverse start order (their shutdown hooks run)."""
        async with self._lock:
            self._closing = True
            for child in reversed(list(self._children.values())):
                await self._stop(child)


@asynccontextmanager
async def open_supervisor(
    *,
    strategy: Strategy = "one_for_one",
    max_restarts: int = 3,
    max_seconds: float = 5.0,
    children: Iterable[ChildSpec] = (),
) -> AsyncIterator[Supervisor]:
    """A supervisor for the duration of a block: restarts its children by policy.

    ``children`` are started in order on entry (a failed start raises from the block's
    entry); more can be added with ``start_child`` / ``start_agent``. Leaving the block stops
    every child in reverse start order; no task of the supervisor outlives the block. If
    restarts exceed ``max_restarts`` within ``max_seconds``, every child is stopped and
    ``RestartIntensityExceeded`` is raised from the block::

        async with alloy.open_supervisor(strategy="one_for_one", max_restarts=3,
                                         max_seconds=5) as sup:
            await sup.start_agent("coder", provider=p, tools=[Read, Edit, Bash])
            await sup.start_agent("reviewer", provider=p)
            result = await sup.agent("coder").chat("Fix the failing test")
    """
    if strategy not in _STRATEGIES:
        raise ConfigError(
            f"strategy must be 'one_for_one', 'one_for_all' or 'rest_for_one', got {strategy!r}"
        )
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ConfigError(f"max_restarts must be a non-negative integer, got {max_restarts!r}")
    if (
        isinstance(max_seconds, bool)
        or not isinstance(max_seconds, int | float)
        or not max_seconds > 0
        or math.isinf(max_seconds)
    ):
        raise ConfigError(f"max_seconds must be a positive number, got {max_seconds!r}")
    specs = list(children)
    supervisor = Supervisor(strategy, max_restarts, float(max_seconds))
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            supervisor._nursery = nursery
            nursery.start_soon(supervisor._control)
            for spec in specs:
                await supervisor.start_child(spec)
            try:
                yield supervisor
            except BaseException as exc:
                body_error = exc  # re-raised below, bare
            if body_error is None:
                await supervisor._shutdown()
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        bare = _bare(group)
        raise bare from bare.__cause__  # keep its cause; drop the group context
    if body_error is not None:
        raise body_error
