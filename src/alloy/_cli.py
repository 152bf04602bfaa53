"""The ``alloy`` command: ``alloy demo`` runs a whole agent offline."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence

import trio

from . import __version__
from ._events import RunCompleted, TextDelta, ToolFinished, ToolStarted
from ._provider import Request
from ._run import stream

__all__ = ["main"]

NOTES = """\
Alloy demo notes
- the loop sends messages to a model and runs its tool calls in parallel
- every tool runs under its own cancel scope and timeout
- cancelling the run kills every tool process
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``alloy`` console script."""
    parser = argparse.ArgumentParser(prog="alloy", description="A minimal, Trio-native agent loop.")
    parser.add_argument("--version", action="version", version=f"alloy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a full agent offline, with a scripted model")
    demo.add_argument(
        "--delay", type=float, default=0.01, help="seconds between streamed deltas (default 0.01)"
    )
    arguments = parser.parse_args(argv)
    if arguments.command == "demo":
        return trio.run(_demo, arguments.delay)
    parser.error(f"unknown command {arguments.command!r}")
    return 2


def _demo_model(request: Request) -> object:
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
    summary = "; ".join(points)
    files = [row.split()[-1] for row in listing.splitlines() if row.startswith("-")]
    return text(
        f"The folder holds {', '.join(files)}. The notes ({len(lines)} lines) are titled "
        f"{lines[0]!r} and say that {summary}."
    )


async def _demo(delay: float) -> int:
    from .testing import FunctionProvider
    from .tools import Bash, Read

    with tempfile.TemporaryDirectory(prefix="alloy-demo-") as folder:
        await trio.Path(folder, "notes.txt").write_text(NOTES, encoding="utf-8")
        provider = FunctionProvider(_demo_model, delta_delay=delay)  # type: ignore[arg-type]
        out = sys.stdout
        out.write(f"alloy demo: a scripted model works in {folder}\n\n")
        async with stream(
            "What is in this folder, and what do the notes say?",
            provider=provider,
            tools=[Read, Bash],
            working_directory=folder,
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
        return 0 if run.result.status == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
