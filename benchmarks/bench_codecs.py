"""CPU cost of Alloy's wire codecs, without any network: the SSE decoder and each provider's
``StreamDecoder``, against a raw baseline measured in the same process.

Two measurements (a summary table at the end gives each figure and its target, if any):

1. CPU per streamed event. Every recorded, successful streamed reply in
   ``../shared/wire/recorded/`` (real traffic of the Anthropic Messages, OpenAI Responses and
   chat completions APIs) is replayed many times, one network chunk per SSE event, through
   ``SSEDecoder`` + the codec's ``StreamDecoder`` (``feed`` every event, then ``finish``). The
   raw baseline does the least any client must do with the same bytes: ``bytes.split(b"\\n\\n")``
   on a buffer, pick the ``data:`` lines, ``json.loads`` each. Reported in µs per event, and
   as a ratio to the baseline (target: at most 1.25x, issue 3). ``SSEDecoder`` alone is shown
   too, so the ratio can be split between the two layers.
2. Linear time. One tool call whose arguments arrive in 10k, 100k and 1M fragments, fed as SSE
   events to each codec's ``StreamDecoder``; and one SSE line of 10k, 100k and 1M chunks fed to
   ``SSEDecoder``. The time per fragment must stay flat as the count grows: the tests check the
   linearity deterministically (no clock); this shows it in seconds.

Run it from the repository root::

    PYTHONPATH=src python benchmarks/bench_codecs.py           # about 40 s
    PYTHONPATH=src python benchmarks/bench_codecs.py --quick   # a few seconds

Standard library and alloy only. ``--recorded DIR`` points at another copy of the recordings.
The exit status is 0 even when a figure is over its target (``--strict`` exits 1 then).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs

import alloy
from alloy._codec import _anthropic, _chat, _responses
from alloy._codec._sse import SSEDecoder, SSEEvent

EVENT_RATIO_TARGET = 1.25  # issue 3: at most 1.25x the raw baseline's CPU per streamed delta
DEFAULT_RECORDED = Path(__file__).resolve().parents[2] / "shared" / "wire" / "recorded"

CODECS: dict[str, tuple[str, ModuleType]] = {
    "anthropic": ("anthropic-messages", _anthropic),
    "openai": ("openai-responses", _responses),
    "chat": ("openai-chat", _chat),
}


@attrs.frozen
class Settings:
    min_seconds: float  # replay the corpus until a repetition takes at least this long
    repeats: int  # repetitions of figure 1 (best kept)
    scales: tuple[int, ...]  # fragment counts of figure 2


THOROUGH = Settings(min_seconds=0.5, repeats=5, scales=(10_000, 100_000, 1_000_000))
QUICK = Settings(min_seconds=0.1, repeats=2, scales=(1_000, 10_000, 100_000))


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


# --- 1. CPU per streamed event ---------------------------------------------------------------


@attrs.frozen
class Stream:
    name: str
    chunks: tuple[bytes, ...]  # one per SSE event, as a server flushes them
    events: int  # SSE events with data (what SSEDecoder dispatches)


def per_event_chunks(body: bytes) -> tuple[bytes, ...]:
    """The body cut after every blank line: one chunk per event, as servers flush them."""
    pieces = body.split(b"\n\n")
    chunks = [piece + b"\n\n" for piece in pieces[:-1]]
    if pieces[-1]:
        chunks.append(pieces[-1])
    return tuple(chunks)


def alloy_decode(module: ModuleType, chunks: Sequence[bytes]) -> int:
    """What ``HttpProvider._stream_once`` does with the body: SSE events into the codec."""
    sse = SSEDecoder()
    decoder = module.StreamDecoder()
    feed = decoder.feed
    events = 0
    for chunk in chunks:
        for event in sse.feed(chunk):
            feed(event)
            events += 1
    for event in sse.close():
        feed(event)
        events += 1
    decoder.finish()
    return events


def sse_only(chunks: Sequence[bytes]) -> int:
    sse = SSEDecoder()
    events = 0
    for chunk in chunks:
        events += len(sse.feed(chunk))
    return events + len(sse.close())


def raw_decode(chunks: Sequence[bytes]) -> int:
    """The raw baseline: split on blank lines, ``json.loads`` every ``data:`` line."""
    loads = json.loads
    buffer = b""
    events = 0
    for chunk in chunks:
        buffer += chunk
        parts = buffer.split(b"\n\n")
        buffer = parts.pop()
        for part in parts:
            for line in part.split(b"\n"):
                if line.startswith(b"data:"):
                    data = line[5:].lstrip()
                    events += 1
                    if data != b"[DONE]":
                        loads(data)
    for line in buffer.split(b"\n"):
        if line.startswith(b"data:"):
            data = line[5:].lstrip()
            events += 1
            if data != b"[DONE]":
                loads(data)
    return events


def load_streams(recorded: Path, api: str, module: ModuleType) -> tuple[list[Stream], int]:
    """The recorded streamed replies of ``api`` that succeed and that the codec decodes."""
    streams: list[Stream] = []
    skipped = 0
    for path in sorted((recorded / api).glob("*.json")):
        data = json.loads(path.read_text())
        expected = data.get("expected") or {}
        if not data.get("stream") or data["response"]["status"] != 200 or expected.get("error"):
            continue
        chunks = per_event_chunks(data["response"]["body"].encode())
        try:
            events = alloy_decode(module, chunks)
        except Exception:  # a recording the codec refuses is the conformance tests' business
            skipped += 1
            continue
        if events != raw_decode(chunks):  # the baseline must see the same events
            skipped += 1
            continue
        streams.append(Stream(path.stem, chunks, events))
    return streams, skipped


def time_corpus(
    decode: Callable[[Sequence[bytes]], int], streams: Sequence[Stream], settings: Settings
) -> tuple[float, float]:
    """Best CPU and wall µs per event over the repetitions (each replays the corpus enough
    times to last ``min_seconds``)."""
    total = sum(stream.events for stream in streams)
    start = time.process_time()
    rounds = 0
    while time.process_time() - start < settings.min_seconds / 5 or rounds < 1:  # warm-up
        for stream in streams:
            decode(stream.chunks)
        rounds += 1
    per_round = (time.process_time() - start) / rounds
    rounds = max(1, int(settings.min_seconds / max(per_round, 1e-9)))
    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(settings.repeats):
        gc.collect()
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            for stream in streams:
                decode(stream.chunks)
        w1, c1 = time.perf_counter(), time.process_time()
        cpu.append((c1 - c0) * 1e6 / (rounds * total))
        wall.append((w1 - w0) * 1e6 / (rounds * total))
    return min(cpu), min(wall)


def event_figures(settings: Settings, recorded: Path) -> list[Figure]:
    print(
        f"\n1. CPU per streamed event: recorded replies from {recorded}, one chunk per event, "
        f"best of {settings.repeats}."
    )
    print(
        f"  {'codec':<10} {'streams':>7} {'events':>7}  {'alloy µs/ev':>11}  {'SSE only':>8}  "
        f"{'raw µs/ev':>9}  {'ratio':>6}"
    )
    figures: list[Figure] = []
    for name, (api, module) in CODECS.items():
        streams, skipped = load_streams(recorded, api, module)
        if not streams:
            print(f"  {name:<10} no recorded streams found under {recorded / api}")
            continue
        events = sum(stream.events for stream in streams)
        alloy_cpu, _ = time_corpus(partial(alloy_decode, module), streams, settings)
        sse_cpu, _ = time_corpus(sse_only, streams, settings)
        raw_cpu, _ = time_corpus(raw_decode, streams, settings)
        ratio = alloy_cpu / raw_cpu
        note = f"  ({skipped} skipped)" if skipped else ""
        print(
            f"  {name:<10} {len(streams):>7} {events:>7}  {alloy_cpu:>11.2f}  {sse_cpu:>8.2f}  "
            f"{raw_cpu:>9.2f}  {ratio:>5.2f}x{note}"
        )
        figures.append(Figure(f"{name}: alloy CPU/event", alloy_cpu, "µs"))
        figures.append(Figure(f"{name}: raw CPU/event", raw_cpu, "µs"))
        figures.append(Figure(f"{name}: ratio alloy/raw", ratio, "x", EVENT_RATIO_TARGET))
    print(
        "  alloy = SSEDecoder + StreamDecoder.feed for every event + finish(); SSE only = the "
        "SSEDecoder part;\n  raw = bytes.split(b'\\n\\n') + json.loads of every data line "
        "(no values built, no checks)."
    )
    return figures


# --- 2. linear time ---------------------------------------------------------------------------


def anthropic_events(n: int) -> list[SSEEvent]:
    def delta(fragment: str) -> dict[str, Any]:
        return {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": fragment},
        }

    head: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "m",
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": 1, "output_tokens": 1},
            },
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "t", "name": "write", "input": {}},
        },
        delta('{"content": "'),
    ]
    tail: list[dict[str, Any]] = [
        delta('"}'),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 2},
        },
        {"type": "message_stop"},
    ]
    fragment = SSEEvent(json.dumps(delta("ab")), event="content_block_delta")
    return [
        *(SSEEvent(json.dumps(p), event=p["type"]) for p in head),
        *[fragment] * n,
        *(SSEEvent(json.dumps(p), event=p["type"]) for p in tail),
    ]


def responses_events(n: int) -> list[SSEEvent]:
    def delta(fragment: str) -> dict[str, Any]:
        return {
            "type": "response.function_call_arguments.delta",
            "output_index": 0,
            "delta": fragment,
        }

    def item(arguments: str, status: str) -> dict[str, Any]:
        return {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "c",
            "name": "write",
            "arguments": arguments,
            "status": status,
        }

    full = '{"content": "' + "ab" * n + '"}'
    completed = {
        "type": "response.completed",
        "response": {
            "id": "resp_1",
            "status": "completed",
            "output": [item(full, "completed")],
            "usage": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3},
        },
    }
    fragment = SSEEvent(json.dumps(delta("ab")))
    return [
        SSEEvent(
            json.dumps(
                {
                    "type": "response.output_item.added",
                    "output_index": 0,
                    "item": item("", "in_progress"),
                }
            )
        ),
        SSEEvent(json.dumps(delta('{"content": "'))),
        *[fragment] * n,
        SSEEvent(json.dumps(delta('"}'))),
        SSEEvent(json.dumps(completed)),
    ]


def chat_events(n: int) -> list[SSEEvent]:
    def chunk(arguments: str, *, first: bool = False) -> SSEEvent:
        call: dict[str, Any] = {"index": 0, "function": {"arguments": arguments}}
        if first:
            call.update(id="c", type="function")
            call["function"]["name"] = "write"
        body = {
            "id": "chatcmpl-1",
            "model": "m",
            "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}],
        }
        return SSEEvent(json.dumps(body))

    finish = {
        "id": "chatcmpl-1",
        "model": "m",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
    }
    fragment = chunk("ab")
    return [
        chunk('{"content": "', first=True),
        *[fragment] * n,
        chunk('"}'),
        SSEEvent(json.dumps(finish)),
        SSEEvent("[DONE]"),
    ]


EVENT_BUILDERS: dict[str, Callable[[int], list[SSEEvent]]] = {
    "anthropic": anthropic_events,
    "openai": responses_events,
    "chat": chat_events,
}


def time_fragments(module: ModuleType, events: Sequence[SSEEvent], n: int) -> float:
    """CPU µs per argument fragment of one streamed tool call."""
    gc.collect()
    decoder = module.StreamDecoder()
    feed = decoder.feed
    start = time.process_time()
    for event in events:
        feed(event)
    completion = decoder.finish()
    elapsed = time.process_time() - start
    assert completion.message.tool_calls[0].arguments == {"content": "ab" * n}
    return elapsed * 1e6 / n


def time_long_line(n: int) -> float:
    """CPU µs per 16-byte chunk of one SSE line of ``n`` chunks."""
    gc.collect()
    piece = b"x" * 16
    decoder = SSEDecoder(max_event_size=64 * 1024 * 1024)
    feed = decoder.feed
    start = time.process_time()
    feed(b"data: ")
    for _ in range(n):
        feed(piece)
    (event,) = feed(b"\n\n")
    elapsed = time.process_time() - start
    assert len(event.data) == 16 * n
    return elapsed * 1e6 / n


def scaling_figures(settings: Settings) -> list[Figure]:
    scales = settings.scales
    print(
        "\n2. Linear time: CPU µs per fragment of one tool call's arguments (StreamDecoder), "
        "per 16-byte chunk of one SSE line (SSEDecoder)."
    )
    header = "".join(f"{n:>12,}" for n in scales)
    print(f"  {'':<22}{header}   largest/smallest")
    figures: list[Figure] = []
    rows: list[tuple[str, list[float]]] = []
    for name, (_, module) in CODECS.items():
        times = []
        for n in scales:
            events = EVENT_BUILDERS[name](n)
            times.append(time_fragments(module, events, n))
            del events
        rows.append((f"{name} StreamDecoder", times))
    rows.append(("SSEDecoder long line", [time_long_line(n) for n in scales]))
    for label, times in rows:
        growth = times[-1] / times[0]
        cells = "".join(f"{t:>12.2f}" for t in times)
        print(f"  {label:<22}{cells}   {growth:.2f}x")
        figures.append(Figure(f"{label}: growth {scales[0]:,} to {scales[-1]:,}", growth, "x"))
    print(
        f"  Flat is linear: a quadratic decoder would be about {scales[-1] // scales[0]:,}x "
        "slower per fragment at the largest size."
    )
    return figures


# --- report ---------------------------------------------------------------------------------


def table(figures: list[Figure]) -> None:
    print("\nSummary")
    print(f"  {'figure':<52} {'value':>10}  {'target':>9}  verdict")
    for figure in figures:
        target = "-" if figure.target is None else f"<= {figure.target:g}{figure.unit}"
        value = (
            f"{figure.value:.2f}x" if figure.unit == "x" else f"{figure.value:.2f} {figure.unit}"
        )
        print(f"  {figure.name:<52} {value:>10}  {target:>9}  {figure.verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few iterations: a smoke run for CI")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a figure is over")
    parser.add_argument(
        "--recorded",
        type=Path,
        default=Path(os.environ.get("ALLOY_WIRE_RECORDED", DEFAULT_RECORDED)),
        help="the directory of recorded traffic (default: ../shared/wire/recorded)",
    )
    args = parser.parse_args()
    settings = QUICK if args.quick else THOROUGH
    print(
        f"alloy {alloy.__version__}, Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs{' (--quick)' if args.quick else ''}"
    )
    started = time.perf_counter()
    figures = event_figures(settings, args.recorded)
    figures += scaling_figures(settings)
    table(figures)
    print(f"\n({time.perf_counter() - started:.1f} s)")
    over = [f for f in figures if f.verdict == "OVER"]
    return 1 if args.strict and over else 0


if __name__ == "__main__":
    sys.exit(main())
