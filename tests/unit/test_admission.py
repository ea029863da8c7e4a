"""``fanout.config.Admission``, the admission of new viewers: at once while the front-end's
event loop keeps up (``LoopLag``), whatever the bucket holds, the bucket charged all the
same; while it is behind, each in its turn at the rate, and refused past the wait."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from broadcaster.fanout.config import LAG_PERIOD, LAG_QUIET, Admission, LoopLag
from tests.support.polling import until

pytestmark = pytest.mark.unit

KEEPING_UP, BEHIND = False, True


def turns(admission: Admission, n: int, now: float = 0.0, behind: bool = BEHIND) -> list[Any]:
    return [admission.take(now, behind) for _ in range(n)]


def test_while_the_loop_keeps_up_a_herd_is_admitted_at_once_whatever_the_rate() -> None:
    admission = Admission(rate=10, wait=1)
    assert turns(admission, 1000, behind=KEEPING_UP) == [0.0] * 1000
    # The same herd while behind: ten at once (the burst), ten turns a second, then refused.
    behind = turns(Admission(rate=10, wait=1), 25)
    assert behind[:10] == [0.0] * 10
    assert behind[10:20] == pytest.approx([i / 10 for i in range(1, 11)])
    assert behind[20:] == [None] * 5


def test_the_bucket_is_charged_while_keeping_up_and_never_into_debt() -> None:
    admission = Admission(rate=10, wait=1)
    turns(admission, 4, behind=KEEPING_UP)
    # Four of the burst's ten are spent: six more at once, then turns.
    assert turns(admission, 7) == [0.0] * 6 + [pytest.approx(0.1)]
    admission = Admission(rate=10, wait=1)
    turns(admission, 500, behind=KEEPING_UP)
    # The loop falls behind mid-storm: the next viewers wait at the rate, from an empty
    # bucket (not a fresh burst, nor the debt of the 490 let in past it).
    assert turns(admission, 3) == pytest.approx([0.1, 0.2, 0.3])
    # Refilled as ever: a second later, a full burst again.
    assert turns(admission, 11, now=1.3) == [0.0] * 10 + [pytest.approx(0.1)]


def test_a_debt_of_waiting_viewers_stays_while_keeping_up() -> None:
    """Viewers waiting their turns keep them: one admitted at once meanwhile neither adds
    to the debt nor clears it, so the next to wait comes after them."""
    admission = Admission(rate=10, wait=1)
    assert turns(admission, 15)[-1] == pytest.approx(0.5)
    assert admission.take(0.0, KEEPING_UP) == 0.0
    assert admission.take(0.0, BEHIND) == pytest.approx(0.6)


def test_past_the_wait_a_viewer_is_refused_only_while_behind() -> None:
    admission = Admission(rate=10, wait=1)
    turns(admission, 20)  # the burst and a second of turns
    assert admission.take(0.0, BEHIND) is None
    assert admission.take(0.0, KEEPING_UP) == 0.0
    assert admission.take(0.0, BEHIND) is None, "nothing was taken by the refusal"
    assert admission.take(0.25, BEHIND) == pytest.approx(0.85)  # 2.5 turns repaid since


def test_no_rate_no_turns() -> None:
    assert turns(Admission(rate=0, wait=0), 100) == [0.0] * 100


class Loop:
    """The loop as ``LoopLag`` uses it: its time, set by the test, and its timers."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[Timer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any, *args: Any) -> Timer:
        self.timers.append(Timer(when, callback, args))
        return self.timers[-1]

    def pending(self) -> list[Timer]:
        return [t for t in self.timers if not t.cancelled]

    def fire(self, late: float) -> None:
        """The pending timer runs ``late`` seconds after it was due."""
        [timer] = self.pending()
        self.timers.remove(timer)
        self.now = timer.when + late
        timer.callback(*timer.args)


class Timer:
    def __init__(self, when: float, callback: Any, args: tuple[Any, ...]) -> None:
        self.when, self.callback, self.args, self.cancelled = when, callback, args, False

    def cancel(self) -> None:
        self.cancelled = True


def test_behind_while_a_timer_ran_late_or_the_next_is_overdue() -> None:
    loop = Loop()
    lag = LoopLag(0.05)
    assert lag.behind(loop.now), "not started: nothing known, the rate applies"
    lag.start(loop)  # type: ignore[arg-type]
    assert loop.timers == [], "no timer until a viewer comes"
    assert not lag.behind(loop.now)
    assert [t.when for t in loop.timers] == [100.0 + LAG_PERIOD]
    loop.fire(late=0.001)
    assert not lag.behind(loop.now)
    loop.fire(late=0.08)  # a turn of the loop ran long
    assert lag.behind(loop.now)
    loop.fire(late=0.002)
    assert not lag.behind(loop.now), "on time again: keeping up"
    due = loop.pending()[0].when
    assert not lag.behind(due + 0.049)
    assert lag.behind(due + 0.051), "the next timer is overdue: a turn running long, now"
    lag.stop()
    assert loop.pending() == [], "nothing left behind"
    assert lag.behind(loop.now)


def test_the_timer_stops_while_no_viewer_comes_and_starts_with_the_next() -> None:
    loop = Loop()
    lag = LoopLag(0.05)
    lag.start(loop)  # type: ignore[arg-type]
    assert not lag.behind(loop.now)
    fired = 0
    while loop.pending():
        loop.fire(late=0.0)
        fired += 1
    assert fired - round(LAG_QUIET / LAG_PERIOD) in (0, 1), "a quiet second's timers, no more"
    loop.now += 60  # an idle minute: no timer
    assert not lag.behind(loop.now), "the next viewer: keeping up until the timer tells"
    [timer] = loop.pending()
    assert timer.when == loop.now + LAG_PERIOD
    loop.fire(late=0.2)
    assert lag.behind(loop.now)
    lag.stop()


@pytest.mark.anyio
async def test_a_loop_held_up_is_behind_until_it_keeps_up_again() -> None:
    loop = asyncio.get_running_loop()
    lag = LoopLag(0.05)
    lag.start(loop)

    def hold(seen: asyncio.Future[bool]) -> None:
        """A callback holding the loop: the timer, due meanwhile, is overdue."""
        time.sleep(0.1)
        seen.set_result(lag.behind(loop.time()))

    try:
        assert not lag.behind(loop.time())
        seen: asyncio.Future[bool] = loop.create_future()
        loop.call_soon(hold, seen)
        assert await seen
        await asyncio.sleep(0)  # the timer runs, late
        await until(lambda: not lag.behind(loop.time()), "the loop keeps up again")
    finally:
        lag.stop()
