"""Long-lived agents: an actor owns a conversation and runs its turns, one at a time.

An ``Agent`` is a handle on an ``_Actor``. A failing start (a bad option, a ``session_start``
hook that raises or halts, a subscription that cannot be made) raises from ``Agent.start`` and
no handle escapes. An actor lives in one of two ways:

- **Hosted** (``Agent.start``/``Agent.open`` without topics): no task of its own. A ``chat``
  to an idle agent runs its turn in the caller's task; other turns (queued ones,
  ``send_message``, ``stream_chat``) are tasks of the agent's nursery. One ``_Host`` task per
  nursery runs the ends of the agents started there (``finish``: on ``stop``, and for all of
  them when the nursery is cancelled), raises a crash of an inline turn there, and exits with
  its last agent. An idle agent is about 1 KiB.
- **A task** (``_Actor.main``; agents with topics, whose pumps need it, and supervised
  agents, whose supervisor watches it): turns run in it, and it parks between them.

- **Calls** (``messages``, ``health``, ``reset``, ``send_message``...) are synchronous
  handlers run in the caller's task (``_Actor.call``): Trio is single-threaded, so each one is
  atomic, answered at once, in the order made, even while a turn runs. No message passing.
- **Turns** run one at a time; up to ``max_pending`` more wait in a FIFO queue (the agent's
  mailbox of requests).
- **Timeouts** are the caller's cancel scope. A caller that gives up cancels its request: a
  queued request is dropped, a running turn is cancelled. Giving up is delivered
  synchronously (like ``CancelScope.cancel``), so it can neither block nor race the reply,
  and no late reply is ever left behind.
- **History is transactional.** A turn that ends ``completed``, ``max_turns`` or ``halted``
  commits its messages (every tool call in them has a result). A turn that fails or is
  cancelled leaves the history exactly as it was before the turn: no dangling user message,
  no unanswered tool call. Its partial result still reaches the caller (``error.result``, the
  published ``AgentResponse``, ``run.result``), and the tokens it spent are still counted in
  ``usage`` and ``turns``.
- **Death.** When the actor ends (``stop``, cancellation, a crash) it is closed to calls and
  the running turn and every queued request fail with ``AgentStopped``
  (``AgentCrashed`` after a crash) naming the agent; ``send_message`` requests get that error
  published. No caller ever hangs on a dead agent. Then ``session_end`` hooks and
  ``on_shutdown`` run (shielded, for at most ``SHUTDOWN_GRACE`` seconds).
- **A crash** is an exception that is not an ``AlloyError`` escaping a turn (a bug: provider,
  tool and middleware failures are ``AlloyError`` and only fail their request). The agent
  ends and the exception reaches its nursery (bare from ``Agent.open``) or its supervisor.
- **Session hooks** fire once per agent lifetime: ``session_start`` before the agent accepts
  its first call, ``session_end`` when it stops. The middleware handed to each turn's run is
  a view without those two hooks, so ``alloy.run`` does not fire them per turn.
"""

from __future__ import annotations

import inspect
import logging
import secrets
import weakref
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Literal, Required, TypedDict, TypeVar, Unpack

import attrs
import outcome
import trio

from ._config import RunConfig, build_config, check_provider, prompt_message
from ._emit import Emitter
from ._errors import AlloyError, ConfigError
from ._events import Event, RunCompleted
from ._loop import execute_run
from ._messages import Block, Message, Usage
from ._middleware import HaltRun, RunContext
from ._provider import Provider, provider_name
from ._pubsub import Broker, SubscriptionOverflow, _iter_topics
from ._result import Result, Status
from ._run import EVENT_BUFFER, Run

__all__ = [
    "Agent",
    "AgentBusy",
    "AgentCrashed",
    "AgentError",
    "AgentHealth",
    "AgentOptions",
    "AgentRequest",
    "AgentResponse",
    "AgentStopped",
    "NoPubSub",
    "QueueFull",
    "Session",
    "SessionHalted",
]

log = logging.getLogger("alloy.agent")

T = TypeVar("T")

SHUTDOWN_GRACE = 5.0
"""Seconds ``session_end`` hooks and ``on_shutdown`` get when an agent stops."""


Prompt = str | Message | Sequence[Block]

# -- errors ----------------------------------------------------------------------------------


class AgentError(AlloyError):
    """Base of the errors an agent raises; ``agent`` names it.

    >>> try:
    ...     await agent.chat("hi")
    ... except alloy.AgentError as exc:
    ...     log.warning("agent %s: %s", exc.agent, exc)
    """

    def __init__(self, message: str, *, agent: str, result: Result | None = None) -> None:
        super().__init__(message, result=result)
        self.agent = agent


class AgentBusy(AgentError):
    """A turn is running and the agent queues nothing (``max_pending=0``), or the call
    (``reset``, ``set_model``) cannot run while a turn does.

    >>> try:
    ...     await agent.chat("second question")
    ... except alloy.AgentBusy:
    ...     ...   # try later, or start the agent with max_pending > 0
    """


class QueueFull(AgentBusy):
    """A turn is running and ``max_pending`` requests already wait.

    A subclass of ``AgentBusy``: ``except alloy.AgentBusy`` catches both.

    >>> agent = await alloy.Agent.start(nursery, provider=p, max_pending=2)
    """


class AgentStopped(AgentError):
    """The agent is not running (it was stopped, or its nursery was cancelled).

    Raised by every call to a dead agent, and by the calls it had not answered when it
    died. For the request that was running, ``result`` holds its partial result::

        except alloy.AgentStopped as exc:
            partial = exc.result
    """


class AgentCrashed(AgentStopped):
    """The agent died of an unexpected exception; ``error`` is that exception (also the
    ``__cause__``). A supervisor restarts it; calls through ``sup.agent(name)`` reach the
    new one.

    >>> except alloy.AgentCrashed as exc:
    ...     log.error("agent %s crashed: %r", exc.agent, exc.error)
    """

    def __init__(
        self, message: str, *, agent: str, error: BaseException, result: Result | None = None
    ) -> None:
        super().__init__(message, agent=agent, result=result)
        self.error = error


class NoPubSub(AgentError):
    """``send_message`` needs a pub/sub to publish its result on: start the agent with
    ``pubsub=``.

    >>> agent = await alloy.Agent.start(nursery, provider=p, pubsub=alloy.PubSub())
    """


class SessionHalted(AgentError):
    """A ``session_start`` hook returned ``alloy.Halt(reason)``: the agent did not start.

    >>> class Gate(alloy.Middleware):
    ...     def session_start(self, run):
    ...         return alloy.Halt("over quota")
    >>> await alloy.Agent.start(nursery, provider=p, middleware=[Gate()])
    Traceback (most recent call last):
    alloy.SessionHalted: agent 'x': a session_start hook halted the start: over quota
    """

    def __init__(self, message: str, *, agent: str, reason: str) -> None:
        super().__init__(message, agent=agent)
        self.reason = reason


# -- values ----------------------------------------------------------------------------------


@attrs.frozen
class AgentRequest:
    """A request published on a topic an agent subscribes to (``subscribe=[...]``).

    A plain string (or a user ``Message``) published there is a request too, with a fresh
    request id; ``AgentRequest`` lets the publisher choose the id it will find on the
    agent's responses topic::

        bus.publish("jobs", alloy.AgentRequest("Summarise the report", request_id="job-7"))
    """

    prompt: str | Message
    request_id: str | None = None


@attrs.frozen(kw_only=True)
class AgentResponse:
    """What an agent publishes on ``agent:<session_id>:responses`` for every request made
    with ``send_message`` or through a subscribed topic.

    ``result`` is the run's result (its partial result when it failed or was cancelled);
    ``error`` is the exception ``chat`` would have raised (``None`` on success);
    ``cancelled`` says when the request was cancelled: ``"queued"`` or ``"running"``::

        with bus.subscribe(agent.responses_topic) as responses:
            request_id = await agent.send_message("Summarise this", request_id="req-1")
            response = await responses.receive()
            response.request_id, response.result.text, response.ok
    """

    request_id: str
    result: Result
    error: AlloyError | None = None
    cancelled: Literal["queued", "running"] | None = None
    session_id: str = ""

    @property
    def ok(self) -> bool:
        """Whether the request ran to an answer (no error, not cancelled)."""
        return self.error is None and self.cancelled is None


@attrs.frozen(kw_only=True)
class AgentHealth:
    """A snapshot of an agent, answered even while a turn runs.

    ``status`` is ``"running"`` while a turn runs, else ``"idle"`` (``busy`` says the same);
    ``pending`` counts queued requests; ``turns`` and ``usage`` add up every model call of the
    conversation (since the start or the last ``reset``); ``uptime`` is in seconds (Trio's
    clock); ``last_status`` is how the last request ended::

        >>> await agent.health()
        AgentHealth(name='s1', session_id='s1', status='idle', busy=False, pending=0,
                    max_pending=4, turns=2, message_count=4, usage=Usage(...), uptime=12.5,
                    last_status='completed')
    """

    name: str
    session_id: str
    status: Literal["idle", "running"]
    busy: bool
    pending: int
    max_pending: int
    turns: int
    message_count: int
    usage: Usage
    uptime: float
    last_status: Status | None


@attrs.frozen(kw_only=True)
class Session:
    """An agent's conversation as a value, from ``export_session`` (and ``on_shutdown``).

    ``created_at`` is when the conversation began (the agent's start, or the last
    ``reset``), ``updated_at`` when it last changed; both are timezone-aware UTC.
    ``metadata`` has ``agent``, ``status``, ``last_status``, ``turns`` and ``provider``::

        session = await agent.export_session()
        store.save(session.id, alloy.dump_messages(session.messages))
    """

    id: str
    messages: tuple[Message, ...] = ()
    usage: Usage = Usage()
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    created_at: datetime
    updated_at: datetime


class AgentOptions(TypedDict, total=False):
    """The keyword options ``Agent.start``, ``Agent.open`` and ``ChildSpec.agent`` accept.

    Those of ``alloy.run`` (``messages`` is the initial history), plus ``session_id``,
    ``pubsub``, ``subscribe``, ``max_pending`` and ``on_shutdown``. (``name`` is a separate
    keyword of ``Agent.start`` and ``Agent.open``, and the first argument of
    ``ChildSpec.agent``.)

    >>> options: alloy.AgentOptions = {"provider": provider, "max_pending": 4}
    >>> agent = await alloy.Agent.start(nursery, **options)
    """

    provider: Required[Provider]
    tools: Iterable[Any]
    system_prompt: str | None
    messages: Iterable[Message]
    max_turns: int
    middleware: Sequence[object]
    working_directory: Any
    allowed_roots: Iterable[Any]
    context: Any
    tool_timeout: float | None
    provider_options: Mapping[str, Any] | None
    max_tokens: int | None
    model_overrides: Mapping[str, Any] | None
    compaction: Any
    session_id: str
    pubsub: Broker | None
    subscribe: Iterable[str]
    max_pending: int
    on_shutdown: Callable[[Session], Awaitable[None] | None] | None


@attrs.frozen(kw_only=True)
class _Spec:
    """An agent's validated options: what every (re)start begins from."""

    name: str
    session_id: str
    config: RunConfig  # per-turn config: session hooks filtered out; messages = initial history
    middleware: tuple[object, ...]  # as given, for the session hooks
    pubsub: Broker | None
    subscribe: tuple[str, ...]
    max_pending: int
    on_shutdown: Callable[[Session], Awaitable[None] | None] | None


_AGENT_ONLY = ("session_id", "pubsub", "subscribe", "max_pending", "on_shutdown")


def _prepare(options: Mapping[str, Any], name: str | None = None) -> _Spec:
    """Check an agent's options once, in the caller: a bad value raises before any task."""
    run_options = {k: v for k, v in options.items() if k not in _AGENT_ONLY}
    config = build_config(require_prompt=False, **run_options)
    middleware = config.middleware
    session_id = options.get("session_id")
    if session_id is None:
        session_id = secrets.token_urlsafe(12)
    elif not isinstance(session_id, str) or not session_id:
        raise ConfigError(f"session_id must be a non-empty string, got {session_id!r}")
    if name is None:
        name = session_id
    elif not isinstance(name, str) or not name:
        raise ConfigError(f"name must be a non-empty string, got {name!r}")
    pubsub = options.get("pubsub")
    if pubsub is not None and not (
        callable(getattr(pubsub, "publish", None)) and callable(getattr(pubsub, "subscribe", None))
    ):
        raise ConfigError(
            f"pubsub must have publish() and subscribe() (an alloy.Broker), got {pubsub!r}"
        )
    subscribe = tuple(_iter_topics(options.get("subscribe", ())))
    if subscribe and pubsub is None:
        raise ConfigError("subscribe= needs a pubsub= to subscribe on")
    max_pending = options.get("max_pending", 0)
    if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 0:
        raise ConfigError(f"max_pending must be a non-negative integer, got {max_pending!r}")
    on_shutdown = options.get("on_shutdown")
    if on_shutdown is not None and not callable(on_shutdown):
        raise ConfigError(f"on_shutdown must be callable or None, got {on_shutdown!r}")
    turn_config = attrs.evolve(config, session_hooks=False)
    return _Spec(
        name=name,
        session_id=session_id,
        config=turn_config,
        middleware=middleware,
        pubsub=pubsub,
        subscribe=subscribe,
        max_pending=max_pending,
        on_shutdown=on_shutdown,
    )


def _with_provider(config: RunConfig, provider: Provider) -> RunConfig:
    """The per-turn config for another model; history and every other option are kept.

    The context budget (``max_tokens``) follows the new model unless it was given explicitly.
    """
    return config.with_provider(provider)


def _to_message(prompt: object) -> Message:
    message = prompt_message(prompt)  # type: ignore[arg-type]
    if message.role != "user":
        raise ConfigError(f"a prompt must be a user message, got role {message.role!r}")
    return message


def _check_request_id(request_id: object) -> str:
    if not isinstance(request_id, str) or not request_id:
        raise ConfigError(f"request_id must be a non-empty string, got {request_id!r}")
    return request_id


def _now() -> datetime:
    return datetime.now(UTC)


def _bare(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception a nursery's group stands for: Cancelled members dropped (they are
    only the echo of the real error), single-member groups unwrapped."""
    _, rest = group.split(trio.Cancelled)
    current: BaseException = group if rest is None else rest
    while isinstance(current, BaseExceptionGroup) and len(current.exceptions) == 1:
        current = current.exceptions[0]
    return current


# -- the request -----------------------------------------------------------------------------


class _Wakeup:
    """One task parked until woken: a ``ParkingLot`` of one, without its table and per-wait
    closure (idle agents and hosts park here, and should cost little). A wake with no task
    parked does nothing: the parked side checks its condition before it parks."""

    __slots__ = ("_task",)

    def __init__(self) -> None:
        self._task: trio.lowlevel.Task | None = None

    async def park(self) -> None:
        self._task = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort)

    def wake(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    def _abort(self, raise_cancel: Any) -> trio.lowlevel.Abort:
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED


class _Done:
    """A one-shot event with at most one waiting task (the request's caller): what a
    ``trio.Event`` does for this case, without its set of waiters and per-wait closure."""

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: trio.lowlevel.Task | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            trio.lowlevel.reschedule(waiter)

    async def wait(self) -> None:
        if self._set:
            await trio.lowlevel.checkpoint()
            return
        assert self._waiter is None, "a request has one waiter"
        self._waiter = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, raise_cancel: Any) -> trio.lowlevel.Abort:
        self._waiter = None
        return trio.lowlevel.Abort.SUCCEEDED


@attrs.define(eq=False)
class _Request:
    """One prompt to answer: a ``chat``/``stream_chat`` (kind ``call``) or a
    ``send_message``/topic request (kind ``async``, answered on the pub/sub)."""

    id: str
    message: Message
    kind: Literal["call", "async"]
    run: Run | None = None
    events: trio.MemorySendChannel[Event] | None = None
    state: Literal["new", "queued", "running", "done"] = "new"
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    done: _Done = attrs.field(factory=_Done)
    answer: outcome.Value[Result] | outcome.Error | None = None
    partial: Result | None = None
    inline: bool = False
    """A ``chat`` to an idle hosted agent: its caller runs the turn in its own task."""

    def keep_partial(self, partial: Result) -> None:
        """The run's partial result, recorded as it is cancelled."""
        self.partial = partial


# -- the actor -------------------------------------------------------------------------------


_HOSTS: weakref.WeakKeyDictionary[trio.Nursery, _Host] = weakref.WeakKeyDictionary()


class _Host:
    """The one task in a nursery that ends the hosted agents started there: an agent's
    ``finish`` when it stops, every agent's when the nursery is cancelled. So an idle agent is
    an object, not a task; the host task ends with its last agent."""

    __slots__ = ("__weakref__", "_agents", "_crash", "_finishing", "_idle", "nursery")

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self._agents: set[_Actor] = set()
        self._finishing: list[_Actor] = []
        self._idle = _Wakeup()
        self._crash: Exception | None = None  # an inline turn's bug, raised here, in the nursery

    @classmethod
    def of(cls, nursery: trio.Nursery) -> _Host:
        host = _HOSTS.get(nursery)
        if host is None:
            host = cls(nursery)
            nursery.start_soon(host.run, name="alloy agents")  # raises if the nursery is closed
            _HOSTS[nursery] = host
        return host

    def add(self, actor: _Actor) -> None:
        self._agents.add(actor)

    def finish(self, actor: _Actor, *, crash: Exception | None = None) -> None:
        """End ``actor`` (once, however often asked); ``crash``: raise it in the nursery."""
        if crash is not None and self._crash is None:
            self._crash = crash
        if actor in self._finishing or actor.ended:
            return
        self._finishing.append(actor)
        self._idle.wake()

    async def run(self) -> None:
        try:
            while self._agents:
                if self._finishing:
                    actor = self._finishing[0]  # (kept listed while it ends: asked once)
                    with trio.CancelScope(shield=True):  # bounded inside
                        await actor.finish()
                    self._finishing.pop(0)
                    self._agents.discard(actor)
                    if self._crash is not None:
                        raise self._crash
                    continue
                await self._idle.park()
        except BaseException:
            # The nursery is cancelled (or crashed): every agent still here ends now.
            with trio.CancelScope(shield=True):
                for actor in list(self._agents):
                    if not actor.ended:
                        actor.stopping = True
                        if actor.current is not None:
                            actor.current.scope.cancel()
                        await actor.finish()
            raise
        finally:
            if _HOSTS.get(self.nursery) is self:
                del _HOSTS[self.nursery]


class _Actor:
    """One incarnation of an agent: its state, its request queue, and its task (``main``) or
    its host (``start_hosted``)."""

    __slots__ = (
        "_ended",
        "_turn_ended",
        "_waiters",
        "closed",
        "config",
        "crash",
        "created_at",
        "current",
        "history",
        "host",
        "idle",
        "last_status",
        "name",
        "nursery",
        "queue",
        "served",
        "session_hooks",
        "spec",
        "started_at",
        "starting",
        "stopping",
        "turn_running",
        "turns",
        "updated_at",
        "usage",
    )

    def __init__(self, spec: _Spec) -> None:
        self.spec = spec
        self.name = spec.name
        self.config = spec.config
        self.history: tuple[Message, ...] = spec.config.messages
        self.usage = Usage()
        self.turns = 0
        self.last_status: Status | None = None
        self.queue: list[_Request] = []  # FIFO, short (max_pending): a list is the lightest
        self.current: _Request | None = None
        self.session_hooks = spec.config.hooks
        self.idle = _Wakeup()  # where the actor's task waits for work
        # A hosted agent (see _Host) has no task of its own: its turns are tasks of `nursery`.
        self.host: _Host | None = None
        self.nursery: trio.Nursery | None = None
        self.turn_running = False
        self._turn_ended: _Done | None = None
        self.starting: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
        self.stopping = False  # no new requests; the loop ends after the running turn
        self.closed = False  # no more calls: they raise death_error()
        self.served = False  # session_start ran and calls were answered
        self._ended = False  # main has returned: the agent is gone
        # Tasks waiting for the start (calls to a restarting agent) or for the end (stop()):
        # an event made only when someone waits, as an idle agent should cost little.
        self._waiters: trio.Event | None = None
        self.crash: BaseException | None = None
        self.started_at = 0.0
        self.created_at = self.updated_at = _now()

    # -- caller side (runs in the caller's task) --

    async def call(self, op: Callable[[], T]) -> T:
        """Run ``op`` on the agent's state and return (or raise) what it did.

        Every handler is synchronous and Trio is single-threaded, so it runs right here in
        the caller's task, atomically: no message passing, no wake-up of the actor."""
        if self.served or self.closed:
            await trio.lowlevel.checkpoint()
        else:
            await self._wait(lambda: self.served or self.closed)  # still in session_start
        if self.closed:
            raise self.death_error()
        return op()

    def abandon(self, request: _Request) -> None:
        """The caller gave up on ``request``: drop it if queued, cancel it if running."""
        if request.state in ("new", "queued"):
            if request.state == "queued":
                self.queue.remove(request)
            self._settle(request, result=self._unrun(request, Status.CANCELLED), cancelled="queued")
        elif request.state == "running":
            request.scope.cancel()

    def request_stop(self) -> None:
        """Stop after cancelling the running turn (its caller gets ``AgentStopped``)."""
        already = self.stopping
        self.stopping = True
        if self.current is not None:
            self.current.scope.cancel()
        if self.host is None:
            self.idle.wake()
        elif not already:
            self.host.finish(self)

    @property
    def ended(self) -> bool:
        """Whether the agent is gone (``main`` has returned)."""
        return self._ended

    async def _wait(self, ready: Callable[[], bool]) -> None:
        while not ready():
            if self._waiters is None:
                self._waiters = trio.Event()
            await self._waiters.wait()

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, None
        if waiters is not None:
            waiters.set()

    def death_error(self, result: Result | None = None) -> AgentStopped:
        if self.crash is not None:
            crashed = AgentCrashed(
                f"agent {self.name!r} crashed: {type(self.crash).__name__}: {self.crash}",
                agent=self.name,
                error=self.crash,
                result=result,
            )
            crashed.__cause__ = self.crash
            return crashed
        return AgentStopped(f"agent {self.name!r} is stopped", agent=self.name, result=result)

    # -- the actor task --

    async def main(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The agent's task: told (``task_status``, or ``self.starting``) once calls are served."""
        if task_status is not trio.TASK_STATUS_IGNORED:
            self.starting = task_status
        del task_status  # not kept in this frame for the agent's whole life
        self.started_at = trio.current_time()
        self.created_at = self.updated_at = _now()
        try:
            try:
                if self.spec.subscribe:
                    async with trio.open_nursery() as nursery:  # for the topic pumps
                        for topic in self.spec.subscribe:
                            await nursery.start(self._pump, topic)
                        try:
                            await self._serve()
                        finally:
                            nursery.cancel_scope.cancel()
                else:
                    await self._serve()
            except BaseExceptionGroup as group:
                bare = _bare(group)
                raise bare from bare.__cause__  # keep its cause; drop the group context
        except BaseException as exc:
            if isinstance(exc, Exception) and self.crash is None:
                self.crash = exc
            raise
        finally:
            self.stopping = self.closed = True
            self._notify()  # callers still waiting for a start that never came
            try:
                self._fail_requests()
                if self.served:
                    with trio.move_on_after(SHUTDOWN_GRACE, shield=True):
                        await self._shutdown_hooks()
            finally:
                self._ended = True
                self._notify()

    async def _serve(self) -> None:
        """Run ``session_start``, then the turns, one at a time, until stopped."""
        await self._session_start()
        # Dropped once used: the start machinery (a temporary nursery) would live as long.
        starting, self.starting = self.starting, trio.TASK_STATUS_IGNORED
        starting.started()
        del starting
        self.served = True
        self._notify()
        try:
            while not self.stopping:
                request = self.current
                if request is None:
                    await self.idle.park()  # until submit() or request_stop() wakes us
                    continue
                await self._turn(request)  # (stopping: main's finally fails it with AgentStopped)
        finally:
            self.stopping = self.closed = True

    def _fail_requests(self) -> None:
        current, self.current = self.current, None
        if current is not None and current.state != "done":
            self._settle(current, error=self.death_error(current.partial))
        queued, self.queue = self.queue, []
        for request in queued:
            self._settle(request, error=self.death_error(self._unrun(request, Status.ERROR)))

    # -- call handlers (synchronous; call() runs them in the caller's task) --

    def submit(self, request: _Request) -> None:
        if request.state != "new":  # the caller gave up already
            return
        if self.stopping:
            raise self.death_error()
        if any(r.id == request.id for r in self._requests()):
            raise ConfigError(f"request_id {request.id!r} is already queued or running")
        if self.current is None:
            self._begin(request)
        elif self.spec.max_pending == 0:
            raise AgentBusy(
                f"agent {self.name!r} is busy with another request (max_pending=0)",
                agent=self.name,
            )
        elif len(self.queue) >= self.spec.max_pending:
            raise QueueFull(
                f"agent {self.name!r} already has {len(self.queue)} requests waiting "
                f"(max_pending={self.spec.max_pending})",
                agent=self.name,
            )
        else:
            request.state = "queued"
            request.inline = False  # the agent runs it (in a task of its own) when its turn comes
            self.queue.append(request)

    def cancel(self, request_id: str) -> bool:
        for request in self.queue:
            if request.id == request_id:
                self.queue.remove(request)
                self._settle(
                    request, result=self._unrun(request, Status.CANCELLED), cancelled="queued"
                )
                return True
        current = self.current
        if current is not None and current.id == request_id and current.state == "running":
            current.scope.cancel()
            return True
        return False

    def health(self) -> AgentHealth:
        busy = self.current is not None
        return AgentHealth(
            name=self.name,
            session_id=self.spec.session_id,
            status="running" if busy else "idle",
            busy=busy,
            pending=len(self.queue),
            max_pending=self.spec.max_pending,
            turns=self.turns,
            message_count=len(self.history),
            usage=self.usage,
            uptime=trio.current_time() - self.started_at,
            last_status=self.last_status,
        )

    def export(self, messages: tuple[Message, ...] | None = None) -> Session:
        return Session(
            id=self.spec.session_id,
            messages=self.history if messages is None else messages,
            usage=self.usage,
            metadata={
                "agent": self.name,
                "status": "running" if self.current is not None else "idle",
                "last_status": self.last_status,
                "turns": self.turns,
                "provider": provider_name(self.config.provider),
            },
            created_at=self.created_at,
            updated_at=self.updated_at,
        )

    def reset(self) -> Session:
        self._refuse_while_busy("reset")
        before = self.export()
        self.history = ()
        self.usage = Usage()
        self.turns = 0
        self.last_status = None
        self.created_at = self.updated_at = _now()
        return before

    def set_model(self, provider: Provider) -> None:
        self._refuse_while_busy("set_model")
        self.config = _with_provider(self.config, provider)
        self.updated_at = _now()

    def _refuse_while_busy(self, what: str) -> None:
        if self.current is not None:
            raise AgentBusy(
                f"agent {self.name!r} cannot {what} while a turn is running", agent=self.name
            )

    def _requests(self) -> Iterable[_Request]:
        if self.current is not None:
            yield self.current
        yield from self.queue

    # -- turns --

    def _begin(self, request: _Request) -> None:
        request.state = "running"
        self.current = request
        if self.nursery is not None:
            self.turn_running = True
            if not request.inline:
                self.nursery.start_soon(self._turn, request)
        else:
            self.idle.wake()  # the actor runs it (it may be busy finishing the last one)

    # -- hosted agents (no task of their own) --

    async def start_hosted(self, nursery: trio.Nursery) -> None:
        """Start without a task: ``session_start`` here, turns as tasks of ``nursery``, and
        the end (``finish``) run by the nursery's ``_Host``."""
        self.started_at = trio.current_time()
        self.created_at = self.updated_at = _now()
        try:
            await self._session_start()
        except BaseException:
            self.stopping = self.closed = self._ended = True
            raise
        self.served = True
        self.nursery = nursery
        self.host = _Host.of(nursery)
        self.host.add(self)

    async def finish(self) -> None:
        """A hosted agent's end, run by its host, shielded and bounded: wait for the running
        turn to unwind, fail what is left, run the shutdown hooks."""
        self.stopping = True
        if self.turn_running:
            self._turn_ended = _Done()
            with trio.move_on_after(SHUTDOWN_GRACE):
                await self._turn_ended.wait()
        self.closed = True
        self._notify()
        try:
            self._fail_requests()
            with trio.move_on_after(SHUTDOWN_GRACE):
                await self._shutdown_hooks()
        finally:
            self._ended = True
            self._notify()

    def _next(self, request: _Request) -> None:
        """``request``'s turn is over: begin the next queued request, if any."""
        if self.current is request:
            self.current = None
        if self.stopping:
            return
        while self.queue:
            following = self.queue.pop(0)
            if following.state == "queued":
                self._begin(following)
                return

    async def _turn(self, request: _Request) -> None:
        """Run ``request``'s turn, answer it, and begin the next queued request. It runs in the
        agent's task, or for a hosted agent in its caller's task (``chat``) or a task of its own."""
        emitter = None if request.events is None else Emitter(request.events)
        committed: Result | None = None
        try:
            with request.scope:
                try:
                    result = await execute_run(
                        self.config, emitter, request.keep_partial, [*self.history, request.message]
                    )
                except AlloyError as exc:
                    # Failed: the history stays as it was; the caller gets the partial result.
                    self._account(exc.result)
                    self._settle(request, error=exc)
                else:
                    committed = request.partial = result
                    self._account(result, commit=True)
                    if emitter is not None:
                        await emitter.emit(RunCompleted, result=result)
        except Exception as exc:
            self._crashed(exc, request)
            if request.inline:
                return  # the host raises it in the agent's nursery; the caller gets AgentCrashed
            raise
        except BaseException:
            if request.inline and request.state != "done" and not self.stopping:
                # The caller's own cancellation: roll back and report, as abandon() would.
                partial = request.partial or self._unrun(request, Status.CANCELLED)
                self._account(partial)
                self._settle(request, result=partial, cancelled="running")
                self._next(request)
            raise
        finally:
            if self.host is not None:
                self.turn_running = False
                if self._turn_ended is not None:
                    self._turn_ended.set()
        if committed is not None:
            self._settle(request, result=committed)
        elif request.state != "done":
            if self.stopping:
                return  # cancelled by stop(): it is failed with AgentStopped and its partial result
            # Cancelled by its caller or by cancel_request: roll back, report the partial result.
            partial = request.partial or self._unrun(request, Status.CANCELLED)
            self._account(partial)
            self._settle(request, result=partial, cancelled="running")
        if not self.stopping:
            self._next(request)

    def _crashed(self, error: Exception, request: _Request) -> None:
        """Not an AlloyError escaped a turn: a bug. The agent dies of it (and a hosted agent's
        nursery with it); its callers get AgentCrashed now, before that cancellation reaches them."""
        self.crash = error
        if self.host is not None:
            self.stopping = self.closed = True
            self._notify()
            self._fail_requests()
            self.host.finish(self, crash=error if request.inline else None)

    def _account(self, result: Result | None, *, commit: bool = False) -> None:
        if result is None:
            return
        self.usage = self.usage + result.usage
        self.turns += result.turns
        self.last_status = result.status
        if commit:
            self.history = result.messages
            self.updated_at = _now()

    def _unrun(self, request: _Request, status: Status) -> Result:
        """The result of a request that never ran."""
        reason = "cancelled before it started" if status is Status.CANCELLED else "not run"
        return Result(status=status, messages=(*self.history, request.message), reason=reason)

    def _settle(
        self,
        request: _Request,
        *,
        result: Result | None = None,
        error: AlloyError | None = None,
        cancelled: Literal["queued", "running"] | None = None,
    ) -> None:
        """Answer ``request`` once: its caller's slot, its stream, or the responses topic."""
        if request.state == "done":
            return
        request.state = "done"
        final = result if result is not None else error.result if error is not None else None
        if request.events is not None:
            request.events.close()
        if request.run is not None:
            request.run._finish(final, error)
        if request.kind == "async":
            if final is None:
                final = Result(
                    status=Status.ERROR,
                    messages=(*self.history, request.message),
                    reason=str(error),
                )
            self._publish(
                AgentResponse(
                    request_id=request.id,
                    result=final,
                    error=error,
                    cancelled=cancelled,
                    session_id=self.spec.session_id,
                )
            )
        elif error is not None:
            request.answer = outcome.Error(error)
        else:
            assert final is not None
            request.answer = outcome.Value(final)
        request.done.set()

    def _publish(self, response: AgentResponse) -> None:
        pubsub = self.spec.pubsub
        if pubsub is None:
            return
        try:
            pubsub.publish(_responses_topic(self.spec.session_id), response)
        except Exception:
            log.exception(
                "agent %r: publishing the response to %r failed", self.name, response.request_id
            )

    # -- subscribed topics --

    async def _pump(self, topic: str, *, task_status: trio.TaskStatus[None]) -> None:
        """Turn messages on ``topic`` into requests (after ``session_start`` has run)."""
        pubsub = self.spec.pubsub
        assert pubsub is not None
        first = True
        while True:
            with pubsub.subscribe(topic) as receiver:
                if first:
                    first = False
                    task_status.started()
                    await self._wait(lambda: self.served or self.closed)
                while True:
                    try:
                        message = await receiver.receive()
                    except (trio.EndOfChannel, trio.ClosedResourceError):
                        return
                    except SubscriptionOverflow as exc:
                        log.warning("agent %r: %s; subscribing again", self.name, exc)
                        break
                    self._on_topic_message(topic, message)

    def _on_topic_message(self, topic: str, message: object) -> None:
        request_id: str | None = None
        if isinstance(message, AgentRequest):
            request_id, message = message.request_id, message.prompt
        if not isinstance(message, str | Message) or (
            isinstance(message, Message) and message.role != "user"
        ):
            log.debug("agent %r: ignoring %r on %r (not a request)", self.name, message, topic)
            return
        request = _Request(
            id=request_id or secrets.token_urlsafe(16),
            message=_to_message(message),
            kind="async",
        )
        try:
            self.submit(request)
        except AlloyError as exc:
            self._settle(request, error=exc)

    # -- session hooks --

    def _context(self) -> RunContext:
        return RunContext(
            provider=self.config.provider,
            messages=list(self.history),
            system_prompt=self.config.system_prompt,
            tools=self.config.tools,
            context=self.config.context,
            working_directory=self.config.working_directory,
            turn=self.turns,
            usage=self.usage,
            status="running",
        )

    async def _session_start(self) -> None:
        if not self.session_hooks.has("session_start"):
            return
        run = self._context()
        try:
            await self.session_hooks.run("session_start", run)
        except HaltRun as halt:
            raise SessionHalted(
                f"agent {self.name!r}: a session_start hook halted the start: {halt.reason}",
                agent=self.name,
                reason=halt.reason,
            ) from None
        # What the hooks changed is the agent's starting state.
        self.history = tuple(run.messages)
        self.config = attrs.evolve(
            self.config, system_prompt=run.system_prompt, context=run.context
        )

    async def _shutdown_hooks(self) -> None:
        messages = self.history
        if self.session_hooks.has("session_end"):
            run = self._context()
            status = (
                Status.ERROR if self.crash is not None else self.last_status or Status.COMPLETED
            )
            run.status = status
            result = Result(
                status=status,
                messages=self.history,
                usage=self.usage,
                turns=self.turns,
                reason=None if self.crash is None else repr(self.crash),
            )
            try:
                await self.session_hooks.run("session_end", run, result)
                messages = tuple(run.messages)
            except Exception:
                log.exception("agent %r: a session_end hook failed", self.name)
        callback = self.spec.on_shutdown
        if callback is None:
            return
        try:
            returned = callback(self.export(messages))
            if inspect.isawaitable(returned):
                await returned
        except Exception:
            log.exception("agent %r: the on_shutdown callback raised", self.name)


def _responses_topic(session_id: str) -> str:
    return f"agent:{session_id}:responses"


# -- the handle ------------------------------------------------------------------------------


class Agent:
    """A long-lived agent: it owns a conversation and answers requests one at a time, in order.

    Start it in a nursery (it lives until ``stop`` or until the nursery is cancelled), or
    with ``Agent.open`` for a block::

        async with trio.open_nursery() as nursery:
            agent = await alloy.Agent.start(nursery, provider=p, tools=[Read, Edit, Bash],
                                            system_prompt="You are a senior Python developer.")
            result = await agent.chat("What does this project do?")
            result = await agent.chat("Now refactor the main module")   # same conversation
            await agent.stop()

    Options are those of ``alloy.run`` (``messages`` is the initial history) plus:
    ``name`` (for errors and supervisors; defaults to the session id), ``session_id``
    (default: random), ``pubsub`` (an ``alloy.Broker`` such as ``alloy.PubSub()``; needed by
    ``send_message``), ``subscribe`` (topics whose messages become requests), ``max_pending``
    (requests that may wait while a turn runs; default 0: a second request gets
    ``AgentBusy``) and ``on_shutdown`` (called with the final ``Session`` when the agent
    stops, sync or async; exceptions are logged).

    Every call raises ``AgentStopped`` once the agent is gone. Without a supervisor, an agent
    that crashes (an unexpected exception, not an ``AlloyError``) crashes its nursery; under
    ``alloy.open_supervisor`` it is restarted.
    """

    __slots__ = ("_actor", "name", "pubsub", "session_id")

    def __init__(self, spec: _Spec) -> None:
        self.name = spec.name
        self.session_id = spec.session_id
        self.pubsub = spec.pubsub
        self._actor: _Actor | None = None

    @classmethod
    async def start(
        cls, nursery: trio.Nursery, *, name: str | None = None, **options: Unpack[AgentOptions]
    ) -> Agent:
        """Start an agent in ``nursery``; return its handle once it accepts calls.

        A bad option, a failing or halting ``session_start`` hook, or a subscription that
        cannot be made raises here, and no agent is left running::

            agent = await alloy.Agent.start(nursery, provider=p, max_pending=4)
        """
        spec = _prepare(options, name)
        agent = cls(spec)
        agent._actor = actor = _Actor(spec)
        if spec.subscribe:
            await nursery.start(actor.main)  # its topics' pumps need a task of its own
        else:
            await actor.start_hosted(nursery)  # (a supervisor restarts through _incarnate)
        return agent

    @classmethod
    @asynccontextmanager
    async def open(
        cls, *, name: str | None = None, **options: Unpack[AgentOptions]
    ) -> AsyncIterator[Agent]:
        """An agent for the duration of a block; leaving the block stops it gracefully
        (``session_end`` hooks and ``on_shutdown`` run)::

            bus = alloy.PubSub()
            async with alloy.Agent.open(provider=p, pubsub=bus, session_id="s1",
                                        max_pending=4) as agent:
                with bus.subscribe("agent:s1:responses") as responses:
                    request_id = await agent.send_message("Summarise this report",
                                                          request_id="req-123")
                    response = await responses.receive()   # AgentResponse(request_id="req-123", ...)

        If the agent crashes inside the block, its exception is raised (bare) from the block.
        """
        spec = _prepare(options, name)
        body_error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                agent = cls(spec)
                agent._actor = actor = _Actor(spec)
                if spec.subscribe:
                    await nursery.start(actor.main)
                else:
                    await actor.start_hosted(nursery)
                try:
                    yield agent
                except BaseException as exc:
                    body_error = exc  # re-raised below, bare
                finally:
                    assert agent._actor is not None
                    agent._actor.request_stop()
        except BaseExceptionGroup as group:
            bare = _bare(group)
            raise bare from bare.__cause__  # keep its cause; drop the group context
        if body_error is not None:
            raise body_error

    async def _incarnate(
        self, spec: _Spec, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run one incarnation of this agent (a supervisor calls this again on restart)."""
        actor = _Actor(spec)
        self._actor = actor
        actor.starting = task_status
        del task_status  # not kept in this frame for the agent's whole life
        await actor.main()

    def _live(self) -> _Actor:
        actor = self._actor
        if actor is None:
            raise AgentStopped(f"agent {self.name!r} is not started", agent=self.name)
        if actor.ended:
            raise actor.death_error()
        return actor

    @property
    def responses_topic(self) -> str:
        """Where ``send_message`` results are published: ``agent:<session_id>:responses``.

        >>> agent.responses_topic
        'agent:s1:responses'
        """
        return _responses_topic(self.session_id)

    async def chat(self, prompt: Prompt) -> Result:
        """Send ``prompt`` and run the loop until the model is done; return the ``Result``.

        The conversation continues from the previous turns; ``result.messages`` is all of it,
        ``result.usage`` and ``result.turns`` are this request's. Like ``alloy.run``, a failed
        run raises an ``AlloyError`` whose ``result`` is the partial result, and the history
        is left as it was before the call. Bound it with your own cancel scope; cancelling
        cancels the turn and leaves the history unchanged::

            with trio.move_on_after(60):
                result = await agent.chat("Now refactor the main module")

        Raises ``AgentBusy`` / ``QueueFull`` when the agent cannot take it now, and
        ``AgentStopped`` when the agent is gone.
        """
        actor = self._live()
        request = _Request(
            id=secrets.token_urlsafe(16),
            message=_to_message(prompt),
            kind="call",
            inline=actor.host is not None,
        )
        try:
            await actor.call(lambda: actor.submit(request))
            if request.inline and request.state == "running":
                await actor._turn(request)  # an idle hosted agent: the turn is ours to run
            if not request.done.is_set():
                await request.done.wait()
        except BaseException:
            actor.abandon(request)
            raise
        assert request.answer is not None
        result: Result = request.answer.unwrap()
        return result

    @asynccontextmanager
    async def stream_chat(self, prompt: Prompt) -> AsyncIterator[Run]:
        """``chat``, streamed: an async context manager yielding a ``Run`` to iterate.

        Events are those of ``alloy.stream``; leaving the block early cancels the turn (the
        history is left unchanged and ``run.result`` holds the partial result)::

            async with agent.stream_chat("Explain OTP") as run:
                async for event in run:
                    if isinstance(event, alloy.TextDelta):
                        print(event.text, end="")
            print(run.result.usage)
        """
        actor = self._live()
        send, receive = trio.open_memory_channel[Event](EVENT_BUFFER)
        run = Run(receive)
        request = _Request(
            id=secrets.token_urlsafe(16),
            message=_to_message(prompt),
            kind="call",
            run=run,
            events=send,
        )
        body_error: BaseException | None = None
        with receive:
            try:
                await actor.call(lambda: actor.submit(request))
            except BaseException:
                actor.abandon(request)
                send.close()
                raise
            try:
                yield run
            except BaseException as exc:
                body_error = exc
            finally:
                if not request.done.is_set():
                    actor.abandon(request)
                    # The turn ends promptly once cancelled; wait (bounded) so run.result is set.
                    with trio.move_on_after(SHUTDOWN_GRACE, shield=True):
                        await request.done.wait()
        if body_error is not None:
            raise body_error
        run._raise_unseen()

    async def send_message(self, prompt: Prompt, *, request_id: str | None = None) -> str:
        """Queue ``prompt`` and return its request id at once; the result is published.

        An ``AgentResponse(request_id=..., result=...)`` appears on ``responses_topic`` when
        the request ends, however it ends (completed, failed, cancelled, agent stopped)::

            with bus.subscribe(agent.responses_topic) as responses:
                request_id = await agent.send_message("Summarise this report",
                                                      request_id="req-123")
                response = await responses.receive()

        Raises ``NoPubSub`` without ``pubsub=``, ``AgentBusy`` when a turn runs and
        ``max_pending`` is 0, ``QueueFull`` when ``max_pending`` requests already wait,
        ``ConfigError`` for a ``request_id`` already queued or running.
        """
        actor = self._live()
        if self.pubsub is None:
            raise NoPubSub(
                f"agent {self.name!r} has no pubsub to publish the response on; start it with "
                "pubsub=alloy.PubSub()",
                agent=self.name,
            )
        request = _Request(
            id=secrets.token_urlsafe(16) if request_id is None else _check_request_id(request_id),
            message=_to_message(prompt),
            kind="async",
        )
        await actor.call(lambda: actor.submit(request))
        return request.id

    async def cancel_request(self, request_id: str) -> bool:
        """Cancel a queued or running request; ``False`` if no such request is pending.

        The cancelled request's ``AgentResponse`` is published with ``cancelled="queued"``
        (it never ran) or ``cancelled="running"`` (its partial result; the history is left as
        it was before the request)::

            if await agent.cancel_request("req-123"):
                ...
        """
        actor = self._live()
        return await actor.call(lambda: actor.cancel(request_id))

    async def messages(self) -> tuple[Message, ...]:
        """The conversation so far (committed turns only: while a turn runs, the history
        before it)::

            [m.role for m in await agent.messages()]   # ['user', 'assistant', ...]
        """
        actor = self._live()
        return await actor.call(lambda: actor.history)

    async def usage(self) -> Usage:
        """Tokens spent by the conversation, every request added up (failed and cancelled
        ones included), since the start or the last ``reset``.

        >>> (await agent.usage()).total_tokens
        30
        """
        actor = self._live()
        return await actor.call(lambda: actor.usage)

    async def reset(self) -> Session:
        """Start a new conversation: clear the history, ``usage``, ``turns`` and
        ``last_status``; return the ``Session`` that was cleared (so its usage can still be
        billed). Raises ``AgentBusy`` while a turn runs::

            finished = await agent.reset()
            bill(finished.usage)
        """
        actor = self._live()
        return await actor.call(actor.reset)

    async def set_model(self, provider: Provider) -> None:
        """Use another provider from the next turn on; history, usage and every other option
        are kept. Raises ``AgentBusy`` while a turn runs::

            await agent.set_model(OpenAI(api_key=key, model="gpt-5.4"))
        """
        actor = self._live()
        checked = check_provider(provider)
        await actor.call(lambda: actor.set_model(checked))

    async def health(self) -> AgentHealth:
        """A snapshot (status, turns, message_count, usage, uptime, busy, pending...),
        answered at once even while a turn runs::

            if (await agent.health()).pending > 10:
                raise Overloaded()
        """
        actor = self._live()
        return await actor.call(actor.health)

    async def export_session(self) -> Session:
        """The conversation as a ``Session`` value (id, messages, usage, metadata, times).

        >>> session = await agent.export_session()
        >>> session.id, len(session.messages), session.created_at <= session.updated_at
        ('s1', 4, True)
        """
        actor = self._live()
        return await actor.call(actor.export)

    async def stop(self) -> None:
        """Stop the agent and wait until it is gone.

        The running turn is cancelled (its caller gets ``AgentStopped`` with the partial
        result), queued requests fail with ``AgentStopped``, then ``session_end`` hooks and
        ``on_shutdown`` run. Stopping a stopped agent does nothing::

            await agent.stop()

        Under a supervisor, a ``permanent`` agent that stops is restarted (use
        ``sup.stop_child(name)`` to stop it for good).
        """
        actor = self._actor
        if actor is None:
            return
        actor.request_stop()
        await actor._wait(lambda: actor.ended)

    def __repr__(self) -> str:
        actor = self._actor
        state = (
            "not started"
            if actor is None
            else "stopped"
            if actor.ended
            else "running"
            if actor.current is not None
            else "idle"
        )
        return f"<alloy.Agent {self.name!r} {state}>"
