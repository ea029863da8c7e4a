"""Idempotent Durable Streams producers for the fault tests, and the check of what they
were told against what the stream holds: a producer (an id, epoch 0, seqs 0, 1, 2, ...)
retries the same seq after any error until it gets 200 or 204; ``check`` reads each
stream back from ``offset=-1`` and finds every acknowledged append exactly once, in
order; ``figures`` prints what happened; ``SlowReplies`` is a proxy that delays a
server's replies."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.polling import poll
from tests.support.procs import Proc
from tests.support.relay import Relay

CT = "application/json"
NEXT = "stream-next-offset"
PATIENCE = 60.0
"""Seconds one append may go unacknowledged before its producer fails the test: a hang
guard, far above any outage here."""


class AckLost(AssertionError):
    """A 409 ``Producer-Expected-Seq`` gap: the server lost an acknowledged append."""


@dataclass(eq=False)
class Producer:
    """An idempotent producer appending ``{"p": id, "s": seq}`` to ``path`` through
    ``urls``: the first one that answers (``alternate``: each seq on the next one). A
    front-end that refuses connections is left for the rest of the run."""

    id: str
    path: str
    urls: list[str]
    alternate: bool = False
    seq: int = 0
    """The next seq: every seq below was acknowledged."""
    new: int = 0
    """200s: appended by this very request."""
    dups: int = 0
    """204s: a retry of an append the server already had (it dropped the copy)."""
    retries: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    failed: list[tuple[float, str]] = field(default_factory=list)
    """``time.monotonic()`` and reason of each failed try."""
    blocked: float = 0.0
    """Seconds from the first try of each append that needed a retry to its
    acknowledgment, summed."""
    longest: float = 0.0
    """The longest of those."""
    acked_at: list[float] = field(default_factory=list)
    """``time.monotonic()`` of each acknowledgment, by seq."""
    sent_at: list[float] = field(default_factory=list)
    """``time.monotonic()`` of each acknowledged append's first try, by seq."""
    gap: str = ""
    """Set (instead of raising) when ``strict`` is off and a gap is met."""
    strict: bool = True
    inflight: str = ""
    """The front-end a request is in flight to, or ""."""
    down: set[str] = field(default_factory=set)

    def _base(self, attempt: int) -> str:
        up = [u for u in self.urls if u not in self.down] or self.urls
        return up[((self.seq if self.alternate else 0) + attempt) % len(up)]

    async def append(self, client: httpx.AsyncClient) -> None:
        body = json.dumps({"p": self.id, "s": self.seq}).encode()
        headers = {
            "content-type": CT,
            "producer-id": self.id,
            "producer-epoch": "0",
            "producer-seq": str(self.seq),
        }
        started = time.monotonic()
        failed_at: float | None = None
        attempt = 0
        while True:
            base = self._base(attempt)
            self.inflight = base
            try:
                resp = await client.post(
                    f"{base}/v1/stream/{self.path}", content=body, headers=headers
                )
            except httpx.TransportError as exc:  # refused, reset, timed out
                if isinstance(exc, httpx.ConnectError):
                    self.down.add(base)
                why = type(exc).__name__
            else:
                if resp.status_code in (200, 204):
                    # 204: the server's highest seq of this producer is this one.
                    assert resp.headers["producer-seq"] == str(self.seq), resp.headers
                    break
                if resp.status_code == 409 and "producer-expected-seq" in resp.headers:
                    self.gap = (
                        f"{self.path} {self.id}: seq {self.seq} acknowledged up to "
                        f"{self.seq - 1}, but the server expects "
                        f"{resp.headers['producer-expected-seq']}"
                    )
                    if self.strict:
                        raise AckLost(self.gap)
                    return
                if resp.status_code < 500:
                    raise AssertionError(
                        f"{self.id} seq {self.seq}: {resp.status_code} {resp.text}"
                    )
                why = f"{resp.status_code} {_error_code(resp)}"
            finally:
                self.inflight = ""
            now = time.monotonic()
            failed_at = failed_at or now
            if now - failed_at > PATIENCE:
                raise AssertionError(
                    f"{self.path} {self.id}: seq {self.seq} unacknowledged for "
                    f"{PATIENCE:.0f}s ({dict(self.failures)})"
                )
            self.failures[why] += 1
            self.failed.append((now, why))
            self.retries += 1
            attempt += 1
            await asyncio.sleep(min(0.02 * 2**attempt, 0.5))
        now = time.monotonic()
        if resp.status_code == 200:
            self.new += 1
        else:
            self.dups += 1
        if failed_at is not None:
            self.blocked += now - started
            self.longest = max(self.longest, now - started)
        self.acked_at.append(now)
        self.sent_at.append(started)
        self.seq += 1


def _error_code(resp: httpx.Response) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        return str(resp.json().get("error", ""))
    return ""


async def write_until(
    client: httpx.AsyncClient, producers: list[Producer], stop: asyncio.Event
) -> None:
    """One writer: its producers append in turn until ``stop`` (or a producer met a gap)."""
    while not stop.is_set() and not any(p.gap for p in producers):
        for p in producers:
            await p.append(client)


async def create(client: httpx.AsyncClient, base: str, path: str) -> None:
    resp = await client.put(f"{base}/v1/stream/{path}", headers={"content-type": CT})
    assert resp.status_code == 201, resp.text


async def read_back(client: httpx.AsyncClient, base: str, path: str) -> tuple[list[Any], bool]:
    """The whole stream by catch-up GETs from -1, page by page; and whether it is closed."""
    offset, messages, pages = "-1", [], 0
    while True:
        resp = await client.get(f"{base}/v1/stream/{path}", params={"offset": offset})
        assert resp.status_code == 200, resp.text
        messages += resp.json()
        offset, pages = resp.headers[NEXT], pages + 1
        if resp.headers.get("stream-up-to-date") == "true":
            return messages, resp.headers.get("stream-closed") == "true"
        assert pages < 10_000, "no end to the stream"


@dataclass
class Check:
    """A stream read back against what its producers were told."""

    path: str
    messages: int
    lost: list[tuple[str, int]]
    duplicated: list[tuple[str, int]]
    out_of_order: list[str]
    strangers: list[Any]

    @property
    def exact(self) -> bool:
        return not (self.lost or self.duplicated or self.out_of_order or self.strangers)


def check(path: str, messages: list[Any], producers: list[Producer]) -> Check:
    mine = {p.id: p for p in producers if p.path == path}
    by_producer: dict[str, list[int]] = {pid: [] for pid in mine}
    strangers = []
    for m in messages:
        if isinstance(m, dict) and m.get("p") in mine:
            by_producer[m["p"]].append(m["s"])
        else:
            strangers.append(m)
    lost, duplicated, out_of_order = [], [], []
    for pid, seqs in by_producer.items():
        acked = range(mine[pid].seq)
        counts = Counter(seqs)
        lost += [(pid, s) for s in acked if counts[s] == 0]
        duplicated += [(pid, s) for s, n in counts.items() if n > 1]
        # Beyond what was acknowledged: an append whose last answer was a gap (strict off)
        strangers += [{"p": pid, "s": s} for s in counts if s >= mine[pid].seq]
        if seqs != sorted(seqs):
            out_of_order.append(pid)
    return Check(path, len(messages), lost, duplicated, out_of_order, strangers)


async def check_all(
    client: httpx.AsyncClient, base: str, paths: list[str], producers: list[Producer]
) -> list[Check]:
    checks = []
    for path in paths:
        messages, _ = await read_back(client, base, path)
        checks.append(check(path, messages, producers))
    return checks


def figures(title: str, producers: list[Producer], checks: list[Check], **extra: object) -> str:
    """One printed line per run."""
    failures: Counter[str] = Counter()
    for p in producers:
        failures.update(p.failures)
    line = (
        f"[{title}] producers={len(producers)} streams={len(checks)} "
        f"acked={sum(p.seq for p in producers)} new={sum(p.new for p in producers)} "
        f"dups_dropped={sum(p.dups for p in producers)} "
        f"retries={sum(p.retries for p in producers)} "
        f"blocked_max_s={max(p.longest for p in producers):.2f} "
        f"blocked_total_s={sum(p.blocked for p in producers):.2f} "
        f"read_back={sum(c.messages for c in checks)} "
        f"lost={sum(len(c.lost) for c in checks)} "
        f"duplicated={sum(len(c.duplicated) for c in checks)} "
        f"gaps={sum(bool(p.gap) for p in producers)} "
        + " ".join(f"{k}={v}" for k, v in extra.items())
        + f" failures={dict(failures)}"
    )
    print(line)
    return line


def assert_exactly_once(checks: list[Check], producers: list[Producer]) -> None:
    assert not [p.gap for p in producers if p.gap]
    for c in checks:
        assert c.exact, c
    assert all(p.seq > 0 for p in producers), "every producer got appends through"


async def until_acked(
    running: list[asyncio.Task[None]],
    producers: list[Producer],
    since: float,
    least: int,
    what: str,
    *,
    within: float = 30,
) -> None:
    """Until every producer has had ``least`` appends acknowledged after ``since``
    (``time.monotonic()``), or a writer of ``running`` ended (its error is the test's)."""

    async def acked() -> bool:
        return any(t.done() for t in running) or all(
            len(p.acked_at) - bisect.bisect_right(p.acked_at, since) >= least for p in producers
        )

    await poll(acked, what, within)


def stamp(name: str) -> str:
    return f"{name}-{time.time_ns() // 1000}"


async def kill_with_requests_in_flight(proc: Proc, producers: list[Producer], n: int) -> int:
    """SIGKILL ``proc`` once at least ``n`` producers have a request in flight to it;
    returns how many had."""

    async def inflight() -> int:
        return sum(p.inflight == proc.url for p in producers) >= n

    await poll(inflight, f"{n} requests in flight to {proc.name}", within=30)
    flying = sum(p.inflight == proc.url for p in producers)
    proc.stop(signal.SIGKILL)
    return flying


REPLIES_IN_FLIGHT = 1024
"""Reads of replies a ``SlowReplies`` holds back at once, at most."""


class SlowReplies(Relay):
    """A TCP proxy on 127.0.0.1 to ``port`` whose replies come back ``delay`` seconds
    late (requests go through at once), in a thread of its own (``relay.Relay``): a
    front-end in another zone than its Redis. Such a front-end's requests spend most of
    their time with their write made and its answer on the way: killed, it dies with
    writes made and never acknowledged, which the producers' retries must not duplicate.
    (Killed while it runs next to Redis, a front-end has answered nearly every write it
    made: the window between Redis's answer and the HTTP response is a fraction of a
    millisecond.)"""

    def __init__(self, port: int, delay: float) -> None:
        super().__init__(port)
        self.delay = delay

    async def replies(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: object
    ) -> None:
        """Each read written ``delay`` after it came, in order, reading on meanwhile."""
        loop = asyncio.get_running_loop()
        # Bounded: past it, reading waits (and TCP holds Redis back), as a slow link does.
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(REPLIES_IN_FLIGHT)

        async def feed() -> None:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    await queue.put((loop.time() + self.delay, data))
            await queue.put((loop.time() + self.delay, b""))

        feeding = asyncio.create_task(feed())
        try:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not data:
                    return
                writer.write(data)
                await writer.drain()
        finally:
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding
