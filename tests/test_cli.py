"""The ``alloy`` command: demo over each wire format, and ``alloy run`` against a local server."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import trio

from alloy._cli import main
from alloy.testing import WireServer, text, tool_call


@pytest.mark.parametrize("wire", ["anthropic", "openai", "chat", "scripted"])
def test_demo(wire: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--wire", wire, "--delay", "0"]) == 0
    out = capsys.readouterr().out
    assert "→ read(path='notes.txt')" in out
    assert "✓ bash ok" in out
    # The answer is computed from what the tools returned.
    assert "The notes (4 lines) are titled 'Alloy demo notes'" in out
    assert "[completed in 2 turns, 2 tool calls" in out
    if wire != "scripted":
        assert "[2 HTTP requests over 1 connection(s)]" in out


@pytest.fixture
def chat_server() -> Iterator[WireServer]:
    """A WireServer on a thread of its own, so a synchronous ``main()`` can talk to it."""
    server = WireServer(
        [tool_call("read", {"path": "hello.txt"}), text("It says hello.")], format="chat"
    )
    ready = threading.Event()
    stop = threading.Event()

    async def serve() -> None:
        async with server:
            ready.set()
            while not stop.is_set():
                await trio.sleep(0.01)

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield server
    finally:
        stop.set()
        thread.join(10)


def test_run_against_an_openai_compatible_url(
    chat_server: WireServer, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    import pathlib

    folder = pathlib.Path(str(tmp_path))
    (folder / "hello.txt").write_text("hello\n")
    code = main(
        [
            "run",
            "What does hello.txt say?",
            "--provider",
            "chat",
            "--model",
            "llama4",
            "--api-url",
            chat_server.url,
            "--tools",
            "read",
            "--cwd",
            str(folder),
            "--system",
            "Be brief.",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "It says hello." in out
    first = chat_server.requests[0].body
    assert first["model"] == "llama4"
    assert first["messages"][0] == {"role": "system", "content": "Be brief."}
    assert [t["function"]["name"] for t in first["tools"]] == ["read"]
    assert "authorization" not in chat_server.requests[0].headers
    tool_message = chat_server.requests[1].body["messages"][-1]
    assert tool_message["role"] == "tool" and "hello" in tool_message["content"]


def test_run_needs_an_api_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert main(["run", "hi", "--provider", "anthropic", "--model", "claude-sonnet-4-6"]) == 2
    assert "ANTHROPIC_API_KEY" in capsys.readouterr().err


def test_run_rejects_unknown_tools(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "run",
            "hi",
            "--provider",
            "chat",
            "--model",
            "m",
            "--api-url",
            "http://127.0.0.1:9",
            "--tools",
            "read,teleport",
        ]
    )
    assert code == 2
    assert "teleport" in capsys.readouterr().err


def test_run_reports_provider_errors(capsys: pytest.CaptureFixture[str]) -> None:
    # Nothing listens on port 9 of loopback: a connection error, reported in one line.
    code = main(
        ["run", "hi", "--provider", "chat", "--model", "m", "--api-url", "http://127.0.0.1:9"]
    )
    assert code == 1
    assert "ProviderConnectionError" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert "alloy 0.1.0" in capsys.readouterr().out
