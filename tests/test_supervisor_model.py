"""Supervisor restart arithmetic against a reference model, over random crash schedules.

Each child ``j`` runs incarnation ``k`` for ``schedules[j][k]`` seconds and then crashes; once
its schedule is used up it runs until the supervisor stops. A tiny discrete-event model says,
for every strategy and intensity, which incarnations start and when (if ever) the
supervisor gives up. The real supervisor runs the same schedule under
``trio.testing.MockClock`` (inside ``trio.run`` in a sync test, so Hypothesis drives it) and
must agree exactly: same starts per child, same restart count, same time and child of the
escalation, and no task left behind.

Lifetimes are multiples of 1/4 (exact in binary floating point), and schedules in which two
crashes coincide (their order would be unspecified) are rejected.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import attrs
import pytest
import trio
import trio.testing
from hypothesis import assume, given, settings, strategies as st

from alloy._supervisor import ChildSpec, RestartIntensityExceeded, Strategy, open_supervisor
from support import count_tasks

HORIZON = 40


class Crash(Exception):
    pass


@attrs.frozen
class Outcome:
    starts: tuple[int, ...]
    restarts: int
    escalated_at: float | None = None
    escalated_child: str | None = None


def model(
    strategy: Strategy,
    max_restarts: int,
    max_seconds: int,
    schedules: Sequence[Sequence[Fraction]],
) -> Outcome | None:
    """What an OTP supervisor does with these schedules; ``None`` for an ambiguous one."""
    n = len(schedules)
    incarnation = [0] * n  # index into the schedule of the running incarnation
    started_at = [Fraction(0)] * n
    recent: list[Fraction] = []
    restarts = 0
    while True:
        crashes = sorted(
            (started_at[j] + schedules[j][incarnation[j]], j)
            for j in range(n)
            if incarnation[j] < len(schedules[j])
        )
        if not crashes or crashes[0][0] > HORIZON:
            return Outcome(starts=tuple(k + 1 for k in incarnation), restarts=restarts)
        now, j = crashes[0]
        if now == HORIZON or (len(crashes) > 1 and crashes[1][0] == now):
            return None  # two events at once: their order is not specified
        recent = [t for t in recent if now - t < max_seconds]
        if len(recent) >= max_restarts:
            return Outcome(
                starts=tuple(k + 1 for k in incarnation),
                restarts=restarts,
                escalated_at=float(now),
                escalated_child=f"c{j}",
            )
        recent.append(now)
        restarts += 1
        if strategy == "one_for_one":
            group = [j]
        elif strategy == "one_for_all":
            group = list(range(n))
        else:
            group = list(range(j, n))
        for g in group:
            incarnation[g] += 1
            started_at[g] = now


def run_supervisor(
    strategy: Strategy,
    max_restarts: int,
    max_seconds: int,
    schedules: Sequence[Sequence[Fraction]],
) -> Outcome:
    starts = [0] * len(schedules)

    def spec(j: int) -> ChildSpec:
        async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            k = starts[j]
            starts[j] += 1
            task_status.started()
            if k < len(schedules[j]):
                await trio.sleep(float(schedules[j][k]))
                raise Crash(f"c{j}")
            await trio.sleep_forever()

        return ChildSpec(name=f"c{j}", start=child)

    async def main() -> Outcome:
        before = count_tasks()
        supervisors = []
        try:
            async with open_supervisor(
                strategy=strategy,
                max_restarts=max_restarts,
                max_seconds=max_seconds,
                children=[spec(j) for j in range(len(schedules))],
            ) as sup:
                supervisors.append(sup)
                await trio.sleep(HORIZON)
        except RestartIntensityExceeded as exc:
            assert count_tasks() == before
            assert isinstance(exc.__cause__, Crash)
            return Outcome(
                starts=tuple(starts),
                restarts=supervisors[0].restarts,
                escalated_at=trio.current_time(),
                escalated_child=exc.child,
            )
        assert count_tasks() == before
        return Outcome(starts=tuple(starts), restarts=supervisors[0].restarts)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


lifetimes = st.integers(1, 16).map(lambda quarters: Fraction(quarters, 4))


@settings(max_examples=300, deadline=None)
@given(
    strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
    max_restarts=st.integers(0, 4),
    max_seconds=st.integers(1, 6),
    schedules=st.lists(st.lists(lifetimes, max_size=8), min_size=1, max_size=4),
)
def test_restart_arithmetic_matches_the_model(
    strategy: Strategy,
    max_restarts: int,
    max_seconds: int,
    schedules: list[list[Fraction]],
) -> None:
    expected = model(strategy, max_restarts, max_seconds, schedules)
    assume(expected is not None)
    assert run_supervisor(strategy, max_restarts, max_seconds, schedules) == expected


@pytest.mark.parametrize(
    ("gaps", "escalates"),
    [
        # max_restarts=2 within max_seconds=5: the third restart inside 5 s is one too many.
        ([1, 1, 1], True),
        ([1, 1, 4], False),  # 1, 2, 6: 6 - 1 = 5: the restart at 1 has left the window
        ([2, 3, 1], True),  # 2, 5, 6: 6 - 2 = 4 is inside
        ([2, 3, 2], False),  # 2, 5, 7: 7 - 2 = 5: a restart exactly max_seconds ago has expired
        ([3, 3, 3, 3], False),
    ],
)
def test_the_window_boundary(gaps: list[int], escalates: bool) -> None:
    schedule = [Fraction(g) for g in gaps]
    expected = model("one_for_one", 2, 5, [schedule])
    assert expected is not None
    assert (expected.escalated_at is not None) == escalates
    assert run_supervisor("one_for_one", 2, 5, [schedule]) == expected
