"""``wire.Turns``: viewers past the admission rate wait in one queue with one timer, and
are answered in the order of their turns, a tick's worth together."""

from __future__ import annotations

import asyncio

import pytest

from broadcaster.transport import wire
from broadcaster.viewers.fastpath import Opening, _later

pytestmark = pytest.mark.anyio


class Counted(wire.Turns):
    runs = 0

    def _run(self) -> None:
        self.runs += 1
        super()._run()


class Waiting:
    """What ``Turns`` calls when a viewer's turn comes."""

    def __init__(self, answers: list[tuple[float, float, Waiting]], due: float) -> None:
        self.answers, self.due = answers, due

    def answer_later(self, opening: Opening) -> None:
        self.answers.append((asyncio.get_running_loop().time(), self.due, self))


async def test_a_herd_is_answered_in_order_a_ticks_worth_at_a_time() -> None:
    loop = asyncio.get_running_loop()
    turns = Counted(loop)
    answers: list[tuple[float, float, Waiting]] = []
    waiting = []
    for i in range(40):  # 400 a second: 100 ms of turns
        wait = 0.0025 * (i + 1)
        waiting.append(Waiting(answers, loop.time() + wait))
        turns.add(waiting[-1], Opening(b"", wait, _later))  # type: ignore[arg-type]
    await asyncio.sleep(0.1 + 2 * wire.TURNS_TICK)
    assert [w for _, _, w in answers] == waiting  # every one, in the order of its turn
    for at, due, _ in answers:  # none long before its turn, none long after
        assert due - wire.TURNS_TICK - 0.002 <= at <= due + 0.1
    # Answered together, as many as fall due within a tick (20 here), not one per run of
    # the timer: uvloop's timer would fire 40 times (once a turn of the loop each).
    assert wire.TURNS_TICK >= 0.01 and turns.runs <= 0.1 / wire.TURNS_TICK + 2, turns.runs
