"""The ``alloy`` command.

``alloy demo`` runs a whole agent offline: a scripted model behind a loopback HTTP server in
one of the three wire formats, driven by the real provider class over real HTTP.
``alloy run "prompt" --provider ... --model ...`` talks to a real model.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Any, TextIO

import trio

from . import __version__
from ._errors import AlloyError
from ._events import RunCompleted, TextDelta, ToolFinished, ToolStarted
from ._provider import Provider, Request
from ._result import Result
from ._run import stream

__all__ = ["main"]

NOTES = """\
Alloy demo notes
- the loop sends messages to a model and runs its tool calls in parallel
- every tool runs under its own cancel scope and timeout
- cancelling the run kills every tool process
"""

WIRES = ("anthropic", "openai", "chat", "scripted")
TOOLS = ("read", "write", "edit", "bash")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``alloy`` console script."""
    parser = argparse.ArgumentParser(prog="alloy", description="A minimal, Trio-native agent loop.")
    parser.add_argument("--version", action="version", version=f"alloy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run a full agent offline, with a scripted model")
    demo.add_argument(
        "--wire",
        choices=WIRES,
        default="anthropic",
        help="wire format of the loopback model server (default anthropic); 'scripted' skips HTTP",
    )
    demo.add_argument(
        "--delay", type=float, default=0.01, help="seconds between streamed chunks (default 0.01)"
    )

    run = commands.add_parser("run", help="run a prompt against a real model")
    run.add_argument("prompt")
    run.add_argument("--provider", choices=("anthropic", "openai", "chat"), required=True)
    run.add_argument("--model", required=True)
    run.add_argument("--api-url", help="base URL, e.g. http://localhost:11434 for Ollama")
    run.add_argument(
        "--api-key-env",
        help="environment variable holding the API key "
        "(default ANTHROPIC_API_KEY / OPENAI_API_KEY; none for chat)",
    )
    run.add_argument("--system", help="system prompt")
    run.add_argument(
        "--tools", default="", help=f"comma-separated built-in tools: {','.join(TOOLS)}"
    )
    run.add_argument("--cwd", default=".", help="working directory for the tools")
    run.add_argument("--max-turns", type=int, default=25)

    arguments = parser.parse_args(argv)
    try:
        if arguments.command == "demo":
            return trio.run(_demo, arguments.wire, arguments.delay)
        return trio.run(_run, arguments)
    except AlloyError as exc:
        print(f"alloy: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def demo_model(request: Request) -> Any:
    """The demo's model: look at the folder and read the notes at once, then answer from what
    the tools returned."""
    from .testing import call, reply, text

    results = request.messages[-1].tool_results
    if not results:
        return reply(
            "I'll read the notes and look at the folder at the same time.\n",
            call("read", {"path": "notes.txt"}),
            call("bash", {"command": "ls -l | tail -n +2 && wc -l < notes.txt"}),
        )
    notes, listing = results[0].content, results[1].content
    if results[0].is_error or results[1].is_error:
        return text(f"Something went wrong: {notes} {listing}")
    lines = [line.split("\t", 1)[1] for line in notes.splitlines() if "\t" in line]
    points = [line.removeprefix("- ") for line in lines if line.startswith("- ")]
    files = [row.split()[-1] for row in listing.splitlines() if row.startswith("-")]
    return text(
        f"The folder holds {', '.join(files)}. The notes ({len(lines)} lines) are titled "
        f"{lines[0]!r} and say that {'; '.join(points)}."
    )


async def _demo(wire: str, delay: float) -> int:
    from .testing import FunctionProvider, WireServer
    from .tools import Bash, Read

    out = sys.stdout
    with tempfile.TemporaryDirectory(prefix="alloy-demo-") as folder:
        await trio.Path(folder, "notes.txt").write_text(NOTES, encoding="utf-8")
        prompt = "What is in this folder, and what do the notes say?"
        if wire == "scripted":
            out.write(f"alloy demo: a scripted model (in process) works in {folder}\n\n")
            provider = FunctionProvider(demo_model, delta_delay=delay)
            result = await _stream(prompt, provider, [Read, Bash], folder, out)
        else:
            async with WireServer(
                format=wire,  # type: ignore[arg-type]
                responder=demo_model,
                chunk_delay=delay,
                chunk_size=8,
            ) as server:
                out.write(
                    f"alloy demo: a scripted model behind {server.url} ({wire} wire format), "
                    f"working in {folder}\n\n"
                )
                async with _http_provider(wire, server.url) as http_provider:
                    result = await _stream(prompt, http_provider, [Read, Bash], folder, out)
                out.write(
                    f"[{len(server.requests)} HTTP requests over {server.connections} connection(s)]\n"
                )
    return 0 if result.status == "completed" else 1


def _http_provider(wire: str, url: str, model: str = "demo-model") -> Any:
    from .providers import Anthropic, OpenAI, OpenAICompat

    if wire == "anthropic":
        return Anthropic(api_url=url, api_key="demo-key", model=model)
    if wire == "openai":
        return OpenAI(api_url=url, api_key="demo-key", model=model)
    return OpenAICompat(api_url=url, model=model)


async def _run(arguments: argparse.Namespace) -> int:
    from .providers import Anthropic, OpenAI, OpenAICompat
    from .tools import Bash, Edit, Read, Write

    available = {"read": Read, "write": Write, "edit": Edit, "bash": Bash}
    names = [name.strip() for name in arguments.tools.split(",") if name.strip()]
    unknown = [name for name in names if name not in available]
    if unknown:
        print(f"alloy: unknown tools {unknown}; choose from {','.join(TOOLS)}", file=sys.stderr)
        return 2
    default_env = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY", "chat": None}
    variable = arguments.api_key_env or default_env[arguments.provider]
    api_key = os.environ.get(variable) if variable else None
    if variable and not api_key:
        print(f"alloy: set {variable} to your API key", file=sys.stderr)
        return 2
    options: dict[str, Any] = {"model": arguments.model, "api_key": api_key}
    if arguments.api_url:
        options["api_url"] = arguments.api_url
    provider: Any
    if arguments.provider == "anthropic":
        provider = Anthropic(**options)
    elif arguments.provider == "openai":
        provider = OpenAI(**options)
    else:
        if not arguments.api_url:
            print("alloy: --provider chat needs --api-url", file=sys.stderr)
            return 2
        provider = OpenAICompat(**options)
    async with provider:
        result = await _stream(
            arguments.prompt,
            provider,
            [available[name] for name in names],
            arguments.cwd,
            sys.stdout,
            system_prompt=arguments.system,
            max_turns=arguments.max_turns,
        )
    return 0 if result.status == "completed" else 1


async def _stream(
    prompt: str,
    provider: Provider,
    tools: list[Any],
    folder: str,
    out: TextIO,
    **options: Any,
) -> Result:
    """Run ``prompt`` and print the run as it happens: text, tool activity, a summary."""
    async with stream(
        prompt, provider=provider, tools=tools, working_directory=folder, **options
    ) as run:
        async for event in run:
            match event:
                case TextDelta(text=piece):
                    out.write(piece)
                case ToolStarted(call=call):
                    args = ", ".join(f"{k}={v!r}" for k, v in call.arguments.items())
                    out.write(f"  → {call.name}({args})\n")
                case ToolFinished(record=record):
                    status = "ok" if not record.is_error else f"error: {record.error}"
                    out.write(f"  ✓ {record.name} {status} ({record.duration * 1000:.1f} ms)\n")
                case RunCompleted(result=result):
                    usage = result.usage
                    out.write(
                        f"\n\n[{result.status} in {result.turns} turns, "
                        f"{len(result.tool_calls)} tool calls, "
                        f"{usage.input_tokens} input / {usage.output_tokens} output tokens]\n"
                    )
            out.flush()
    assert run.result is not None
    return run.result


if __name__ == "__main__":
    raise SystemExit(main())
