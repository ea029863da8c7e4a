"""How long the event loop waits for the interpreter's lock while threads do the hostile
bodies' work, in one process, at several switch intervals side by side.

    .venv/bin/python -m tests.perf.lock_waits [--seconds 5] [--rounds 2]
        [--intervals 5,1,0.5]

Two threads (``BROADCASTER_BODY_THREADS``' default) do, over and over, what a front-end
does with the bodies of ``tests/perf/hostile_bodies.py``: parse each (``parse_json``)
and check it as its route does. The main thread stands for the event loop: every 2 ms
it gives the lock up and takes it back six times in a row, as a loop turn's system calls
do. Printed per interval and round: that turn's time (median, 99th percentile, max) and
the bodies the threads got through meanwhile (what a shorter interval costs them). No
server and no sockets: what is left is the lock, and the machine's other load.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from broadcaster.agui.runs import chat_body, parse_input
from broadcaster.chat.convert import parse_body
from broadcaster.core.events import dump_batch
from broadcaster.generations.request import RequestInvalid, validate_request
from broadcaster.http.bodies import parse_json
from broadcaster.http.errors import ApiError
from broadcaster.http.event_bodies import PublishBody, events_in
from broadcaster.http.settings import Settings
from tests.perf import hostile_bodies

TURN_CALLS = 6
"""Lock hand-overs in one of the loop's turns (a wake, reads and writes)."""


def route_work() -> list[Callable[[], Any]]:
    """Each route's work on its worst body, as the front-end does it."""
    chat = "bench-chat"
    big, _ = hostile_bodies.chat_bodies(chat)  # the tiny one is refused as it streams in
    run = hostile_bodies.run_body(chat)
    small = hostile_bodies.small_values()
    defaults = Settings().request_defaults()
    return [
        lambda: parse_body(parse_json(big)),
        lambda: parse_body(chat_body(parse_input(parse_json(run)), "default")),
        lambda: dump_batch(events_in(PublishBody, parse_json(small))),
        lambda: validate_request(parse_json(small), defaults),
    ]


def worker(work: list[Callable[[], Any]], stop: threading.Event, done: list[int]) -> None:
    while not stop.is_set():
        for task in work:
            with contextlib.suppress(ApiError, RequestInvalid, ValueError):
                task()
            done.append(1)


def turns(seconds: float) -> list[float]:
    """The loop's turns' times (ms) for ``seconds``."""
    found: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter()
        for _ in range(TURN_CALLS):
            time.sleep(0)  # gives the lock up and waits for it, as a system call does
        found.append((time.perf_counter() - started) * 1000)
        time.sleep(0.002)
    return found


def measure(interval_ms: float, seconds: float, work: list[Callable[[], Any]]) -> str:
    sys.setswitchinterval(interval_ms / 1000)
    stop, done = threading.Event(), []
    threads = [
        threading.Thread(target=worker, args=(work[k:] + work[:k], stop, done)) for k in (0, 2)
    ]
    for thread in threads:
        thread.start()
    try:
        found = sorted(turns(seconds))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    p50, p99 = (found[min(len(found) - 1, int(q * len(found)))] for q in (0.5, 0.99))
    return (
        f"{interval_ms:8.2f} {p50:8.2f} {p99:8.2f} {found[-1]:8.1f} {len(found):6d} {len(done):7d}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--intervals", default="5,1,0.5", help="switch intervals, ms")
    args = parser.parse_args()
    work = route_work()
    print("interval turn p50  turn p99 turn max  turns  bodies  (ms; bodies done by 2 threads)")
    for _ in range(args.rounds):
        for interval in (float(x) for x in args.intervals.split(",")):
            print(measure(interval, args.seconds, work), flush=True)


if __name__ == "__main__":
    main()
