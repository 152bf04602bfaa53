"""alloy.open_supervisor: restart policies, strategies, intensity, supervised agents.

Timed tests run on Trio's MockClock (autojump_clock), so intensity windows are exact.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import trio
import trio.testing

import alloy
from alloy import _agent
from alloy._agent import Agent, AgentCrashed, AgentStopped, Session
from alloy._supervisor import ChildSpec, RestartIntensityExceeded, open_supervisor
from alloy.testing import ScriptedProvider, delay, text
from support import count_tasks


class Boom(Exception):
    pass


class Fleet:
    """Generic children that record their lifecycles and crash on command."""

    def __init__(self) -> None:
        self.starts: Counter[str] = Counter()
        self.stops: list[str] = []
        self.crash_now: dict[str, trio.Event] = {}

    def spec(
        self, name: str, restart: Any = "permanent", *, lifetime: float | None = None
    ) -> ChildSpec:
        async def start(*, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
            self.starts[name] += 1
            self.crash_now[name] = event = trio.Event()
            task_status.started(f"{name}#{self.starts[name]}")
            try:
                if lifetime is not None:
                    await trio.sleep(lifetime)
                    return  # a normal exit
                await event.wait()
                raise Boom(name)
            except trio.Cancelled:
                self.stops.append(name)
                raise

        return ChildSpec(name=name, start=start, restart=restart)

    async def crash(self, name: str) -> None:
        self.crash_now[name].set()
        await trio.testing.wait_all_tasks_blocked()


# -- strategies ---------------------------------------------------------------------------------


async def test_one_for_one_restarts_only_the_crashed_child() -> None:
    fleet = Fleet()
    async with open_supervisor(strategy="one_for_one") as sup:
        for name in ("a", "b", "c"):
            await sup.start_child(fleet.spec(name))
        await fleet.crash("b")
        assert fleet.starts == {"a": 1, "b": 2, "c": 1}
        assert fleet.stops == []  # the siblings never noticed
        assert sup.child("b") == "b#2"
        assert sup.restarts == 1
    assert fleet.stops == ["c", "b", "a"]  # shut down in reverse start order


async def test_one_for_all_restarts_everyone() -> None:
    fleet = Fleet()
    async with open_supervisor(strategy="one_for_all") as sup:
        for name in ("a", "b", "c"):
            await sup.start_child(fleet.spec(name))
        await fleet.crash("b")
        assert fleet.starts == {"a": 2, "b": 2, "c": 2}
        assert fleet.stops == ["c", "a"]  # the others, in reverse start order
        assert sup.children == ("a", "b", "c")
        assert sup.restarts == 1


async def test_rest_for_one_restarts_the_later_children() -> None:
    fleet = Fleet()
    async with open_supervisor(strategy="rest_for_one") as sup:
        for name in ("a", "b", "c", "d"):
            await sup.start_child(fleet.spec(name))
        await fleet.crash("b")
        assert fleet.starts == {"a": 1, "b": 2, "c": 2, "d": 2}
        assert fleet.stops == ["d", "c"]


async def test_a_temporary_sibling_is_not_restarted_with_the_group() -> None:
    fleet = Fleet()
    async with open_supervisor(strategy="one_for_all") as sup:
        await sup.start_child(fleet.spec("a"))
        await sup.start_child(fleet.spec("t", "temporary"))
        await fleet.crash("a")
        assert sup.children == ("a",)
        assert fleet.starts == {"a": 2, "t": 1}


# -- restart policies ---------------------------------------------------------------------------


async def test_restart_policies(autojump_clock: trio.testing.MockClock) -> None:
    fleet = Fleet()
    async with open_supervisor() as sup:
        await sup.start_child(fleet.spec("perm-crash"))
        await sup.start_child(fleet.spec("perm-exit", lifetime=1))
        await sup.start_child(fleet.spec("trans-crash", "transient"))
        await sup.start_child(fleet.spec("trans-exit", "transient", lifetime=1))
        await sup.start_child(fleet.spec("temp-crash", "temporary"))
        await fleet.crash("perm-crash")
        await fleet.crash("trans-crash")
        await fleet.crash("temp-crash")
        await trio.sleep(1.5)  # the lifetime=1 children exit normally once
        assert fleet.starts["perm-crash"] == 2
        assert fleet.starts["perm-exit"] == 2  # permanent: restarted after a normal exit too
        assert fleet.starts["trans-crash"] == 2
        assert fleet.starts["trans-exit"] == 1  # transient: a normal exit is final
        assert fleet.starts["temp-crash"] == 1  # temporary: never restarted
        assert sup.children == ("perm-crash", "perm-exit", "trans-crash")


# -- intensity ----------------------------------------------------------------------------------


async def test_too_many_restarts_escalate_bare(autojump_clock: trio.testing.MockClock) -> None:
    fleet = Fleet()
    before = count_tasks()
    with pytest.raises(RestartIntensityExceeded) as caught:
        async with open_supervisor(max_restarts=3, max_seconds=5) as sup:
            await sup.start_child(fleet.spec("steady"))
            await sup.start_child(fleet.spec("flaky"))
            for _ in range(4):
                await trio.sleep(1)
                await fleet.crash("flaky")
            await trio.sleep_forever()  # pragma: no cover
    error = caught.value
    assert error.child == "flaky"
    assert (error.max_restarts, error.max_seconds) == (3, 5)
    assert isinstance(error.__cause__, Boom)
    assert trio.current_time() == 4
    assert fleet.starts == {"steady": 1, "flaky": 4}
    assert "steady" in fleet.stops  # every child was stopped
    assert count_tasks() == before


async def test_restarts_spread_out_in_time_are_fine(autojump_clock: trio.testing.MockClock) -> None:
    fleet = Fleet()
    async with open_supervisor(max_restarts=2, max_seconds=5) as sup:
        await sup.start_child(fleet.spec("flaky"))
        for _ in range(10):
            await trio.sleep(2.6)  # at most two restarts in any 5 s
            await fleet.crash("flaky")
        assert sup.restarts == 10


async def test_max_restarts_zero_gives_up_at_the_first_crash() -> None:
    fleet = Fleet()
    with pytest.raises(RestartIntensityExceeded):
        async with open_supervisor(max_restarts=0) as sup:
            await sup.start_child(fleet.spec("a"))
            await fleet.crash("a")
            await trio.sleep_forever()  # pragma: no cover


async def test_a_failing_restart_counts_towards_the_intensity() -> None:
    attempts = 0

    async def start(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal attempts
        attempts += 1
        if attempts > 1:
            raise Boom("cannot start again")
        task_status.started()
        raise Boom("first crash")

    with pytest.raises(RestartIntensityExceeded) as caught:
        async with open_supervisor(max_restarts=3, max_seconds=5) as sup:
            await sup.start_child(ChildSpec(name="x", start=start))
            await trio.sleep_forever()  # pragma: no cover
    assert attempts == 4  # the first start, then three failed restarts
    assert str(caught.value.__cause__) == "cannot start again"


# -- starting and stopping ----------------------------------------------------------------------


async def test_a_failed_start_raises_to_the_caller_and_adds_nothing() -> None:
    async def broken(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        raise Boom("init failed")

    async with open_supervisor() as sup:
        with pytest.raises(Boom):
            await sup.start_child(ChildSpec(name="broken", start=broken))
        assert sup.children == ()
        with pytest.raises(alloy.ConfigError):
            await sup.start_child(ChildSpec(name="", start=broken))


async def test_children_given_up_front_start_in_order_and_failures_raise_bare() -> None:
    fleet = Fleet()
    async with open_supervisor(children=[fleet.spec("a"), fleet.spec("b")]) as sup:
        assert sup.children == ("a", "b")

    async def broken(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        raise Boom("init failed")

    with pytest.raises(Boom):
        async with open_supervisor(children=[ChildSpec(name="x", start=broken)]):
            pass  # pragma: no cover


async def test_duplicate_names_and_bad_settings() -> None:
    fleet = Fleet()
    async with open_supervisor() as sup:
        await sup.start_child(fleet.spec("a"))
        with pytest.raises(alloy.ConfigError):
            await sup.start_child(fleet.spec("a"))
        with pytest.raises(KeyError):
            sup.agent("a")  # not an agent
        with pytest.raises(KeyError):
            sup.child("nobody")
    for bad in ({"strategy": "all_for_one"}, {"max_restarts": -1}, {"max_seconds": 0}):
        with pytest.raises(alloy.ConfigError):
            async with open_supervisor(**bad):
                pass  # pragma: no cover
    with pytest.raises(alloy.ConfigError):
        ChildSpec(name="x", start=fleet.spec("x").start, restart="sometimes")  # type: ignore[arg-type]


async def test_stop_child_stops_for_good() -> None:
    fleet = Fleet()
    async with open_supervisor() as sup:
        await sup.start_child(fleet.spec("a"))
        await sup.stop_child("a")
        assert sup.children == ()
        assert fleet.stops == ["a"]
        assert fleet.starts == {"a": 1}
        with pytest.raises(KeyError):
            await sup.stop_child("a")


async def test_base_exceptions_are_not_caught() -> None:
    class Fatal(BaseException):
        pass

    async def fatal(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.lowlevel.checkpoint()
        raise Fatal

    with pytest.raises(Fatal):
        async with open_supervisor() as sup:
            await sup.start_child(ChildSpec(name="f", start=fatal))
            await trio.sleep_forever()  # pragma: no cover


async def test_the_body_error_is_raised_bare() -> None:
    fleet = Fleet()
    with pytest.raises(ValueError, match="body"):
        async with open_supervisor() as sup:
            await sup.start_child(fleet.spec("a"))
            raise ValueError("body")
    assert fleet.stops == ["a"]


async def test_no_task_survives_the_supervisor(autojump_clock: trio.testing.MockClock) -> None:
    fleet = Fleet()
    before = count_tasks()
    async with open_supervisor(strategy="one_for_all") as sup:
        await sup.start_child(fleet.spec("a"))
        await sup.start_agent("agent", provider=ScriptedProvider([delay(100, text("x"))]))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.agent("agent").chat, "busy")
            await trio.sleep(1)
            assert count_tasks() > before
            nursery.cancel_scope.cancel()
        await fleet.crash("a")
    assert count_tasks() == before


# -- supervised agents --------------------------------------------------------------------------


def crash_on(monkeypatch: pytest.MonkeyPatch, prompt: str) -> None:
    """A turn whose prompt is ``prompt`` dies of a bug (not an AlloyError): the agent crashes."""
    real = _agent.execute_run

    async def execute_run(config: Any, *args: Any) -> alloy.Result:
        messages = args[2] if len(args) > 2 else config.messages
        if messages[-1].text == prompt:
            raise ZeroDivisionError("a bug")
        return await real(config, *args)

    monkeypatch.setattr(_agent, "execute_run", execute_run)


def answering(*texts: str) -> ScriptedProvider:
    return ScriptedProvider([text(t) for t in texts])


async def test_a_crashed_agent_is_restarted_and_reached_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crash_on(monkeypatch, "crash")
    async with open_supervisor() as sup:
        coder = await sup.start_agent("coder", provider=answering("first", "second"))
        assert coder is sup.agent("coder")
        await coder.chat("hello")
        assert len(await coder.messages()) == 2
        with pytest.raises(AgentCrashed) as caught:
            await coder.chat("crash")
        assert caught.value.agent == "coder"
        await trio.testing.wait_all_tasks_blocked()
        # The same handle reaches the new incarnation, which starts from its options.
        assert await sup.agent("coder").messages() == ()
        assert (await coder.chat("again")).text == "second"
        assert sup.restarts == 1


async def test_one_for_one_never_disturbs_a_sibling(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    crash_on(monkeypatch, "crash")
    async with open_supervisor(strategy="one_for_one") as sup:
        await sup.start_agent("fragile", provider=answering())
        await sup.start_agent("steady", provider=ScriptedProvider([delay(10, text("finished"))]))
        results: list[str] = []

        async def long_chat() -> None:
            results.append((await sup.agent("steady").chat("long job")).text)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(long_chat)
            await trio.sleep(1)
            with pytest.raises(AgentCrashed):
                await sup.agent("fragile").chat("crash")
        assert results == ["finished"]  # the sibling's turn ran to its end, never cancelled
        assert trio.current_time() == 10
        assert len(await sup.agent("steady").messages()) == 2


async def test_one_for_all_restarts_the_sibling_agents_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crash_on(monkeypatch, "crash")
    sessions: list[Session] = []
    async with open_supervisor(strategy="one_for_all") as sup:
        await sup.start_agent("a", provider=answering(), on_shutdown=sessions.append)
        await sup.start_agent("b", provider=answering("hi"), on_shutdown=sessions.append)
        await sup.agent("b").chat("remember me")
        with pytest.raises(AgentCrashed):
            await sup.agent("a").chat("crash")
        await trio.testing.wait_all_tasks_blocked()
        assert await sup.agent("b").messages() == ()  # b was restarted from scratch
        assert [len(s.messages) for s in sessions] == [0, 2]  # a crashed, then b was stopped
    assert len(sessions) == 4  # and both stop again at the end


async def test_supervised_agents_run_their_shutdown_hooks_on_exit() -> None:
    calls: list[str] = []

    class Hooks(alloy.Middleware):
        def __init__(self, name: str) -> None:
            self.name = name

        def session_start(self, run: alloy.RunContext) -> None:
            calls.append(f"start {self.name}")

        def session_end(self, run: alloy.RunContext, result: alloy.Result) -> None:
            calls.append(f"end {self.name}")

    def on_shutdown(session: Session) -> None:
        calls.append(f"shutdown {session.metadata['agent']}")

    async with open_supervisor() as sup:
        for name in ("one", "two"):
            await sup.start_agent(
                name, provider=answering(), middleware=[Hooks(name)], on_shutdown=on_shutdown
            )
    assert calls == [
        "start one",
        "start two",
        "end two",
        "shutdown two",
        "end one",
        "shutdown one",
    ]


async def test_stopping_a_permanent_agent_restarts_it_but_stop_child_does_not() -> None:
    async with open_supervisor() as sup:
        agent = await sup.start_agent("a", provider=answering())
        await agent.stop()
        await trio.testing.wait_all_tasks_blocked()
        assert (await agent.health()).status == "idle"  # a new incarnation
        assert sup.restarts == 1
        await sup.stop_child("a")
        with pytest.raises(AgentStopped):
            await agent.health()
        with pytest.raises(KeyError):
            sup.agent("a")


async def test_a_transient_agent_that_stops_stays_stopped() -> None:
    async with open_supervisor() as sup:
        agent = await sup.start_agent("a", provider=answering(), restart="transient")
        await agent.stop()
        await trio.testing.wait_all_tasks_blocked()
        assert sup.children == ()
        assert sup.restarts == 0


async def test_child_spec_agent_validates_options_up_front() -> None:
    with pytest.raises(alloy.ConfigError):
        ChildSpec.agent("a", provider=answering(), max_pending=-1)
    spec = ChildSpec.agent("a", provider=answering(), session_id="s-a")
    assert isinstance(spec.handle, Agent)
    async with open_supervisor(children=[spec]) as sup:
        assert sup.agent("a") is spec.handle
        assert spec.handle.session_id == "s-a"
        assert spec.handle.name == "a"


async def test_agent_start_failures_are_raised_from_start_agent() -> None:
    class Gate(alloy.Middleware):
        def session_start(self, run: alloy.RunContext) -> alloy.Halt:
            return alloy.Halt("no")

    async with open_supervisor() as sup:
        with pytest.raises(_agent.SessionHalted):
            await sup.start_agent("a", provider=answering(), middleware=[Gate()])
        assert sup.children == ()
