"""Alloy over real HTTP on loopback, against a hand-written raw httpx2 loop in the same run.

The fake model is ``alloy.testing.WireServer`` (``_loop_server.LoopServer``: each request is
answered for its own conversation), in a process of its own by default so that this process's
CPU time and memory are the client's alone (``--inproc-server`` runs it inside this
``trio.run`` instead). Every workload runs twice, interleaved: through Alloy, and through a raw
loop that sends the same HTTP requests with the same client and does the JSON by hand (build
the body, ``json.loads`` the reply or every SSE ``data:`` line after a ``bytes.split``, run the
tool, append the messages, loop). Both use **one shared** ``httpx2.AsyncClient`` with a pool
large enough for every concurrent conversation (``Limits(max_connections=1100)``): Alloy gets it
through ``client=``, so neither side pays for its own pool or connection set-up in the timings.

1. One agent, sequential runs, for each wire format (OpenAICompat, Anthropic, OpenAI): a 3-turn
   tool loop (two calls to ``echo``, then text), non-streaming (``alloy.run``) and streaming
   (``alloy.stream``): CPU and wall per run and CPU per turn, ratio to raw (target: at most
   1.3x per turn, issue 3). Then one streamed text reply of 2,000 deltas: CPU per delta,
   ratio to raw (target: at most 1.25x). And the growth of the CPU per turn from a 3-turn to a
   20-turn conversation (each turn sends the whole history), against raw's own growth.
2. 200 concurrent conversations, each the 3-turn loop, server latency 50 ms (OpenAICompat,
   both modes): wall and CPU of the whole batch, ratio to 200 raw loops.
3. Long-lived agents (issue 4): memory per idle ``alloy.Agent`` (tracemalloc, 1,000 agents
   started with ``Agent.start``), the time to start 10,000 agents, and 1,000 agents each
   running the 3-turn loop through ``agent.chat`` concurrently, server latency 50 ms: wall time
   and peak memory (tracemalloc) against 1,000 raw loops (target: within 1.3x on both).

Run it from the repository root::

    PYTHONPATH=src python benchmarks/bench_http.py           # about 2.5 minutes
    PYTHONPATH=src python benchmarks/bench_http.py --quick   # about 25 s

Needs trio, httpx2 and alloy (with h11, which alloy.testing uses). The exit status is 0 even
when a figure is over its target (``--strict`` exits 1 then).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx2
import trio
import trio.testing

import alloy
from alloy.providers import Anthropic, OpenAI, OpenAICompat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _loop_server import LoopServer

TURN_TARGET = 1.3  # issue 3: at most 1.3x the raw baseline's CPU per turn
DELTA_TARGET = 1.25  # issue 3: at most 1.25x per streamed delta
AGENTS_TARGET = 1.3  # issue 4: 1,000 agents within 1.3x of raw on wall time and peak memory
LATENCY = 0.05
LONG_LOOP = 20  # turns of the long conversation of figure 1 (alloy.run stops at 25)
PROMPT = "Say hi through echo, twice"
FORMATS = ("chat", "anthropic", "openai")
PATHS = {"chat": "/v1/chat/completions", "anthropic": "/v1/messages", "openai": "/v1/responses"}
LABELS = {"chat": "OpenAICompat", "anthropic": "Anthropic", "openai": "OpenAI (Responses)"}


@attrs.frozen
class Settings:
    runs: int  # sequential runs per variant in figure 1
    deltas: int  # deltas of the long streamed reply
    delta_runs: int
    concurrent: int  # conversations in figure 2
    concurrent_repeats: int
    agents: int  # agents running at once in figure 3
    agent_repeats: int
    idle_agents: int
    start_agents: int


THOROUGH = Settings(
    runs=100,
    deltas=2000,
    delta_runs=5,
    concurrent=200,
    concurrent_repeats=3,
    agents=1000,
    agent_repeats=1,
    idle_agents=1000,
    start_agents=10_000,
)
QUICK = Settings(
    runs=30,
    deltas=500,
    delta_runs=3,
    concurrent=200,
    concurrent_repeats=1,
    agents=300,
    agent_repeats=1,
    idle_agents=300,
    start_agents=1000,
)


@attrs.frozen
class Figure:
    name: str
    value: float
    unit: str
    target: float | None = None

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "info"
        return "OK" if self.value <= self.target else "OVER"


# --- the tool, the same for both sides ---------------------------------------------------------


async def echo_impl(text: str) -> str:
    return text


@alloy.tool
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return await echo_impl(text)


SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
    "additionalProperties": False,
}
DESCRIPTION = "Return the text unchanged."


# --- the raw baseline: httpx2 and json by hand ---------------------------------------------------


def split_events(buffer: bytes, chunk: bytes) -> tuple[list[Any], bytes]:
    """Minimal SSE: complete events of ``buffer + chunk``, ``json.loads`` of their data lines."""
    parts = (buffer + chunk).split(b"\n\n")
    rest = parts.pop()
    events = []
    for part in parts:
        for line in part.split(b"\n"):
            if line.startswith(b"data:"):
                data = line[5:].strip()
                if data != b"[DONE]":
                    events.append(json.loads(data))
    return events, rest


async def raw_sse(client: httpx2.AsyncClient, url: str, body: Any, headers: Any) -> Any:
    """POST and yield the parsed data of every SSE event, reading the body to its end."""
    async with client.stream("POST", url, json=body, headers=headers) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
        buffer = b""
        async for chunk in response.aiter_bytes():
            events, buffer = split_events(buffer, chunk)
            for event in events:
                yield event


async def raw_post(client: httpx2.AsyncClient, url: str, body: Any, headers: Any) -> Any:
    response = await client.post(url, json=body, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]!r}")
    return json.loads(response.content)


async def run_tools(calls: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    return [(call_id, await echo_impl(**json.loads(arguments))) for call_id, _, arguments in calls]


async def raw_chat(
    client: httpx2.AsyncClient, base: str, prompt: str, stream: bool
) -> tuple[str, int, int]:
    url = base + PATHS["chat"]
    headers = {"authorization": "Bearer k", "accept": "text/event-stream" if stream else "*/*"}
    tools = [
        {
            "type": "function",
            "function": {"name": "echo", "description": DESCRIPTION, "parameters": SCHEMA},
        }
    ]
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    turns = deltas = 0
    while True:
        turns += 1
        body: dict[str, Any] = {"model": "m", "messages": messages, "tools": tools}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
            pieces: list[str] = []
            slots: dict[int, list[Any]] = {}
            async for event in raw_sse(client, url, body, headers):
                for choice in event.get("choices") or ():
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        pieces.append(delta["content"])
                        deltas += 1
                    for part in delta.get("tool_calls") or ():
                        slot = slots.setdefault(part["index"], [None, None, []])
                        function = part.get("function") or {}
                        slot[0] = part.get("id") or slot[0]
                        slot[1] = function.get("name") or slot[1]
                        if function.get("arguments"):
                            slot[2].append(function["arguments"])
            text = "".join(pieces)
            calls = [(i, n, "".join(a)) for i, n, a in slots.values()]
        else:
            message = (await raw_post(client, url, body, headers))["choices"][0]["message"]
            text = message.get("content") or ""
            calls = [
                (c["id"], c["function"]["name"], c["function"]["arguments"])
                for c in message.get("tool_calls") or ()
            ]
        if not calls:
            return text, turns, deltas
        messages.append(
            {
                "role": "assistant",
                "content": text or None,
                "tool_calls": [
                    {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                    for i, n, a in calls
                ],
            }
        )
        for call_id, output in await run_tools(calls):
            messages.append({"role": "tool", "tool_call_id": call_id, "content": output})


async def raw_anthropic(
    client: httpx2.AsyncClient, base: str, prompt: str, stream: bool
) -> tuple[str, int, int]:
    url = base + PATHS["anthropic"]
    headers = {
        "x-api-key": "k",
        "anthropic-version": "2023-06-01",
        "accept": "text/event-stream" if stream else "*/*",
    }
    tools = [{"name": "echo", "description": DESCRIPTION, "input_schema": SCHEMA}]
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": prompt}]}
    ]
    turns = deltas = 0
    while True:
        turns += 1
        body: dict[str, Any] = {
            "model": "m",
            "max_tokens": 4096,
            "messages": messages,
            "tools": tools,
        }
        if stream:
            body["stream"] = True
            blocks: dict[int, dict[str, Any]] = {}
            async for event in raw_sse(client, url, body, headers):
                kind = event["type"]
                if kind == "content_block_start":
                    blocks[event["index"]] = {**event["content_block"], "parts": []}
                elif kind == "content_block_delta":
                    delta = event["delta"]
                    piece = delta.get("text", delta.get("partial_json"))
                    if piece:
                        blocks[event["index"]]["parts"].append(piece)
                        deltas += delta["type"] == "text_delta"
            content = []
            for block in blocks.values():
                joined = "".join(block.pop("parts"))
                if block["type"] == "text":
                    block["text"] = joined
                elif block["type"] == "tool_use":
                    block["input"] = json.loads(joined) if joined else {}
                content.append(block)
        else:
            content = (await raw_post(client, url, body, headers))["content"]
        text = "".join(b["text"] for b in content if b["type"] == "text")
        calls = [
            (b["id"], b["name"], json.dumps(b["input"])) for b in content if b["type"] == "tool_use"
        ]
        if not calls:
            return text, turns, deltas
        messages.append({"role": "assistant", "content": content})
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call_id, "content": output}
                    for call_id, output in await run_tools(calls)
                ],
            }
        )


async def raw_openai(
    client: httpx2.AsyncClient, base: str, prompt: str, stream: bool
) -> tuple[str, int, int]:
    url = base + PATHS["openai"]
    headers = {"authorization": "Bearer k", "accept": "text/event-stream" if stream else "*/*"}
    tools = [
        {
            "type": "function",
            "name": "echo",
            "description": DESCRIPTION,
            "parameters": SCHEMA,
            "strict": False,
        }
    ]
    items: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "input_text", "text": prompt}]}
    ]
    turns = deltas = 0
    while True:
        turns += 1
        body: dict[str, Any] = {"model": "m", "input": items, "tools": tools, "store": False}
        if stream:
            body["stream"] = True
            pieces: list[str] = []
            slots: dict[int, list[Any]] = {}
            async for event in raw_sse(client, url, body, headers):
                kind = event["type"]
                if kind == "response.output_text.delta":
                    pieces.append(event["delta"])
                    deltas += 1
                elif kind == "response.output_item.added" and event["item"]["type"] == (
                    "function_call"
                ):
                    item = event["item"]
                    slots[event["output_index"]] = [item["call_id"], item["name"], []]
                elif kind == "response.function_call_arguments.delta":
                    slots[event["output_index"]][2].append(event["delta"])
            text = "".join(pieces)
            calls = [(i, n, "".join(a)) for i, n, a in slots.values()]
        else:
            output = (await raw_post(client, url, body, headers))["output"]
            text = "".join(
                part["text"]
                for item in output
                if item["type"] == "message"
                for part in item["content"]
                if part["type"] == "output_text"
            )
            calls = [
                (item["call_id"], item["name"], item["arguments"])
                for item in output
                if item["type"] == "function_call"
            ]
        if not calls:
            return text, turns, deltas
        if text:
            items.append(
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text}],
                }
            )
        for call_id, name, arguments in calls:
            items.append(
                {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}
            )
        for call_id, output in await run_tools(calls):
            items.append({"type": "function_call_output", "call_id": call_id, "output": output})


RAW = {"chat": raw_chat, "anthropic": raw_anthropic, "openai": raw_openai}


# --- the Alloy side ---------------------------------------------------------------------------


def provider_for(format: str, url: str, client: httpx2.AsyncClient) -> Any:
    if format == "chat":
        return OpenAICompat(api_url=url, model="m", api_key="k", client=client)
    if format == "anthropic":
        return Anthropic(api_url=url, model="m", api_key="k", client=client)
    return OpenAI(api_url=url, model="m", api_key="k", client=client)


async def alloy_loop(provider: Any, prompt: str, stream: bool) -> tuple[str, int, int]:
    if not stream:
        result = await alloy.run(prompt, provider=provider, tools=[echo])
        return result.text, result.turns, 0
    deltas = 0
    async with alloy.stream(prompt, provider=provider, tools=[echo]) as run:
        async for event in run:
            if type(event) is alloy.TextDelta:
                deltas += 1
    assert run.result is not None
    return run.result.text, run.result.turns, deltas


def check_loop(outcome: tuple[str, int, int], who: str, turns: int = 3) -> None:
    if outcome[0] != "done" or outcome[1] != turns:
        raise AssertionError(f"{who}: expected {turns} turns ending in 'done', got {outcome!r}")


# --- measuring ------------------------------------------------------------------------------


@attrs.frozen
class Servers:
    urls: dict[str, str]
    pid: int | None  # the server process, when it runs in one

    def url(self, format: str, latency: float) -> str:
        return self.urls[f"{format}:{latency:g}"]

    def cpu(self) -> float | None:
        """CPU seconds the server process has used so far (Linux), else None."""
        if self.pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SPECS = [f"{f}:0" for f in FORMATS] + [f"chat:{LATENCY:g}"]
SERVER_SCRIPT = str(Path(__file__).resolve().parent / "_loop_server.py")


def child_env() -> dict[str, str]:
    """The server process's environment: it must import this very alloy."""
    env = dict(os.environ)
    root = str(Path(alloy.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


@asynccontextmanager
async def servers(inproc: bool) -> AsyncIterator[Servers]:
    if inproc:
        async with AsyncExitStack() as stack:
            urls = {}
            for spec in SPECS:
                format, _, latency = spec.partition(":")
                server = LoopServer(format=format, latency=float(latency))  # type: ignore[arg-type]
                await stack.enter_async_context(server)
                urls[spec] = server.url
            yield Servers(urls, None)
        return
    process = await trio.lowlevel.open_process(
        [sys.executable, SERVER_SCRIPT, *SPECS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=child_env(),
    )
    try:
        assert process.stdout is not None
        line = b""
        while not line.endswith(b"\n"):
            data = await process.stdout.receive_some()
            if not data:
                raise RuntimeError("the server process ended before it served")
            line += data
        yield Servers(json.loads(line), process.pid)
    finally:
        assert process.stdin is not None
        with trio.move_on_after(10, shield=True) as waiting:
            await process.stdin.aclose()  # the server exits when its stdin closes
            await process.wait()
        if waiting.cancelled_caught:
            process.kill()


async def timed(work: Callable[[], Awaitable[Any]]) -> tuple[float, float, Any]:
    """CPU and wall seconds of ``work()``, and its value."""
    c0, w0 = time.process_time(), time.perf_counter()
    value = await work()
    w1, c1 = time.perf_counter(), time.process_time()
    return c1 - c0, w1 - w0, value


async def gather(works: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    results: list[Any] = [None] * len(works)

    async def one(index: int, work: Callable[[], Awaitable[Any]]) -> None:
        results[index] = await work()

    async with trio.open_nursery() as nursery:
        for index, work in enumerate(works):
            nursery.start_soon(one, index, work)
    return results


def ratio_line(label: str, alloy_value: float, raw_value: float, unit: str, scale: float) -> str:
    return (
        f"  {label:<38} alloy {alloy_value * scale:9.3f} {unit}   raw {raw_value * scale:9.3f} "
        f"{unit}   ratio {alloy_value / raw_value:5.2f}x"
    )


class GcClock:
    """Wall seconds spent in garbage collection while installed (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


class PoolClock:
    """CPU seconds spent in httpcore2's connection-pool bookkeeping while installed.

    ``AsyncConnectionPool._assign_requests_to_connections`` runs when every request starts and
    ends, and walks every connection of the pool (probing each idle one with ``poll()``): with
    a thousand connections it is most of the client's CPU, on both sides. A private method of
    httpcore2: when it is missing, nothing is measured.
    """

    def __init__(self) -> None:
        self.seconds: float | None = None
        self._pool: Any = None
        self._method: Any = None

    def __enter__(self) -> PoolClock:
        try:
            from httpcore2._async.connection_pool import AsyncConnectionPool
        except ImportError:
            return self
        method = getattr(AsyncConnectionPool, "_assign_requests_to_connections", None)
        if method is None:
            return self
        self.seconds = 0.0
        self._pool, self._method = AsyncConnectionPool, method
        clock = time.process_time

        def timed_method(pool: Any) -> Any:
            started = clock()
            try:
                return method(pool)
            finally:
                self.seconds += clock() - started  # type: ignore[operator]

        setattr(AsyncConnectionPool, "_assign_requests_to_connections", timed_method)  # noqa: B010
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            setattr(self._pool, "_assign_requests_to_connections", self._method)  # noqa: B010


@attrs.frozen
class Round:
    cpu: float
    wall: float
    gc: float  # seconds of it in garbage collection
    pool: float | None  # seconds of it in httpcore2's pool bookkeeping
    server_cpu: float | None  # seconds the server process used meanwhile
    value: Any = None
    peak: int = 0  # tracemalloc peak, when traced
    peak_running: int = 0  # the part of it above the memory in use when the chats started


async def measured(servers: Servers, work: Callable[[], Awaitable[Any]]) -> Round:
    clock = GcClock()
    gc.callbacks.append(clock)
    before = servers.cpu()
    try:
        with PoolClock() as pool:
            cpu, wall, value = await timed(work)
    finally:
        gc.callbacks.remove(clock)
    after = servers.cpu()
    server = after - before if before is not None and after is not None else None
    return Round(cpu, wall, clock.seconds, pool.seconds, server, value)


def median_round(rounds: list[Round]) -> Round:
    middle = sorted(rounds, key=lambda r: r.wall)[len(rounds) // 2]
    return attrs.evolve(
        middle,
        cpu=statistics.median(r.cpu for r in rounds),
        gc=statistics.median(r.gc for r in rounds),
        pool=None if middle.pool is None else statistics.median(r.pool or 0.0 for r in rounds),
        value=None,
    )


def server_note(sample: Round, who: str) -> str:
    if sample.server_cpu is None:
        return f"  ({who}: the server runs in this process: its CPU is in the figures)"
    busy = sample.server_cpu / sample.wall if sample.wall else 0.0
    note = (
        f"  {who}: the server process used {sample.server_cpu:.2f} s CPU over "
        f"{sample.wall:.2f} s wall ({busy:.0%} busy)"
    )
    if busy > 0.8:
        note += ": it is the bottleneck, wall times are the server's"
    else:
        note += ": not the bottleneck"
    return note


# --- 1. one agent -------------------------------------------------------------------------------


async def alloy_text(provider: Any, prompt: str) -> tuple[str, int, int]:
    """One streamed reply through ``alloy.stream``: its text, turns and number of deltas."""
    pieces = []
    async with alloy.stream(prompt, provider=provider) as run:
        async for event in run:
            if type(event) is alloy.TextDelta:
                pieces.append(event.text)
    return "".join(pieces), run.result.turns if run.result else 0, len(pieces)


Work = Callable[[], Awaitable[Any]]


async def one_agent(
    settings: Settings, client: httpx2.AsyncClient, servers: Servers
) -> list[Figure]:
    figures: list[Figure] = []
    print(
        f"\n1. One agent, {settings.runs} sequential runs per variant (interleaved, after warm-up), "
        "server latency 0.\n   A run: the 3-turn tool loop (echo, echo, text); medians per run."
    )
    for format in FORMATS:
        url = servers.url(format, 0)
        provider = provider_for(format, url, client)
        raw = RAW[format]
        print(f" {LABELS[format]}")
        per_run: dict[str, float] = {}
        for stream in (False, True):
            mode = "stream" if stream else "run"
            works: dict[str, Work] = {
                "alloy": partial(alloy_loop, provider, PROMPT, stream),
                "raw": partial(raw, client, url, PROMPT, stream),
            }
            for _ in range(max(5, settings.runs // 10)):
                for side, work in works.items():
                    check_loop(await work(), side)
            samples: dict[str, list[tuple[float, float]]] = {"alloy": [], "raw": []}
            for _ in range(settings.runs):
                for side, work in works.items():
                    cpu, wall, _ = await timed(work)
                    samples[side].append((cpu, wall))
            a_cpu = statistics.median(c for c, _ in samples["alloy"])
            r_cpu = statistics.median(c for c, _ in samples["raw"])
            a_wall = statistics.median(w for _, w in samples["alloy"])
            r_wall = statistics.median(w for _, w in samples["raw"])
            print(ratio_line(f"alloy.{mode}: CPU per run", a_cpu, r_cpu, "ms", 1e3))
            print(ratio_line(f"alloy.{mode}: wall per run", a_wall, r_wall, "ms", 1e3))
            if not stream:
                per_run = {"alloy": a_cpu, "raw": r_cpu}
            figures.append(Figure(f"{format} {mode}: CPU/turn", a_cpu / 3 * 1e3, "ms"))
            figures.append(Figure(f"{format} {mode}: raw CPU/turn", r_cpu / 3 * 1e3, "ms"))
            figures.append(Figure(f"{format} {mode}: CPU ratio", a_cpu / r_cpu, "x", TURN_TARGET))

        # Growth with the conversation's length: CPU per turn of a long loop against the
        # 3-turn loop, non-streaming (each turn re-encodes the whole history).
        long_prompt = f"loop {LONG_LOOP}"
        longer: dict[str, Work] = {
            "alloy": partial(alloy_loop, provider, long_prompt, False),
            "raw": partial(raw, client, url, long_prompt, False),
        }
        growth: dict[str, float] = {}
        for side, work in longer.items():
            check_loop(await work(), side, LONG_LOOP)
            long_cpus = []
            for _ in range(max(3, settings.runs // 10)):
                cpu, _, _ = await timed(work)
                long_cpus.append(cpu)
            growth[side] = statistics.median(long_cpus) / LONG_LOOP / (per_run[side] / 3)
        print(
            f"  {f'CPU/turn growth, {LONG_LOOP} vs 3 turns':<38} alloy {growth['alloy']:9.2f}x"
            f"      raw {growth['raw']:9.2f}x      ratio {growth['alloy'] / growth['raw']:5.2f}x"
        )
        figures.append(
            Figure(f"{format} run: turn-cost growth vs raw", growth["alloy"] / growth["raw"], "x")
        )

        # The long streamed reply: CPU per delta.
        prompt = f"long {settings.deltas}"
        long_reply: dict[str, Work] = {
            "alloy": partial(alloy_text, provider, prompt),
            "raw": partial(raw, client, url, prompt, True),
        }
        for work in long_reply.values():
            _, turns, deltas = await work()
            assert turns == 1 and deltas == settings.deltas, (turns, deltas)
        per_delta: dict[str, list[float]] = {"alloy": [], "raw": []}
        for _ in range(settings.delta_runs):
            for side, work in long_reply.items():
                cpu, _, _ = await timed(work)
                per_delta[side].append(cpu / settings.deltas)
        a_delta, r_delta = min(per_delta["alloy"]), min(per_delta["raw"])
        print(
            ratio_line(f"stream {settings.deltas} deltas: CPU/delta", a_delta, r_delta, "µs", 1e6)
        )
        figures.append(Figure(f"{format} stream: CPU/delta", a_delta * 1e6, "µs"))
        figures.append(Figure(f"{format} stream: raw CPU/delta", r_delta * 1e6, "µs"))
        figures.append(
            Figure(f"{format} stream: delta ratio", a_delta / r_delta, "x", DELTA_TARGET)
        )
    return figures


# --- 2. concurrent conversations --------------------------------------------------------------


async def concurrent(
    settings: Settings, client: httpx2.AsyncClient, servers: Servers
) -> list[Figure]:
    n = settings.concurrent
    url = servers.url("chat", LATENCY)
    provider = provider_for("chat", url, client)
    print(
        f"\n2. {n} concurrent conversations (OpenAICompat), each the 3-turn loop, server latency "
        f"{LATENCY * 1e3:.0f} ms\n   (so at least {3 * LATENCY * 1e3:.0f} ms of wall time); "
        f"medians of {settings.concurrent_repeats} batches."
    )
    figures: list[Figure] = []
    for stream in (False, True):
        mode = "stream" if stream else "run"

        async def alloy_batch(s: bool = stream) -> Any:
            return await gather([lambda: alloy_loop(provider, PROMPT, s)] * n)

        async def raw_batch(s: bool = stream) -> Any:
            return await gather([lambda: raw_chat(client, url, PROMPT, s)] * n)

        for batch in (alloy_batch, raw_batch):  # warm-up: opens the connections
            for outcome in await batch():
                check_loop(outcome, batch.__name__)
        rounds: dict[str, list[Round]] = {"alloy": [], "raw": []}
        for _ in range(settings.concurrent_repeats):
            for name, batch in (("alloy", alloy_batch), ("raw", raw_batch)):
                gc.collect()
                sample = await measured(servers, batch)
                for outcome in sample.value:
                    check_loop(outcome, name)
                rounds[name].append(sample)
        a, r = median_round(rounds["alloy"]), median_round(rounds["raw"])
        print(f" alloy.{mode} x {n}")
        print(ratio_line("wall per batch", a.wall, r.wall, "ms", 1e3))
        print(ratio_line("CPU per batch", a.cpu, r.cpu, "ms", 1e3))
        print(ratio_line("  of which garbage collection", a.gc, r.gc, "ms", 1e3))
        if a.pool is not None and r.pool is not None:
            print(ratio_line("  of which httpcore2 pool bookkeeping", a.pool, r.pool, "ms", 1e3))
        print(ratio_line("CPU per conversation", a.cpu / n, r.cpu / n, "ms", 1e3))
        print(server_note(a, "alloy"))
        print(server_note(r, "raw"))
        figures.append(Figure(f"{n} x {mode}: wall ratio", a.wall / r.wall, "x"))
        figures.append(Figure(f"{n} x {mode}: CPU ratio", a.cpu / r.cpu, "x", TURN_TARGET))
    return figures


# --- 3. long-lived agents ---------------------------------------------------------------------


async def start_agents(nursery: trio.Nursery, n: int, provider: Any) -> list[alloy.Agent]:
    return [await alloy.Agent.start(nursery, provider=provider, tools=[echo]) for _ in range(n)]


async def idle_task(receive: trio.MemoryReceiveChannel[Any]) -> None:
    async with receive:
        async for _ in receive:
            pass


async def agents(settings: Settings, client: httpx2.AsyncClient, servers: Servers) -> list[Figure]:
    url = servers.url("chat", LATENCY)
    provider = provider_for("chat", url, client)
    figures: list[Figure] = []
    print("\n3. Long-lived agents (OpenAICompat, one shared provider and client).")

    # Memory per idle agent.
    n = settings.idle_agents
    gc.collect()
    tracemalloc.start()
    async with trio.open_nursery() as nursery:
        before, _ = tracemalloc.get_traced_memory()
        started = await start_agents(nursery, n, provider)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
        nursery.cancel_scope.cancel()
    del started
    async with trio.open_nursery() as nursery:
        gc.collect()
        base_before, _ = tracemalloc.get_traced_memory()
        channels = []
        for _ in range(n):
            send, receive = trio.open_memory_channel[Any](0)
            channels.append(send)
            nursery.start_soon(idle_task, receive)
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        base_after, _ = tracemalloc.get_traced_memory()
        nursery.cancel_scope.cancel()
    tracemalloc.stop()
    del channels
    per_agent = (after - before) / n
    per_task = (base_after - base_before) / n
    print(
        f"  memory per idle agent ({n:,} started with Agent.start, tracemalloc): "
        f"{per_agent / 1024:.1f} KiB\n"
        f"    for scale: a bare task waiting on its own memory channel: {per_task / 1024:.1f} KiB"
    )
    figures.append(Figure("idle agent: memory", per_agent / 1024, "KiB"))

    # Time to start many agents.
    n = settings.start_agents
    gc.collect()
    async with trio.open_nursery() as nursery:
        sample = await measured(servers, lambda: start_agents(nursery, n, provider))
        stopping = time.perf_counter()
        nursery.cancel_scope.cancel()
    stop_wall = time.perf_counter() - stopping
    wall = sample.wall
    print(
        f"  start {n:,} agents: {wall:.2f} s wall, {sample.cpu:.2f} s CPU "
        f"({wall / n * 1e6:.0f} µs per agent, {sample.gc:.2f} s of it in garbage collection); "
        f"cancelling them all: {stop_wall:.2f} s"
    )
    del sample
    figures.append(Figure(f"start {n:,} agents: wall", wall, "s"))
    figures.append(Figure("start one agent: wall", wall / n * 1e6, "µs"))

    # Many agents running the loop at once, against as many raw loops.
    n = settings.agents

    async def alloy_round(memory: bool) -> Round:
        gc.collect()
        if memory:
            tracemalloc.start()
        async with trio.open_nursery() as nursery:
            crowd = await start_agents(nursery, n, provider)
            started, start_peak = tracemalloc.get_traced_memory() if memory else (0, 0)
            if memory:
                tracemalloc.reset_peak()
            sample = await measured(
                servers, lambda: gather([partial(a.chat, PROMPT) for a in crowd])
            )
            nursery.cancel_scope.cancel()
        if memory:
            chats_peak = tracemalloc.get_traced_memory()[1]
            sample = attrs.evolve(
                sample, peak=max(start_peak, chats_peak), peak_running=chats_peak - started
            )
            tracemalloc.stop()
        for result in sample.value:
            check_loop((result.text, result.turns, 0), "alloy")
        return sample

    async def raw_round(memory: bool) -> Round:
        gc.collect()
        if memory:
            tracemalloc.start()
        sample = await measured(
            servers, lambda: gather([lambda: raw_chat(client, url, PROMPT, False)] * n)
        )
        if memory:
            sample = attrs.evolve(sample, peak=tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        for outcome in sample.value:
            check_loop(outcome, "raw")
        return sample

    print(
        f"  {n:,} agents, each running the 3-turn loop (agent.chat) at once, server latency "
        f"{LATENCY * 1e3:.0f} ms, against {n:,} raw loops.\n"
        f"  Wall and CPU: {settings.agent_repeats} round(s) each, agents started before the "
        "clock starts. Peak memory: one round each under\n  tracemalloc (slower), agents "
        "started inside it, so the figure includes them."
    )
    # Warm-up: n concurrent one-turn requests open the n connections both sides then reuse.
    # The traced rounds come first: they also warm up both sides' code paths.
    await gather([lambda: raw_chat(client, url, "long 1", False)] * n)
    traced = await alloy_round(True)
    peaks = {"alloy": traced.peak, "raw": (await raw_round(True)).peak}
    rounds: dict[str, list[Round]] = {"alloy": [], "raw": []}
    for _ in range(settings.agent_repeats):
        rounds["alloy"].append(await alloy_round(False))
        rounds["raw"].append(await raw_round(False))
    a, r = median_round(rounds["alloy"]), median_round(rounds["raw"])
    print(ratio_line("wall", a.wall, r.wall, "s  ", 1))
    print(ratio_line("CPU", a.cpu, r.cpu, "s  ", 1))
    print(ratio_line("  of which garbage collection", a.gc, r.gc, "s  ", 1))
    if a.pool is not None and r.pool is not None:
        print(ratio_line("  of which httpcore2 pool bookkeeping", a.pool, r.pool, "s  ", 1))
        print(ratio_line("CPU without pool bookkeeping", a.cpu - a.pool, r.cpu - r.pool, "s  ", 1))
    print(ratio_line("peak memory (tracemalloc)", peaks["alloy"], peaks["raw"], "MiB", 2**-20))
    print(ratio_line("  per conversation", peaks["alloy"] / n, peaks["raw"] / n, "KiB", 1 / 1024))
    print(
        ratio_line(
            "  above the started agents", traced.peak_running / n, peaks["raw"] / n, "KiB", 1 / 1024
        )
    )
    print(
        f"    (alloy's figure counts the {n:,} agents too: the peak is taken from before they "
        "start; the line above\n     leaves out the memory in use once they had started, "
        "as the wall time does)"
    )
    print(server_note(a, "alloy"))
    print(server_note(r, "raw"))
    figures.append(Figure(f"{n:,} agents: wall ratio", a.wall / r.wall, "x", AGENTS_TARGET))
    figures.append(
        Figure(
            f"{n:,} agents: peak memory ratio", peaks["alloy"] / peaks["raw"], "x", AGENTS_TARGET
        )
    )
    figures.append(Figure(f"{n:,} agents: CPU ratio", a.cpu / r.cpu, "x"))
    if a.pool is not None and r.pool is not None:
        figures.append(
            Figure(f"{n:,} agents: CPU ratio w/o pool", (a.cpu - a.pool) / (r.cpu - r.pool), "x")
        )
    figures.append(Figure(f"{n:,} agents: peak memory/conv", peaks["alloy"] / n / 1024, "KiB"))
    figures.append(
        Figure(f"{n:,} agents: peak while chatting ratio", traced.peak_running / peaks["raw"], "x")
    )
    return figures


# --- report ---------------------------------------------------------------------------------


def table(figures: list[Figure]) -> None:
    print("\nSummary")
    print(f"  {'figure':<40} {'value':>11}  {'target':>9}  verdict")
    for figure in figures:
        target = "-" if figure.target is None else f"<= {figure.target:g}{figure.unit}"
        value = (
            f"{figure.value:.2f}x" if figure.unit == "x" else f"{figure.value:.3f} {figure.unit}"
        )
        print(f"  {figure.name:<40} {value:>11}  {target:>9}  {figure.verdict}")


async def bench(settings: Settings, inproc: bool, parts: set[str]) -> list[Figure]:
    limits = httpx2.Limits(
        max_connections=1100, max_keepalive_connections=1100, keepalive_expiry=300
    )
    timeout = httpx2.Timeout(connect=10, read=120, write=30, pool=30)
    figures: list[Figure] = []
    async with (
        servers(inproc) as found,
        httpx2.AsyncClient(limits=limits, timeout=timeout) as client,
    ):
        where = "in this process" if found.pid is None else f"in process {found.pid}"
        print(f"WireServer (LoopServer) {where}; one httpx2.AsyncClient, {limits!r}")
        for name, part in (("one", one_agent), ("concurrent", concurrent), ("agents", agents)):
            if name in parts:
                started = time.perf_counter()
                figures += await part(settings, client, found)
                print(f"  ({time.perf_counter() - started:.1f} s)")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and agents: a smoke run")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a figure is over")
    parser.add_argument(
        "--inproc-server",
        action="store_true",
        help="run the WireServer inside this trio.run (its CPU and memory then count too)",
    )
    parser.add_argument(
        "--only",
        choices=("one", "concurrent", "agents"),
        action="append",
        help="run only this part (repeatable)",
    )
    args = parser.parse_args()
    settings = QUICK if args.quick else THOROUGH
    print(
        f"alloy {alloy.__version__}, httpx2 {httpx2.__version__}, trio {trio.__version__}, "
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs"
        f"{' (--quick)' if args.quick else ''}"
    )
    started = time.perf_counter()
    parts = set(args.only or ("one", "concurrent", "agents"))
    figures = trio.run(bench, settings, args.inproc_server, parts)
    table(figures)
    print(f"\n({time.perf_counter() - started:.1f} s)")
    over = [f for f in figures if f.verdict == "OVER"]
    return 1 if args.strict and over else 0


if __name__ == "__main__":
    sys.exit(main())
