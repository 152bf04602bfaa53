"""The built-in ``bash`` tool: real subprocesses, process groups, capped output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings, strategies as st

from alloy import ConfigError, Tool, ToolContext, ToolError
from alloy._tools._bash import _Output, scrub_environment
from alloy.tools import Bash, BashTool

# Generous bounds: these guard against hangs, they do not measure speed.
HANG = 60


def context(root: Path) -> ToolContext:
    return ToolContext(working_directory=root)


async def run(command: str, root: Path, tool: BashTool = Bash, **arguments: object) -> str:
    with trio.fail_after(HANG):
        return await tool.execute({"command": command, **arguments}, context(root))


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            return file.read().rpartition(b")")[2].split()[0].decode()
    except OSError:
        return None


async def gone(pid: int) -> bool:
    """Whether ``pid`` has exited, allowing a little time (a zombie awaiting its reaper counts)."""
    with trio.move_on_after(HANG):
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            if _state(pid) in (None, "Z", "X"):
                return True
            await trio.sleep(0.05)
    return False


async def read_pid(path: Path) -> int:
    with trio.fail_after(HANG):
        while True:
            if path.exists() and path.read_text().strip():
                return int(path.read_text())
            await trio.sleep(0.02)


# ---- the Tool protocol and configuration -----------------------------------------------------


def test_bash_is_a_tool() -> None:
    assert isinstance(Bash, Tool)
    assert isinstance(Bash, BashTool)
    assert Bash.name == "bash"
    assert Bash.sequential is False
    schema = Bash.input_schema
    assert schema["required"] == ["command"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"command", "timeout"}
    assert schema["properties"]["timeout"]["type"] == "number"


def test_timeout_bounds_the_slowest_call() -> None:
    assert Bash.timeout == 300 + 2 + 5
    assert BashTool(max_timeout=600, kill_grace=1).timeout == 606
    assert BashTool(max_timeout=10, kill_grace=10).timeout == 10 + 23  # room for the clean-up


def test_description_states_the_configured_limits() -> None:
    tool = BashTool(default_timeout=10, max_timeout=20, max_output_bytes=500)
    assert "default 10, at most 20" in tool.description
    assert "500 bytes" in tool.description
    assert "default 10, at most 20" in tool.input_schema["properties"]["timeout"]["description"]
    assert "restricted" in BashTool(restricted=True).description
    assert "default 60, at most 300" in Bash.description
    assert tool == BashTool(default_timeout=10, max_timeout=20, max_output_bytes=500)


def test_the_tool_is_frozen() -> None:
    with pytest.raises(AttributeError):
        Bash.max_timeout = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "options",
    [
        {"default_timeout": 0},
        {"max_timeout": -1},
        {"max_output_bytes": 0},
        {"kill_grace": -1},
        {"env": "everything"},
        {"env": {"PATH": 1}},
    ],
)
def test_bad_configuration(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        BashTool(**options)  # type: ignore[arg-type]


# ---- running commands -----------------------------------------------------------------------


async def test_runs_a_command(tmp_path: Path) -> None:
    assert await run("echo hello", tmp_path) == "hello\nexit code: 0"


async def test_a_non_zero_exit_is_a_normal_result(tmp_path: Path) -> None:
    assert await run("echo failing; exit 42", tmp_path) == "failing\nexit code: 42"


async def test_no_output(tmp_path: Path) -> None:
    assert await run("true", tmp_path) == "exit code: 0"


async def test_output_without_a_final_newline(tmp_path: Path) -> None:
    assert await run("printf abc", tmp_path) == "abc\nexit code: 0"


async def test_captures_stderr_in_order(tmp_path: Path) -> None:
    out = await run("echo one; echo error_msg >&2; echo three", tmp_path)
    assert out == "one\nerror_msg\nthree\nexit code: 0"


async def test_runs_in_the_working_directory(tmp_path: Path) -> None:
    out = await run("pwd", tmp_path)
    assert out == f"{tmp_path.resolve()}\nexit code: 0"


async def test_runs_bash_not_sh(tmp_path: Path) -> None:
    out = await run('echo "$0"; [[ 1 == 1 ]] && echo bashism', tmp_path)
    assert out == "bash\nbashism\nexit code: 0"


async def test_stdin_is_empty(tmp_path: Path) -> None:
    assert await run("cat; read line; echo read=$?", tmp_path) == "read=1\nexit code: 0"


async def test_killed_by_a_signal(tmp_path: Path) -> None:
    out = await run("echo before; kill -9 $$", tmp_path)
    assert out == "before\nexit code: -9 (killed by SIGKILL)"


async def test_invalid_utf8_output_is_replaced(tmp_path: Path) -> None:
    assert await run(r"printf 'bad \xff byte'", tmp_path) == "bad \ufffd byte\nexit code: 0"


async def test_a_missing_working_directory(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="Cannot start bash in"):
        await run("true", tmp_path / "nope")


async def test_rejects_an_empty_command(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="must not be empty"):
        await run("   ", tmp_path)


# ---- output cap ------------------------------------------------------------------------------


async def test_truncates_long_output_keeping_both_ends(tmp_path: Path) -> None:
    out = await run("echo START; head -c 40000 /dev/zero | tr '\\0' x; echo; echo END", tmp_path)
    assert out.startswith("START\nxxx")
    assert out.endswith("xxx\nEND\nexit code: 0")
    assert "[... 10011 bytes of output omitted ...]" in out
    body = out.removesuffix("\nexit code: 0")
    assert len(body) <= 30_000 + len("\n\n[... 10011 bytes of output omitted ...]\n\n")


async def test_huge_output_does_not_block_the_command(tmp_path: Path) -> None:
    tool = BashTool(max_output_bytes=100)
    out = await run("head -c 20000000 /dev/zero; echo done", tmp_path, tool)
    assert out.endswith("done\nexit code: 0")
    assert "[... 19999905 bytes of output omitted ...]" in out


async def test_small_cap_end_to_end(tmp_path: Path) -> None:
    tool = BashTool(max_output_bytes=10)
    assert await run("echo 123456789", tmp_path, tool) == "123456789\nexit code: 0"
    out = await run("echo 0123456789abcdefghij", tmp_path, tool)
    assert out == "01234\n\n[... 11 bytes of output omitted ...]\n\nghij\nexit code: 0"


@settings(max_examples=300, deadline=None)
@given(
    cap=st.integers(1, 64),
    chunks=st.lists(st.binary(max_size=50), max_size=12),
    text=st.booleans(),
)
def test_the_output_body_never_exceeds_the_cap(cap: int, chunks: list[bytes], text: bool) -> None:
    if text:  # valid UTF-8 with multi-byte characters, cut anywhere
        chunks = [chunk.decode("latin-1").encode("utf-8") for chunk in chunks]
    output = _Output(cap)
    for chunk in chunks:
        output.add(chunk)
    data = b"".join(chunks)
    body = output.render()
    if len(data) <= cap:
        assert body == data.decode("utf-8", errors="replace")
        return
    head, notice, tail = body.partition("\n\n[... ")
    assert notice
    omitted = int(tail.split(" ", 1)[0])
    tail = tail.split(" bytes of output omitted ...]\n\n", 1)[1]
    assert len(head) + len(tail) <= cap
    if text:
        whole = data.decode("utf-8")
        assert whole.startswith(head)
        assert whole.endswith(tail)
        assert len(head.encode()) + omitted + len(tail.encode()) == len(data)


# ---- timeouts ---------------------------------------------------------------------------------


async def test_timeout_is_an_error_with_the_output_so_far(tmp_path: Path) -> None:
    with pytest.raises(ToolError) as info:
        await run("echo before; sleep 30", tmp_path, timeout=0.5)
    message = str(info.value)
    assert message.startswith("Command timed out after 0.5s")
    assert "input" in message and "server" in message and "loop" in message
    assert message.endswith("Output so far:\nbefore\n")


async def test_timeout_is_capped_at_max_timeout(tmp_path: Path) -> None:
    tool = BashTool(max_timeout=0.5)
    with pytest.raises(ToolError, match=r"timed out after 0.5s .*at most 0.5s"):
        await run("sleep 30", tmp_path, tool, timeout=1000)


async def test_timeout_may_exceed_the_default(tmp_path: Path) -> None:
    tool = BashTool(default_timeout=0.2, max_timeout=HANG)
    with pytest.raises(ToolError, match="timed out"):
        await run("sleep 1; echo done", tmp_path, tool)
    assert await run("sleep 1; echo done", tmp_path, tool, timeout=HANG - 10) == (
        "done\nexit code: 0"
    )


async def test_rejects_a_non_positive_timeout(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="timeout must be a positive number"):
        await run("true", tmp_path, timeout=0)


# ---- process groups ---------------------------------------------------------------------------


async def test_a_background_job_does_not_hold_the_call(tmp_path: Path) -> None:
    out = await run("sleep 30 & echo $! > bg.pid; echo hi", tmp_path)
    assert out == "hi\nexit code: 0"
    assert await gone(int((tmp_path / "bg.pid").read_text()))


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="timed out"):
        await run("sleep 300 & echo $! > grandchild.pid; wait", tmp_path, timeout=2)
    assert await gone(await read_pid(tmp_path / "grandchild.pid"))


async def test_cancellation_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    with trio.fail_after(HANG):
        async with trio.open_nursery() as nursery:
            cancelled = trio.CancelScope()

            async def call() -> None:
                with cancelled:
                    await Bash.execute(
                        {"command": "sleep 300 & echo $! > grandchild.pid; wait"},
                        context(tmp_path),
                    )

            nursery.start_soon(call)
            pid = await read_pid(pidfile)
            cancelled.cancel()
    assert cancelled.cancelled_caught
    assert await gone(pid)


async def test_cancellation_through_move_on_after(tmp_path: Path) -> None:
    with trio.move_on_after(0.5) as scope:
        await Bash.execute(
            {"command": "sleep 300 & echo $! > grandchild.pid; wait"}, context(tmp_path)
        )
    assert scope.cancelled_caught
    if (tmp_path / "grandchild.pid").exists():  # bash got that far within 0.5 s
        assert await gone(await read_pid(tmp_path / "grandchild.pid"))


async def test_sigkill_after_the_grace_when_sigterm_is_ignored(tmp_path: Path) -> None:
    tool = BashTool(kill_grace=0.5)
    command = "trap '' TERM; sleep 300 & echo $! > stubborn.pid; wait"
    with pytest.raises(ToolError, match="timed out"):
        await run(command, tmp_path, tool, timeout=2)
    assert await gone(await read_pid(tmp_path / "stubborn.pid"))


async def test_other_tasks_keep_running_meanwhile(tmp_path: Path) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await run("sleep 0.5", tmp_path)
        nursery.cancel_scope.cancel()
    assert ticks > 1


# ---- environment ------------------------------------------------------------------------------


def test_scrub_environment() -> None:
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/home/me",
        "OPENAI_API_KEY": "sk",
        "github_token": "t",
        "DB_PASSWORD": "p",
        "MYSQL_PWD_PASSWD": "p",
        "CLIENT_SECRET": "s",
        "GOOGLE_APPLICATION_CREDENTIALS": "/k.json",
        "AWS_REGION": "eu-west-1",
        "azure_tenant": "x",
        "GCP_PROJECT": "x",
        "SSH_AUTH_SOCK": "/tmp/agent",
        "PRIVATE_THING": "x",
        "LANG": "C.UTF-8",
    }
    assert scrub_environment(environ) == {"PATH": "/usr/bin", "HOME": "/home/me", "LANG": "C.UTF-8"}


async def test_scrubs_credentials_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("ALLOY_TEST_VISIBLE", "visible")
    out = await run("env", tmp_path)
    assert "ALLOY_TEST_VISIBLE=visible" in out
    assert "sk-secret" not in out and "OPENAI_API_KEY" not in out
    assert "aws-secret" not in out
    inherited = await run("env", tmp_path, BashTool(env="inherit"))
    assert "OPENAI_API_KEY=sk-secret" in inherited


async def test_a_mapping_is_the_whole_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("ALLOY_TEST_VISIBLE", "visible")
    tool = BashTool(env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "FOO": "bar"})
    out = await run("env", tmp_path, tool)
    names = {line.split("=", 1)[0] for line in out.splitlines()[:-1]}
    assert "FOO=bar" in out.splitlines()
    assert "OPENAI_API_KEY" not in names and "ALLOY_TEST_VISIBLE" not in names
    assert names <= {"PATH", "FOO", "PWD", "SHLVL", "_", "OLDPWD"}  # bash adds the last ones


# ---- restricted bash: a guard against slips, not a sandbox -------------------------------------


async def test_restricted_bash_blocks_the_documented_things(tmp_path: Path) -> None:
    tool = BashTool(restricted=True)
    assert "restricted" in await run("cd /", tmp_path, tool)
    assert "restricted" in await run("/bin/echo hi", tmp_path, tool)
    assert "restricted" in await run("echo x > file.txt", tmp_path, tool)
    assert not (tmp_path / "file.txt").exists()
    assert "readonly variable" in await run("PATH=/tmp", tmp_path, tool)
    assert await run("echo to-stderr >&2", tmp_path, tool) == "to-stderr\nexit code: 0"


async def test_restricted_bash_is_not_a_sandbox(tmp_path: Path) -> None:
    # The documentation says so; this test keeps the documentation honest.
    tool = BashTool(restricted=True)
    assert await run("bash -c 'cd / && pwd'", tmp_path, tool) == "/\nexit code: 0"
    out = await run("cat /etc/passwd", tmp_path, tool)
    assert "root:" in out
    assert out.endswith("exit code: 0")


def test_the_documentation_is_honest_about_the_restriction() -> None:
    from alloy._tools import _bash

    module_doc = " ".join((_bash.__doc__ or "").split())
    for text in (module_doc, " ".join((BashTool.__doc__ or "").split())):
        assert "Not a sandbox" in text or "not a sandbox" in text
        assert "bash -c" in text
        assert "container" in text
    assert "absolute paths as arguments" in module_doc
