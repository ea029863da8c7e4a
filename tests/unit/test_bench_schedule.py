"""The bench's staggered schedule (``--pipeline 1``): each stream on its own schedule,
and with ``--slot-ms`` the appends due in one slot sent in one round trip."""

from __future__ import annotations

import time
from typing import Any

import pytest

from broadcaster.bench.publishing import on_schedule, staggered

pytestmark = pytest.mark.anyio


class Sink:
    def __init__(self) -> None:
        self.trips: list[list[tuple[str, dict[str, Any]]]] = []

    async def publish(self, sid: str, event: dict[str, Any]) -> int:
        self.trips.append([(sid, event)])
        return 1

    async def publish_many(self, batches: dict[str, dict[str, Any]]) -> dict[str, int]:
        self.trips.append(list(batches.items()))
        return dict.fromkeys(batches, 1)


async def test_each_append_on_its_own_round_trip_by_default() -> None:
    sink, sids = Sink(), [f"s{i}" for i in range(20)]
    t0 = time.perf_counter()
    jobs, in_flight = staggered(sink, sids, 2, 100.0, t0, pad="x")
    schedule = list(jobs)
    assert [round((at - t0) * 1e4) for at, _ in schedule[:3]] == [0, 5, 10]  # 1/(100*20) s
    took = await on_schedule(schedule, in_flight)
    assert len(took) == 40 and len(sink.trips) == 40
    assert all(len(trip) == 1 for trip in sink.trips)
    firsts = [trip[0][0] for trip in sink.trips[:20]]
    assert sorted(firsts) == sorted(sids)  # every stream once per interval
    assert all(e["type"] == "data-bench" and e["p"] == "x" for t in sink.trips for _, e in t)


async def test_appends_due_in_one_slot_share_a_round_trip() -> None:
    sink, sids = Sink(), [f"s{i}" for i in range(20)]
    # 2,000 appends a second, slots of 5 ms: ten appends a round trip
    jobs, in_flight = staggered(sink, sids, 2, 100.0, time.perf_counter(), pad="", slot=0.005)
    took = await on_schedule(jobs, in_flight)
    assert len(took) == 40
    assert sum(len(trip) for trip in sink.trips) == 40
    assert len(sink.trips) == 4 and all(len(trip) == 10 for trip in sink.trips)
    published = [sid for trip in sink.trips for sid, _ in trip]
    assert sorted(published) == sorted(sids * 2)


async def test_a_finish_for_every_stream_on_the_schedule() -> None:
    sink, sids = Sink(), [f"s{i}" for i in range(5)]
    jobs, in_flight = staggered(sink, sids, 1, 50.0, time.perf_counter(), pad="", kind="finish")
    await on_schedule(jobs, in_flight)
    events = [e for trip in sink.trips for _, e in trip]
    assert [e["type"] for e in events] == ["finish"] * 5 and all("p" not in e for e in events)


async def test_slots_do_not_depend_on_the_clock_reading() -> None:
    """The slots are the same on a machine up for a day or a month (a clock of many
    seconds, whose rounding once put due times in the slot before: 11, 10, 9, 10)."""
    for t0 in (0.5, 100_000.0, 86_400.0 * 30 + 0.123):
        sink = Sink()
        jobs, _ = staggered(sink, [f"s{i}" for i in range(20)], 2, 100.0, t0, pad="", slot=0.005)
        for _, job in jobs:
            await job()
        assert [len(trip) for trip in sink.trips] == [10, 10, 10, 10], t0
