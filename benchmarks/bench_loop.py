"""Alloy's own overhead, with the scripted provider (no network, no model).

Three measurements (a summary table at the end gives each figure, its target if it has one,
and OK or OVER):

1. CPU (and wall) time of one 2-turn run with one tool call, per run, inside one ``trio.run``
   after warm-up: plain ``alloy.run``, ``alloy.run(on_event=...)`` and ``alloy.stream``.
2. CPU time per streamed ``TextDelta`` from a provider to an ``alloy.stream`` consumer, against
   a baseline of one bare trio memory channel doing the same work in the same process.
3. ``import alloy`` time, in fresh interpreters.

Run it from the repository root::

    PYTHONPATH=src python benchmarks/bench_loop.py           # thorough, well under a minute
    PYTHONPATH=src python benchmarks/bench_loop.py --quick   # smoke run for CI, a few seconds

Standard library, trio and alloy only. The exit status is 0 even when a figure is over its
target (pass ``--strict`` to exit 1 then).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import trio

import alloy
from alloy.testing import ScriptedProvider, text, tool_call

RUN_TARGET_MS = 0.5
IMPORT_TARGET_MS = 300.0
N_DELTAS = 100_000


@attrs.frozen
class Settings:
    runs: int  # timed runs per variant of figure 1
    warmup: int  # untimed runs before them
    deltas: int  # deltas per streamed run in figure 2
    delta_repeats: int  # timed repetitions of figure 2 (best is kept)
    imports: int  # fresh interpreters per import measurement


THOROUGH = Settings(runs=5000, warmup=500, deltas=N_DELTAS, delta_repeats=5, imports=7)
QUICK = Settings(runs=200, warmup=30, deltas=10_000, delta_repeats=1, imports=3)


@attrs.frozen
class Figure:
    name: str
    value: float
    unit: str
    target: float | None = None  # at most this; None: informational
    p90: float | None = None

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "info"
        return "OK" if self.value <= self.target else "OVER"


# --- 1. one 2-turn run with one tool call ------------------------------------------------


@alloy.tool
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


def _undecorated() -> Callable[..., Awaitable[str]]:
    async def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    return echo


echo_function = _undecorated()


def script() -> ScriptedProvider:
    return ScriptedProvider([tool_call("echo", {"text": "hi"}), text("done")])


async def run_plain() -> alloy.Result:
    return await alloy.run("Say hi through echo", provider=script(), tools=[echo])


def ignore(event: alloy.Event) -> None:
    pass


async def run_on_event() -> alloy.Result:
    return await alloy.run("Say hi through echo", provider=script(), tools=[echo], on_event=ignore)


async def run_stream() -> alloy.Result:
    async with alloy.stream("Say hi through echo", provider=script(), tools=[echo]) as run:
        async for _event in run:
            pass
    assert run.result is not None
    return run.result


async def run_bare_function() -> alloy.Result:
    # The tool is a plain function: every run builds its schema again (@alloy.tool does it once).
    return await alloy.run("Say hi through echo", provider=script(), tools=[echo_function])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def time_runs(
    variant: Callable[[], Awaitable[alloy.Result]], settings: Settings
) -> tuple[list[float], list[float]]:
    """CPU and wall milliseconds of each timed run (the provider is built inside the timing)."""
    result = await variant()
    assert result.status == "completed" and result.turns == 2 and result.text == "done", result
    assert result.tool_calls[0].outcome == "ok", result.tool_calls
    for _ in range(settings.warmup):
        await variant()
    cpu: list[float] = []
    wall: list[float] = []
    process_time, perf_counter = time.process_time, time.perf_counter
    for _ in range(settings.runs):
        c0, w0 = process_time(), perf_counter()
        await variant()
        w1, c1 = perf_counter(), process_time()
        cpu.append((c1 - c0) * 1e3)
        wall.append((w1 - w0) * 1e3)
    return cpu, wall


# --- 2. streamed deltas ---------------------------------------------------------------------


class FloodProvider:
    """A streaming provider that sends ``n`` one-character ``TextDelta`` events."""

    name = "flood"

    def __init__(self, n: int) -> None:
        self.n = n

    async def complete(self, request: alloy.Request) -> alloy.Completion:
        return self._completion("x" * self.n)

    async def stream(self, request: alloy.Request, deltas: alloy.DeltaSink) -> alloy.Completion:
        pieces: list[str] = []
        for _ in range(self.n):
            piece = "x"
            pieces.append(piece)
            await deltas.send(alloy.TextDelta(text=piece))
        return self._completion("".join(pieces))

    def _completion(self, content: str) -> alloy.Completion:
        return alloy.Completion(
            message=alloy.Message.assistant(content), stop_reason=alloy.StopReason.END_TURN
        )


async def alloy_deltas(n: int) -> int:
    received = 0
    async with alloy.stream("Flood me", provider=FloodProvider(n)) as run:
        async for event in run:
            if type(event) is alloy.TextDelta:
                received += 1
    assert run.result is not None and len(run.result.text) == n, run.result
    return received


@attrs.frozen
class Frame:
    text: str
    seq: int = 0


async def baseline_deltas(n: int) -> int:
    """The same data flow with nothing but one trio memory channel."""
    send, receive = trio.open_memory_channel[Frame](16)
    joined: list[str] = []

    async def produce() -> None:
        pieces: list[str] = []
        async with send:
            for _ in range(n):
                piece = "x"
                pieces.append(piece)
                await send.send(Frame(text=piece))
        joined.append("".join(pieces))

    received = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce)
        async with receive:
            async for frame in receive:
                if type(frame) is Frame:
                    received += 1
    assert len(joined[0]) == n
    return received


async def time_deltas(
    flow: Callable[[int], Awaitable[int]], settings: Settings
) -> tuple[float, float]:
    """Best CPU and wall microseconds per delta over the repetitions."""
    await flow(min(settings.deltas, 5_000))  # warm-up
    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(settings.delta_repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        received = await flow(settings.deltas)
        w1, c1 = time.perf_counter(), time.process_time()
        assert received == settings.deltas, received
        cpu.append((c1 - c0) * 1e6 / settings.deltas)
        wall.append((w1 - w0) * 1e6 / settings.deltas)
    return min(cpu), min(wall)


# --- 3. import time -------------------------------------------------------------------------

_IMPORT_LINE = re.compile(r"^import time:\s*(\d+)\s*\|\s*(\d+)\s*\|( *)(\S+)\s*$")


def child_env() -> dict[str, str]:
    """The environment for fresh interpreters: they must import this very alloy."""
    env = dict(os.environ)
    root = str(Path(alloy.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def wall_of(code: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return (time.perf_counter() - start) * 1e3


IMPORTS = {"empty": "pass", "trio": "import trio", "alloy": "import alloy"}


def import_wall(settings: Settings, env: dict[str, str]) -> dict[str, float]:
    """Median wall ms of an empty interpreter, of ``import trio`` and of ``import alloy``."""
    times: dict[str, list[float]] = {key: [] for key in IMPORTS}
    for code in IMPORTS.values():
        wall_of(code, env)  # writes bytecode caches if they are missing
    for _ in range(settings.imports):  # interleaved, so drift hits all alike
        for key, code in IMPORTS.items():
            times[key].append(wall_of(code, env))
    return {key: statistics.median(values) for key, values in times.items()}


def import_profile(settings: Settings, env: dict[str, str]) -> list[tuple[int, int, int, str]]:
    """``-X importtime`` rows (self µs, cumulative µs, depth, module) of a median run."""
    profiles: list[list[tuple[int, int, int, str]]] = []
    for _ in range(max(1, settings.imports // 2)):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import alloy"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        rows = []
        for line in done.stderr.splitlines():
            match = _IMPORT_LINE.match(line)
            if match:
                own, total, indent, name = match.groups()
                rows.append((int(own), int(total), (len(indent) - 1) // 2, name))
        profiles.append(rows)
    profiles.sort(key=lambda rows: next((r[1] for r in rows if r[3] == "alloy"), 0))
    return profiles[len(profiles) // 2]


def by_package(rows: list[tuple[int, int, int, str]]) -> list[tuple[str, float]]:
    """Self time summed per top-level package (the standard library as one), in ms."""
    totals: dict[str, float] = {}
    for own, _total, _depth, name in rows:
        top = name.split(".")[0]
        key = "stdlib" if top in sys.stdlib_module_names or top.startswith("_") else top
        totals[key] = totals.get(key, 0.0) + own / 1e3
    return sorted(totals.items(), key=lambda item: -item[1])


# --- report ---------------------------------------------------------------------------------


def ms_line(label: str, values: list[float]) -> str:
    return (
        f"  {label:<5} median {statistics.median(values):7.3f} ms   "
        f"p90 {percentile(values, 0.9):7.3f} ms   min {min(values):7.3f} ms"
    )


async def loop_figures(settings: Settings) -> list[Figure]:
    figures: list[Figure] = []
    print(
        f"\n1. One 2-turn run with one tool call (echo), {settings.runs} runs per variant after "
        f"{settings.warmup} warm-up runs, one trio.run.\n"
        "   Timed per run: building the ScriptedProvider and its script, option checks, both "
        "turns, the tool."
    )
    variants = [
        ("alloy.run", run_plain, RUN_TARGET_MS),
        ("alloy.run(on_event=)", run_on_event, RUN_TARGET_MS),
        ("alloy.stream", run_stream, RUN_TARGET_MS),
        ("alloy.run, undecorated tool", run_bare_function, None),
    ]
    for label, variant, target in variants:
        cpu, wall = await time_runs(variant, settings)
        print(f" {label}")
        print(ms_line("CPU", cpu))
        print(ms_line("wall", wall))
        median, p90 = statistics.median(cpu), percentile(cpu, 0.9)
        figures.append(Figure(f"{label}: CPU/run", median, "ms", target, p90))

    print(
        f"\n2. {settings.deltas:,} TextDelta events from a provider to an alloy.stream consumer; "
        f"best of {settings.delta_repeats}."
    )
    alloy_cpu, alloy_wall = await time_deltas(alloy_deltas, settings)
    base_cpu, base_wall = await time_deltas(baseline_deltas, settings)
    ratio = alloy_cpu / base_cpu
    print(f"  alloy.stream                 CPU {alloy_cpu:6.2f} µs/delta   wall {alloy_wall:6.2f}")
    print(f"  baseline: one memory channel CPU {base_cpu:6.2f} µs/delta   wall {base_wall:6.2f}")
    print(f"  ==> alloy / baseline = {ratio:.2f}x  ({alloy_cpu - base_cpu:+.2f} µs per delta)")
    figures.append(Figure("alloy.stream: CPU/delta", alloy_cpu, "µs"))
    figures.append(Figure("baseline channel: CPU/delta", base_cpu, "µs"))
    figures.append(Figure("delta ratio alloy/baseline", ratio, "x"))
    return figures


def import_figures(settings: Settings) -> list[Figure]:
    env = child_env()
    wall = import_wall(settings, env)
    cost, beyond_trio = wall["alloy"] - wall["empty"], wall["alloy"] - wall["trio"]
    print(
        f"\n3. import alloy, fresh interpreters, median of {settings.imports}: "
        f"{wall['alloy']:.1f} ms with it, {wall['empty']:.1f} ms without ==> {cost:.1f} ms\n"
        f"  import trio alone: {wall['trio'] - wall['empty']:.1f} ms, "
        f"so alloy adds {beyond_trio:.1f} ms to a Trio program"
    )
    rows = import_profile(settings, env)
    root = next((r for r in rows if r[3] == "alloy"), None)
    if root is not None:
        print(f"  -X importtime (inflates times): alloy cumulative {root[1] / 1e3:.1f} ms")
    print("  top 5 cumulative, below alloy itself:")
    for own, total, depth, name in sorted(
        (r for r in rows if r[3] != "alloy"), key=lambda r: -r[1]
    )[:5]:
        print(f"    {total / 1e3:7.1f} ms  (self {own / 1e3:5.1f})  depth {depth}  {name}")
    packages = ", ".join(f"{name} {ms:.1f}" for name, ms in by_package(rows)[:6])
    print(f"  self time by package, ms: {packages}")
    return [
        Figure("import alloy", cost, "ms", IMPORT_TARGET_MS),
        Figure("import alloy beyond import trio", beyond_trio, "ms"),
    ]


def table(figures: list[Figure]) -> None:
    print("\nSummary")
    print(f"  {'figure':<37} {'median':>10} {'p90':>10}  {'target':>10}  verdict")
    for figure in figures:
        target = "-" if figure.target is None else f"<= {figure.target:g} {figure.unit}"
        value = (
            f"{figure.value:.3f} {figure.unit}" if figure.unit != "x" else f"{figure.value:.2f}x"
        )
        p90 = "-" if figure.p90 is None else f"{figure.p90:.3f} {figure.unit}"
        print(f"  {figure.name:<37} {value:>10} {p90:>10}  {target:>10}  {figure.verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few iterations: a smoke run for CI")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a figure is over")
    args = parser.parse_args()
    settings = QUICK if args.quick else THOROUGH
    print(
        f"alloy {alloy.__version__}, trio {trio.__version__}, attrs {attrs.__version__}, "
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs"
        f"{' (--quick)' if args.quick else ''}"
    )
    started = time.perf_counter()
    figures = trio.run(loop_figures, settings)
    figures += import_figures(settings)
    table(figures)
    print(f"\n({time.perf_counter() - started:.1f} s)")
    over = [f for f in figures if f.verdict == "OVER"]
    return 1 if args.strict and over else 0


if __name__ == "__main__":
    sys.exit(main())
