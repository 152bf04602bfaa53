"""Cancellation: breaking out, cancelling the caller, mid-stream and mid-tool.

After the block exits, no task of the run is left and no tool process survives; the run object
holds a partial result in which every tool call has a result.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

import alloy
from alloy.testing import ScriptedProvider, call, reply, text, tool_call
from alloy.tools import Bash
from support import answered, count_tasks


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie waiting for its parent to reap it is dead too
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return True


async def wait_gone(pid: int) -> bool:
    with trio.move_on_after(10):
        while not process_gone(pid):
            await trio.sleep(0.02)
    return process_gone(pid)


class Blocker:
    """A tool that waits until cancelled, and notes that it was."""

    name = "block"
    description = "Wait forever."
    input_schema: Mapping[str, Any] = {"type": "object"}

    def __init__(self) -> None:
        self.started = trio.Event()
        self.cancelled = False

    async def execute(self, arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        self.started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            self.cancelled = True
            raise
        return "unreachable"


async def test_break_mid_stream_keeps_the_streamed_text() -> None:
    before = count_tasks()
    provider = ScriptedProvider([text("one two three four five six")], delta_delay=0.001)
    seen = []
    async with alloy.stream("go", provider=provider) as run:
        async for event in run:
            if isinstance(event, alloy.TextDelta):
                seen.append(event.text)
            if len(seen) == 2:
                break
    assert count_tasks() == before
    assert run.result is not None
    assert run.result.status == "cancelled"
    assert run.result.text.startswith("".join(seen))
    assert run.result.turns == 0
    assert run.result.messages[-1].role == "assistant"


async def test_break_mid_tool_cancels_it_and_answers_every_call(echo: object) -> None:
    blocker = Blocker()
    provider = ScriptedProvider(
        [reply(call("echo", {"text": "quick"}), call("block", {})), text("never")]
    )
    before = count_tasks()
    async with alloy.stream("go", provider=provider, tools=[echo, blocker]) as run:
        async for event in run:
            if isinstance(event, alloy.ToolFinished) and event.call.name == "echo":
                await blocker.started.wait()
                break
    assert count_tasks() == before
    assert blocker.cancelled
    result = run.result
    assert result is not None
    assert result.status == "cancelled"
    answered(result.messages)
    answers = result.messages[-1].tool_results
    assert answers[0].content == "Echo: quick" and not answers[0].is_error
    assert answers[1].is_error and "cancelled" in answers[1].content
    assert {r.name: r.outcome for r in result.tool_calls} == {"echo": "ok", "block": "cancelled"}
    assert provider.remaining == 1


async def test_caller_cancellation_of_a_stream() -> None:
    blocker = Blocker()
    provider = ScriptedProvider([tool_call("block", {}), text("never")])
    with trio.move_on_after(5) as scope:
        async with alloy.stream("go", provider=provider, tools=[blocker]) as run:
            await blocker.started.wait()
            scope.cancel()
            async for _ in run:
                pass
    assert scope.cancelled_caught
    assert blocker.cancelled
    assert run.result is not None
    assert run.result.status == "cancelled"
    answered(run.result.messages)


async def test_resume_after_cancellation() -> None:
    blocker = Blocker()
    provider = ScriptedProvider([tool_call("block", {})])
    async with alloy.stream("go", provider=provider, tools=[blocker]) as run:
        await blocker.started.wait()
    assert run.result is not None
    follow_up = ScriptedProvider([text("resumed")])
    resumed = await alloy.run("go on", provider=follow_up, messages=run.result.messages)
    assert resumed.text == "resumed"
    answered(resumed.messages)


async def test_cancelling_run_cancels_every_tool() -> None:
    blockers = [Blocker() for _ in range(3)]

    class Named(Blocker):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    tools = [Named(f"block{i}") for i in range(3)]
    provider = ScriptedProvider([reply(*(call(t.name, {}) for t in tools))])
    before = count_tasks()
    with trio.move_on_after(5) as scope:
        async with trio.open_nursery() as nursery:

            async def cancel_when_started() -> None:
                for tool in tools:
                    await tool.started.wait()
                scope.cancel()

            nursery.start_soon(cancel_when_started)
            await alloy.run("go", provider=provider, tools=tools)
    assert scope.cancelled_caught
    assert all(tool.cancelled for tool in tools)
    assert count_tasks() == before
    del blockers


async def test_cancel_while_the_model_is_thinking() -> None:
    before = count_tasks()
    provider = ScriptedProvider([text("slow " * 100)], delta_delay=0.01)
    with trio.move_on_after(0.05):
        await alloy.run("go", provider=provider, on_event=lambda e: None)
    assert count_tasks() == before


async def test_break_kills_the_bash_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    provider = ScriptedProvider(
        [tool_call("bash", {"command": f"sleep 300 & echo $! > {pid_file}; wait"}), text("x")]
    )
    async with alloy.stream(
        "go", provider=provider, tools=[Bash], working_directory=tmp_path
    ) as run:
        async for event in run:
            if isinstance(event, alloy.ToolStarted):
                with trio.fail_after(10):
                    while not pid_file.exists() or not pid_file.read_text().strip():
                        await trio.sleep(0.01)
                break
    grandchild = int(pid_file.read_text())
    assert await wait_gone(grandchild)
    assert run.result is not None
    assert run.result.tool_calls[0].outcome == "cancelled"


async def test_caller_cancel_kills_the_bash_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    provider = ScriptedProvider(
        [tool_call("bash", {"command": f"sleep 300 & echo $! > {pid_file}; wait"})]
    )
    with trio.move_on_after(5) as scope:
        async with trio.open_nursery() as nursery:

            async def cancel_when_spawned() -> None:
                while not pid_file.exists() or not pid_file.read_text().strip():
                    await trio.sleep(0.01)
                scope.cancel()

            nursery.start_soon(cancel_when_spawned)
            await alloy.run("go", provider=provider, tools=[Bash], working_directory=tmp_path)
    assert scope.cancelled_caught
    assert await wait_gone(int(pid_file.read_text()))


async def test_tool_timeout_kills_the_bash_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    provider = ScriptedProvider(
        [
            tool_call("bash", {"command": f"sleep 300 & echo $! > {pid_file}; wait", "timeout": 1}),
            text("gave up"),
        ]
    )
    result = await alloy.run("go", provider=provider, tools=[Bash], working_directory=tmp_path)
    assert result.text == "gave up"
    answer = result.messages[2].tool_results[0]
    assert answer.is_error and "timed out" in answer.content
    assert await wait_gone(int(pid_file.read_text()))


async def test_cancelled_sync_tool_says_its_thread_was_abandoned() -> None:
    import threading

    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    @alloy.tool
    def wait_for_release() -> str:
        """Block a worker thread."""
        started.set()
        release.wait(30)
        finished.set()
        return "released"

    provider = ScriptedProvider([tool_call("wait_for_release", {}), text("never")])
    try:
        with trio.fail_after(10):
            async with alloy.stream("go", provider=provider, tools=[wait_for_release]) as run:
                async for event in run:
                    if isinstance(event, alloy.ToolStarted):
                        await trio.to_thread.run_sync(started.wait, 10, abandon_on_cancel=True)
                        break
    finally:
        release.set()
    assert run.result is not None
    answer = run.result.messages[-1].tool_results[0]
    assert answer.is_error
    assert "worker thread was abandoned" in answer.content
    with trio.fail_after(10):
        assert await trio.to_thread.run_sync(finished.wait, 10, abandon_on_cancel=True)
