"""What an AG-UI viewer costs the front-end against an AI SDK viewer of the same stream:
front-end CPU per delivery, the two kinds measured in alternating rounds of one run, with
the ratio.

    .venv/bin/python -m tests.perf.agui_cost [--viewers 50] [--events 2000] [--rounds 5]

Real processes on 127.0.0.1: a Redis server of its own and one front-end (uvicorn). Each
round opens ``--viewers`` viewers of a new stream, all AI SDK
(``GET /v1/streams/{id}/events``, served by its fast path), all AI SDK through the app
(the same route with ``?compact=1``, the response an AG-UI viewer gets), all AI SDK
that asked for the caught-up mark (``?caught_up=1``, docs/resuming.md) or all AG-UI
(``GET /v1/agui/generations/{id}/events``),
waits until each is caught up, then appends ``--events`` text deltas (and ``finish``)
straight to Redis in batches of 10, so that the front-end's only work is delivery. The
front-end's CPU (its threads' time on CPU, from the scheduler) from the first append until
every viewer has read the last delta, divided by the deliveries (viewers x events), is the
figure. What a viewer costs once, whatever the stream's length (its end: the last frames,
the response closed), is measured apart: the CPU from then until every viewer has read its
end, per viewer. (Joining is not measured: the deltas start once every viewer is parked.)
Last, in this process, the mapping's own CPU per text delta (``mapping_cost``).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

from redis.asyncio import Redis

from broadcaster.agui.projection import Mapper
from broadcaster.agui.views import Translation, Viewer
from broadcaster.core import sse
from broadcaster.core.embedded import EmbeddedRedis
from broadcaster.core.eventlog import EventLog
from broadcaster.core.events import Event, dump_event
from tests.support.procs import Proc, start_frontend

ENDS = {
    "aisdk": b"data: [DONE]",
    "aisdk-app": b"data: [DONE]",
    "caught-up": b"data: [DONE]",
    "agui": b'"RUN_FINISHED"',
}
PATHS = {
    "aisdk": "/v1/streams/{id}/events",
    # ``compact`` (a folded replay, then live as usual) is served by the app rather than
    # the stream route's fast path: the same SSE response an AG-UI viewer gets.
    "aisdk-app": "/v1/streams/{id}/events?compact=1",
    # A viewer that asked to be told when it caught up (and the tail in keepalives),
    # served by the app too (docs/resuming.md).
    "caught-up": "/v1/streams/{id}/events?caught_up=1",
    "agui": "/v1/agui/generations/{id}/events",
}
KINDS = tuple(PATHS)


def cpu_seconds(pid: int) -> float:
    """The process's CPU time, every thread's, in nanoseconds from the scheduler
    (``/proc/{pid}/task/*/schedstat``; utime and stime count 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
    return total / 1e9


async def viewer(
    port: int, path: str, end: bytes, *, last: bytes, flags: tuple[asyncio.Event, asyncio.Event]
) -> int:
    """One viewer: an HTTP/1.1 GET read until ``end``; the bytes it got. ``ready`` is set
    once it is caught up, ``delivered`` once it read ``last`` (``flags``: both)."""
    ready, delivered = flags
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
    got = b""
    try:
        while end not in got[-4096:]:
            chunk = await reader.read(65536)
            if not chunk:
                raise RuntimeError(f"{path}: closed before its end\n{got[-500:]!r}")
            seen = len(got)
            got += chunk
            if not ready.is_set() and (b"text-start" in got or b"TEXT_MESSAGE_START" in got):
                ready.set()  # caught up: the history came
            if not delivered.is_set() and last in got[max(0, seen - len(last)) :]:
                delivered.set()
    finally:
        writer.close()
    return len(got)


class Round(NamedTuple):
    per_delivery: float
    """CPU seconds per delivery of a delta."""
    per_end: float
    """CPU seconds per viewer of the stream's end (the last frames, the response closed)."""


async def one_round(front: Proc, log: EventLog, kind: str, viewers: int, events: int) -> Round:
    """One round of ``viewers`` viewers of ``kind``."""
    sid = f"agui-cost-{secrets.token_hex(4)}"
    await log.append(sid, [{"type": "start"}, {"type": "start-step"}], kind="feed")
    await log.append(sid, [{"type": "text-start", "id": "t0"}], kind="feed")
    path = PATHS[kind].format(id=sid)
    port = front.port
    assert port is not None, "the front-end has no port"
    last = f"word {events - 1} ".encode()
    flags = [(asyncio.Event(), asyncio.Event()) for _ in range(viewers)]
    tasks = [
        asyncio.create_task(viewer(port, path, ENDS[kind], last=last, flags=pair)) for pair in flags
    ]
    await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready, _ in flags)), 60)
    await asyncio.sleep(0.2)  # every viewer parked, caught up
    started = cpu_seconds(front.pid)
    for first in range(0, events, 10):
        batch = [
            {"type": "text-delta", "id": "t0", "delta": f"word {n} "}
            for n in range(first, min(first + 10, events))
        ]
        await log.append(sid, batch, kind="feed")
        await asyncio.sleep(0.005)
    await asyncio.wait_for(asyncio.gather(*(done.wait() for _, done in flags)), 120)
    delivered = cpu_seconds(front.pid)
    tail = [{"type": "text-end", "id": "t0"}, {"type": "finish-step"}, {"type": "finish"}]
    await log.append(sid, tail, kind="feed")
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    ended = cpu_seconds(front.pid)
    return Round((delivered - started) / (viewers * events), (ended - delivered) / viewers)


async def measure(args: argparse.Namespace, front: Proc, redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    log = EventLog(redis)
    took: dict[str, list[Round]] = {kind: [] for kind in KINDS}
    for kind in KINDS:  # warm up every path
        await one_round(front, log, kind, args.viewers, 50)
    for r in range(args.rounds):
        for kind in KINDS[r % len(KINDS) :] + KINDS[: r % len(KINDS)]:
            took[kind].append(await one_round(front, log, kind, args.viewers, args.events))
    await redis.aclose()
    deliveries = {kind: [t.per_delivery for t in rounds] for kind, rounds in took.items()}
    best = {kind: min(values) for kind, values in deliveries.items()}
    middle = {kind: statistics.median(values) for kind, values in deliveries.items()}
    print(f"{args.viewers} viewers x {args.events} events, {args.rounds} rounds each:")
    for kind in KINDS:
        rounds = " ".join(f"{v * 1e6:.2f}" for v in deliveries[kind])
        ends = statistics.median(t.per_end for t in took[kind])
        print(
            f"  {kind:9} best {best[kind] * 1e6:5.2f} us, median {middle[kind] * 1e6:5.2f} us"
            f" CPU per delivery  (rounds: {rounds});"
            f" its end: median {ends * 1e6:.0f} us per viewer"
        )
    print(
        f"  caught-up / aisdk-app: best {best['caught-up'] / best['aisdk-app']:.2f}x,"
        f" median {middle['caught-up'] / middle['aisdk-app']:.2f}x"
    )
    for base in ("aisdk", "aisdk-app"):
        print(
            f"  AG-UI / {base}: best {best['agui'] / best[base]:.2f}x,"
            f" median {middle['agui'] / middle[base]:.2f}x"
        )


def mapping_cost(runs: int = 20_000) -> float:
    """Seconds to map one text delta to AG-UI (``Viewer.direct`` on a run of 10 new ones,
    framed as the fan-out frames them): what a front-end spends once per event, whatever
    its number of AG-UI viewers."""
    translation = Translation(Mapper("thread", "generation"))
    viewer = Viewer(translation, translation)

    def run(chunks: list[dict[str, Any]], first: int) -> bytes:
        events = (Event(seq, *dump_event(c), tag="0badc0de") for seq, c in enumerate(chunks, first))
        return b"".join(sse.encode(e) for e in events)

    viewer.direct(
        run([{"type": "start"}, {"type": "start-step"}, {"type": "text-start", "id": "t0"}], 1)
    )
    made = [
        run(
            [
                {"type": "text-delta", "id": "t0", "delta": f"word {n} "}
                for n in range(first, first + 10)
            ],
            first,
        )
        for first in range(4, 4 + runs * 10, 10)
    ]
    out = None
    started = time.process_time()
    for chunk in made:
        out = viewer.direct(chunk)
    took = time.process_time() - started
    assert out and b"TEXT_MESSAGE_CONTENT" in out, f"not mapped as text: {out!r}"
    return took / (runs * 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis", persistent=False)
        redis.start(reuse=False)
        front: Proc | None = None
        try:
            front = start_frontend(redis.url, Path(tmp), "frontend")
            started = time.monotonic()
            asyncio.run(measure(args, front, redis.url))
            print(
                f"  a text delta mapped to AG-UI: {mapping_cost() * 1e6:.2f} us CPU, once per event"
            )
            print(f"  ({time.monotonic() - started:.0f} s)")
        finally:
            if front is not None:
                front.stop()
            redis.stop()


if __name__ == "__main__":
    main()
