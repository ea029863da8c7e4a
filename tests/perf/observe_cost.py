"""What the append-to-write histogram costs the fan-out: one stream's runs handed to N
viewers by the hub, with the append's time in the message (observed once per run) and
without it (nothing observed), interleaved in one process, CPU per run and per delivery
side by side.

    .venv/bin/python -m tests.perf.observe_cost [--viewers 1000] [--runs 2000]

No Redis and no sockets: the hub's own work on a message and a read, each viewer's
write a no-op, so that the difference is the observation's.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from redis.asyncio import Redis

from broadcaster.core import sse
from broadcaster.core.eventlog import EventLog
from broadcaster.core.events import Event
from broadcaster.fanout.hub import Hub
from broadcaster.fanout.push import SingleResolver
from broadcaster.fanout.subscription import Subscription, Topic
from broadcaster.http.metrics import FrontendMetrics


def _hub(viewers: int) -> tuple[Hub, Topic]:
    redis = Redis()  # never connected
    hub = Hub(SingleResolver(redis), EventLog(redis), metrics=FrontendMetrics())
    topic = Topic("s", b"s", 0, "")
    hub._topics["s"], hub._by_channel[b"s"], topic.watched = topic, topic, True
    for _ in range(viewers):
        sub = Subscription(16, topic)
        sub.park(lambda data: True, 0.0)
        topic.subs.add(sub)
    return hub, topic


def _cpu_per_run(hub: Hub, topic: Topic, runs: int, timed: bool) -> float:
    first = topic.cursor + 1
    messages = []
    for seq in range(first, first + runs):
        frame = sse.encode(Event(seq, "data-n", b'{"i":%d}' % seq, f"{seq:08x}"))
        head = b"%d %d %08x -" % (seq, seq, seq)
        at = b" %d" % int(time.time() * 1000) if timed else b""
        messages.append(head + at + b"\n" + frame)
    started = time.process_time()
    for payload in messages:
        hub._on_message(b"s", payload)
        hub._on_read()
    return (time.process_time() - started) / runs


async def _measure(args: argparse.Namespace) -> None:
    hub, topic = _hub(args.viewers)
    delivered = hub.metrics.delivered if hub.metrics is not None else None
    _cpu_per_run(hub, topic, 200, True)  # warm up
    took: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.rounds):
        for timed in (False, True):
            took[timed].append(_cpu_per_run(hub, topic, args.runs, timed))
    assert delivered is not None and delivered._value.get() == args.viewers * (
        200 + 2 * args.rounds * args.runs
    ), "every run reached every viewer"
    without, with_ = min(took[False]), min(took[True])
    print(f"{args.viewers} viewers, {args.runs} runs x {args.rounds} rounds (best round)")
    print(f"{'':24}{'per run':>12}{'per delivery':>14}")
    for name, t in (("without a time", without), ("with a time (observed)", with_)):
        print(f"{name:24}{t * 1e6:>10.1f}us{t / args.viewers * 1e9:>12.1f}ns")
    print(f"ratio {with_ / without:.3f}x, +{(with_ - without) * 1e6:.2f} us per run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(_measure(args))


if __name__ == "__main__":
    main()
