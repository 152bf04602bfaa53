"""The fake model of ``bench_http.py``: a ``WireServer`` whose reply depends on the request.

``WireServer`` plays one script in order, whoever asks; hundreds of concurrent conversations
need each request answered for its own conversation. ``LoopServer`` decides from the request
body (``reply_for``), so every client, Alloy or raw, gets the same replies:

- the prompt ``"long N"``: one text reply of ``N`` deltas (16 characters each);
- the prompt ``"loop N"``: an N-turn tool loop, a call to ``echo`` on each of the first N - 1
  requests since that prompt, then the text ``"done"``;
- any other prompt: the same with N = 3 (so an agent can chat again and again).

It appends that reply to the script just before ``WireServer`` takes the next item (the two
happen with no ``await`` between them, so concurrent requests cannot swap replies) and forgets
the requests it recorded, so its memory stays flat. This leans on ``WireServer._plan``, a
private method: fine for a benchmark, and the only way short of a callable script.

Run as a script, it serves the given ``format:latency`` pairs in a process of its own (so the
client's CPU and memory are measured alone), prints ``{"format:latency": url, ...}`` as one JSON
line, and serves until its standard input closes::

    PYTHONPATH=src python benchmarks/_loop_server.py chat:0 chat:0.05
"""

from __future__ import annotations

import json
import sys
from contextlib import AsyncExitStack
from typing import Any

import trio

from alloy.testing import RecordedRequest, Reply, WireServer, text, tool_call

TOOL_TURNS = 2  # requests answered with a tool call before the final text
DELTA_SIZE = 16  # WireServer's default chunk_size: characters per streamed text delta
LONG_WORDS = "the quick brown fox jumps over the lazy dog "


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _is_prompt(format: str, item: dict[str, Any]) -> bool:
    """Whether ``item`` is a user prompt (not a message that carries tool results)."""
    if item.get("role") != "user":
        return False
    content = item.get("content")
    if format == "anthropic" and isinstance(content, list):
        return not any(part.get("type") == "tool_result" for part in content)
    return True


def conversation(format: str, body: dict[str, Any]) -> tuple[str, int]:
    """The last user prompt of a request and the number of model turns since it."""
    items = body.get("input" if format == "openai" else "messages") or []
    last = max((i for i, item in enumerate(items) if _is_prompt(format, item)), default=0)
    prompt = _text_of(items[last].get("content")) if items else ""
    since = items[last + 1 :]
    if format == "openai":
        done = sum(1 for item in since if item.get("type") == "function_call")
    else:
        done = sum(1 for item in since if item.get("role") == "assistant")
    return prompt, done


def reply_for(format: str, body: dict[str, Any]) -> Reply:
    prompt, done = conversation(format, body)
    if prompt.startswith("long "):
        size = int(prompt.split()[1]) * DELTA_SIZE
        words = LONG_WORDS * (size // len(LONG_WORDS) + 1)
        return text(words[:size])
    tool_turns = int(prompt.split()[1]) - 1 if prompt.startswith("loop ") else TOOL_TURNS
    if done < tool_turns:
        return tool_call("echo", {"text": f"step {done + 1}"})
    return text("done")


class LoopServer(WireServer):
    """A ``WireServer`` answering each request by ``reply_for`` its own conversation."""

    async def _plan(self, request: RecordedRequest) -> Any:
        self.requests.clear()
        if isinstance(request.body, dict) and not self.remaining:
            self.extend([reply_for(self.format, request.body)])
        return await super()._plan(request)


async def serve(specs: list[str]) -> None:
    async with AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        for spec in specs:
            format, _, latency = spec.partition(":")
            server = LoopServer(format=format, latency=float(latency or 0))  # type: ignore[arg-type]
            await stack.enter_async_context(server)
            urls[spec] = server.url
        print(json.dumps(urls), flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)  # until the parent closes our stdin


if __name__ == "__main__":
    trio.run(serve, sys.argv[1:])
