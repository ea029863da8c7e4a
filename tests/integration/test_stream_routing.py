"""Stream-affine routing through a real nginx run from deploy/nginx.conf.

nginx hashes the stream id taken from the path (``hash $broadcaster_route consistent``),
so every viewer of a stream lands on one front-end, and Redis sends each event of the
stream to that front-end alone: ``PUBSUB NUMSUB`` of the stream's channel is 1 however
many front-ends run. Checked here on the suite's own Redis, three front-ends (uvicorn on
127.0.0.1, started with a viewer-token secret) and nginx, configured by
deploy/nginx.conf itself (tests/support/nginx.py substitutes only addresses and paths):

- viewers of 20 streams, 2 or 3 each, some with the viewer token in the query string:
  one subscriber per channel, the streams spread over the front-ends, every event to
  every viewer once and in order, and each stream's requests (POST and GET, with any
  query string) served by one front-end;
- a front-end at its per-stream viewer limit: the next viewer is served by the next
  front-end on the ring (then two subscribers), and nginx sends the full front-end no
  new request for ``fail_timeout``;
- a front-end killed with SIGKILL: its viewers resume with Last-Event-ID through nginx
  on a survivor, each stream on one survivor, and every event arrives once, in order.

Which front-end holds a stream is read from each front-end's ``/readyz`` (its count of
viewers and streams), opening the streams one at a time. Needs nginx (/usr/sbin/nginx);
without it the tests fail and say what to install. Every process is stopped by pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from broadcaster import Publisher
from broadcaster.auth import credentials
from broadcaster.clients.stream_client import ClientEvent, StreamClient
from broadcaster.core import keys
from tests.support.polling import poll
from tests.support.procs import Proc, SSEEvent, parse_sse
from tests.support.stacks import Stack, start_stack

pytestmark = pytest.mark.anyio

SECRET = "stream-routing-test-" + secrets.token_hex(8)


# --- the deployment ---------------------------------------------------------------


def upstream(fe: Proc) -> str:
    """How nginx names ``fe`` in $upstream_addr."""
    return f"127.0.0.1:{fe.port}"


@contextlib.contextmanager
def stack(tmp_path: Path, count: int, env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Redis, ``count`` front-ends and nginx in front of them; all stopped by pid."""
    fe_env = {"BROADCASTER_TOKEN_SECRET": SECRET, **(env or {})}
    s = start_stack(tmp_path, "routing", None, frontend_env=fe_env, frontends=count, nginx=True)
    assert s.nginx is not None
    try:
        yield s
    except BaseException:
        print(f"nginx log:\n{s.nginx.log()[-3000:]}")
        print("nginx requests:\n" + "\n".join(map(str, s.nginx.requests()[-60:])))
        for fe in s.frontends:
            print(f"{fe.name} (port {fe.port}) log:\n{fe.log()[-2000:]}")
        raise
    finally:
        s.stop()
    # Nothing of ours is left running.
    assert s.nginx.popen is not None and s.nginx.popen.poll() is not None
    assert all(not fe.alive() for fe in s.frontends)


async def loads(http: httpx.AsyncClient, fes: list[Proc]) -> dict[str, tuple[int, int]]:
    """(viewers, streams) of each front-end, from its /readyz."""
    replies = await asyncio.gather(*(http.get(f"{fe.url}/readyz") for fe in fes))
    return {
        fe.name: (reply.json()["viewers"], reply.json()["streams"])
        for fe, reply in zip(fes, replies, strict=True)
    }


async def numsub(redis: Redis, sids: list[str]) -> dict[str, int]:
    """Subscribers of each stream's push channel: one per front-end that watches it."""
    channels = [keys.push_channel(sid) for sid in sids]
    reply = await redis.pubsub_numsub(*channels)
    counts = {c.decode() if isinstance(c, bytes) else c: int(n) for c, n in reply}
    return {sid: counts[channel] for sid, channel in zip(sids, channels, strict=True)}


async def watched_by(redis: Redis, sids: list[str], count: int = 1, within: float = 5) -> None:
    """Wait until each stream's channel has ``count`` subscribers (a front-end's
    subscription is confirmed a moment after it counts a viewer, a dead one's dropped a
    moment after its connection closed); fail if that does not come ``within`` s."""

    async def subscribed() -> bool:
        return set((await numsub(redis, sids)).values()) == {count}

    await poll(subscribed, f"{count} subscriber(s) for each of {sids}", within)


def token_for(sid: str) -> str:
    token, _ = credentials.mint_viewer_token(SECRET, sid, 600)
    return token


def events_url(base: str, sid: str) -> str:
    return f"{base}/v1/streams/{sid}/events"


def event(i: int) -> dict[str, Any]:
    return {"type": "data-n", "i": i}


FINISH = {"type": "finish", "finishReason": "stop"}


# --- viewers ----------------------------------------------------------------------


@dataclass
class ClientViewer:
    """The project's StreamClient through nginx, Bearer token; resumes by itself with
    Last-Event-ID (its ``max_retries`` failures in a row are allowed)."""

    sid: str
    events: list[ClientEvent] = field(default_factory=list)

    async def run(self, base: str, max_retries: int) -> None:
        async with StreamClient(
            base, token=token_for(self.sid), backoff_base=0.05, max_retries=max_retries
        ) as client:
            async for e in client.events(self.sid):
                self.events.append(e)

    def seqs(self) -> list[int]:
        return [e.id for e in self.events]

    def values(self) -> list[Any]:
        return [e.data.get("i") for e in self.events]


@dataclass
class WireViewer:
    """A plain HTTP client: records every event exactly as it came over the wire, across
    its connections. With ``resume`` it reconnects after a cut, sending the id of the
    last event it received as Last-Event-ID, as a browser's EventSource does."""

    sid: str
    url: str
    resume: bool = False
    events: list[SSEEvent] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    async def run(self, http: httpx.AsyncClient) -> None:
        last_id: str | None = None
        while True:
            headers = {"accept": "text/event-stream"}
            if last_id is not None:
                headers["last-event-id"] = last_id
            try:
                async with http.stream("GET", self.url, headers=headers) as resp:
                    self.statuses.append(resp.status_code)
                    if resp.status_code != 200:
                        body = await resp.aread()
                        raise AssertionError(f"{self.url}: {resp.status_code} {body!r}")
                    pending = b""
                    async for chunk in resp.aiter_raw():
                        *blocks, pending = (pending + chunk).split(b"\n\n")
                        for block in blocks:
                            for e in parse_sse(block + b"\n\n")[0]:
                                if e.data == "[DONE]":
                                    return
                                self.events.append(e)
                                if e.id is not None:
                                    last_id = e.id
            except httpx.TransportError:
                if not self.resume:
                    raise
            if not self.resume:
                raise AssertionError(f"{self.url}: the response ended before [DONE]")
            await asyncio.sleep(0.05)

    def seqs(self) -> list[int]:
        return [int(e.id.split(".")[0]) for e in self.events if e.id is not None]

    def values(self) -> list[Any]:
        return [e.json().get("i") for e in self.events]


Viewer = ClientViewer | WireViewer


def starter(
    tasks: list[asyncio.Task[None]], base: str, http: httpx.AsyncClient, max_retries: int
) -> Callable[[Viewer], None]:
    """Starts a viewer as a task in ``tasks``: a StreamClient through ``base`` allowed
    ``max_retries`` failures in a row, or a wire viewer on ``http``."""

    def start(viewer: Viewer) -> None:
        if isinstance(viewer, ClientViewer):
            tasks.append(asyncio.create_task(viewer.run(base, max_retries=max_retries)))
        else:
            tasks.append(asyncio.create_task(viewer.run(http)))

    return start


def assert_every_event_once_in_order(viewer: Viewer, rounds: int) -> None:
    """Event 0 (which created the stream), 1..rounds, then the finish: seq 1..rounds + 2."""
    where = f"{type(viewer).__name__} of {viewer.sid}"
    assert viewer.seqs() == list(range(1, rounds + 3)), where
    assert viewer.values() == [*range(rounds + 1), None], where


async def create_streams(http: httpx.AsyncClient, stack: Stack, sids: list[str]) -> None:
    """Each stream's first event, published through nginx (POST routes like the GETs)."""
    for sid in sids:
        reply = await http.post(events_url(stack.nginx.url, sid), json=event(0))
        assert reply.status_code == 201, reply.text


async def open_viewers(
    http: httpx.AsyncClient,
    redis: Redis,
    fes: list[Proc],
    sid: str,
    *,
    viewers: list[Viewer],
    start: Callable[[Viewer], None],
) -> Proc:
    """Open a stream's viewers, the first alone; return the front-end that serves them.
    All of them on that one front-end, the stream's channel subscribed once."""
    before = await loads(http, fes)

    start(viewers[0])

    async def grown() -> list[Proc]:
        now = await loads(http, fes)
        return [fe for fe in fes if now[fe.name][1] > before[fe.name][1]]

    (holder,) = await poll(grown, f"a front-end watching {sid}", 10)
    for viewer in viewers[1:]:
        start(viewer)

    async def all_open() -> dict[str, tuple[int, int]] | None:
        now = await loads(http, fes)
        added = sum(now[n][0] for n in now) - sum(before[n][0] for n in before)
        return now if added == len(viewers) else None

    now = await poll(all_open, f"{len(viewers)} viewers of {sid} open", 10)
    assert now[holder.name][0] - before[holder.name][0] == len(viewers), (sid, before, now)
    await watched_by(redis, [sid])
    return holder


# --- the tests --------------------------------------------------------------------


async def test_each_stream_is_watched_by_one_front_end(tmp_path: Path) -> None:
    rounds = 8
    sids = [f"route-{n:02d}-{secrets.token_hex(3)}" for n in range(20)]
    with stack(tmp_path, 3) as s:
        tasks: list[asyncio.Task[None]] = []
        viewers: dict[str, list[Viewer]] = {}
        holders: dict[str, Proc] = {}
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=20)
        async with (
            httpx.AsyncClient(timeout=30, limits=limits) as http,
            Publisher.from_url(s.redis.url) as pub,
            Redis.from_url(s.redis.url) as redis,
        ):
            await create_streams(http, s, sids)
            start = starter(tasks, s.nginx.url, http, max_retries=0)

            for n, sid in enumerate(sids):
                url = events_url(s.nginx.url, sid)
                token = token_for(sid)
                # The first viewer sends its token as a Bearer header and no query string;
                # the others carry it in the query string, one with more parameters.
                queries = [f"?token={token}", f"?last_event_id=0&token={token}&x={n}"]
                viewers[sid] = [
                    ClientViewer(sid),
                    *(WireViewer(sid, url + q) for q in queries[: 1 + n % 2]),
                ]
                holders[sid] = await open_viewers(
                    http, redis, s.frontends, sid, viewers=viewers[sid], start=start
                )

            # One subscriber per stream, on the front-end that serves its viewers; the
            # streams are spread over the front-ends.
            await watched_by(redis, sids)
            spread = {fe.name: [sid for sid in sids if holders[sid] is fe] for fe in s.frontends}
            counts = {name: len(held) for name, held in spread.items()}
            print(f"\nstreams per front-end: {counts}")
            assert sum(1 for held in spread.values() if held) > 1, spread
            final = await loads(http, s.frontends)
            for fe in s.frontends:
                expected = sum(len(viewers[sid]) for sid in spread[fe.name])
                assert final[fe.name] == (expected, len(spread[fe.name])), (fe.name, final)

            for i in range(1, rounds + 1):
                await pub.publish_many({sid: event(i) for sid in sids})
                await asyncio.sleep(0.01)
            await pub.publish_many(dict.fromkeys(sids, FINISH))
            await asyncio.wait_for(asyncio.gather(*tasks), 30)

        for sid in sids:
            for viewer in viewers[sid]:
                assert_every_event_once_in_order(viewer, rounds)
                if isinstance(viewer, WireViewer):
                    assert viewer.statuses == [200], viewer

        # nginx's own log: every request of a stream, the POST that created it and each
        # GET whatever its query string, went to the stream's one front-end.
        await asyncio.sleep(0.3)  # nginx writes a request's line when it ends
        requests = s.nginx.requests()
        for sid in sids:
            path = f"/v1/streams/{sid}/events"
            mine = [r for r in requests if r["uri"].split("?")[0] == path]
            assert sorted(r["method"] for r in mine) == ["GET"] * len(viewers[sid]) + ["POST"]
            assert {r["upstream"] for r in mine} == {upstream(holders[sid])}, mine
            queried = {
                v.url.removeprefix(s.nginx.url) for v in viewers[sid] if isinstance(v, WireViewer)
            }
            assert {r["uri"] for r in mine} == {path, *queried}, mine


async def test_a_stream_over_the_viewer_limit_spills_to_the_next_front_end(
    tmp_path: Path,
) -> None:
    rounds = 6
    sid = f"overflow-{secrets.token_hex(4)}"
    env = {"BROADCASTER_MAX_VIEWERS_PER_STREAM": "2"}
    with stack(tmp_path, 2, env) as s:
        tasks: list[asyncio.Task[None]] = []
        async with (
            httpx.AsyncClient(timeout=30) as http,
            Publisher.from_url(s.redis.url) as pub,
            Redis.from_url(s.redis.url) as redis,
        ):
            await create_streams(http, s, [sid])
            # No retry allowed: a 503 reaching the client fails the test.
            start = starter(tasks, s.nginx.url, http, max_retries=0)

            first_two: list[Viewer] = [ClientViewer(sid), ClientViewer(sid)]
            holder = await open_viewers(
                http, redis, s.frontends, sid, viewers=first_two, start=start
            )
            (other,) = [fe for fe in s.frontends if fe is not holder]

            # The third viewer: its front-end says 503 (at the limit), nginx moves it to
            # the next front-end on the ring, which now watches the stream too.
            third = ClientViewer(sid)
            start(third)

            await watched_by(redis, [sid], 2, within=10)  # a second front-end subscribed
            # The other front-end watches the stream (subscribed) before the viewer that
            # waited for it joins (the hub's arrivals): its /readyz counts it a moment later.
            spilled = {holder.name: (2, 1), other.name: (1, 1)}

            async def third_counted() -> bool:
                return await loads(http, s.frontends) == spilled

            await poll(third_counted, f"the viewers counted as {spilled}", 10)

            # The 503 counted as a failure (max_fails=1): for fail_timeout nginx sends the
            # full front-end nothing new, so the fourth viewer goes straight to the other.
            fourth = ClientViewer(sid)
            start(fourth)

            async def four_open() -> bool:
                return (await loads(http, s.frontends))[other.name] == (2, 1)

            await poll(four_open, "the fourth viewer open", 10)

            for i in range(1, rounds + 1):
                await pub.publish(sid, event(i))
            await pub.publish(sid, FINISH)
            await asyncio.wait_for(asyncio.gather(*tasks), 30)

        for viewer in [*first_two, third, fourth]:
            assert_every_event_once_in_order(viewer, rounds)

        await asyncio.sleep(0.3)
        gets = [r for r in s.nginx.requests() if r["method"] == "GET" and sid in r["uri"]]
        moved = f"{upstream(holder)}, {upstream(other)}"
        assert sorted((r["upstream"], r["upstream_status"]) for r in gets) == sorted(
            [
                (upstream(holder), "200"),
                (upstream(holder), "200"),
                (moved, "503, 200"),
                (upstream(other), "200"),
            ]
        ), gets


async def test_viewers_of_a_killed_front_end_resume_on_one_survivor(tmp_path: Path) -> None:
    before_kill, after_kill = 4, 4
    rounds = before_kill + after_kill
    sids = [f"failover-{n:02d}-{secrets.token_hex(3)}" for n in range(12)]
    with stack(tmp_path, 3) as s:
        tasks: list[asyncio.Task[None]] = []
        viewers: dict[str, list[Viewer]] = {}
        holders: dict[str, Proc] = {}
        async with (
            httpx.AsyncClient(timeout=30) as http,
            Publisher.from_url(s.redis.url) as pub,
            Redis.from_url(s.redis.url) as redis,
        ):
            await create_streams(http, s, sids)
            start = starter(tasks, s.nginx.url, http, max_retries=10)

            for sid in sids:
                url = f"{events_url(s.nginx.url, sid)}?token={token_for(sid)}"
                viewers[sid] = [ClientViewer(sid), WireViewer(sid, url, resume=True)]
                holders[sid] = await open_viewers(
                    http, redis, s.frontends, sid, viewers=viewers[sid], start=start
                )

            for i in range(1, before_kill + 1):
                await pub.publish_many({sid: event(i) for sid in sids})

            async def caught_up() -> bool:
                return all(len(v.seqs()) == before_kill + 1 for vs in viewers.values() for v in vs)

            await poll(caught_up, "every viewer has the first events", 10)

            # The victim: the front-end that holds the most streams.
            victim = max(s.frontends, key=lambda fe: sum(holders[sid] is fe for sid in sids))
            survivors = [fe for fe in s.frontends if fe is not victim]
            cut = [sid for sid in sids if holders[sid] is victim]
            assert cut, holders
            victim.stop(signal.SIGKILL)
            killed_at = time.monotonic()

            # Every viewer is back, on the survivors, and each stream is watched by one
            # front-end again: the victim's streams each moved to one survivor.
            total = sum(len(vs) for vs in viewers.values())

            async def all_back() -> bool:
                now = await loads(http, survivors)
                return sum(v for v, _ in now.values()) == total

            await poll(all_back, f"{total} viewers open on the survivors", 20)
            back_after = time.monotonic() - killed_at
            await watched_by(redis, sids)
            assert sum(st for _, st in (await loads(http, survivors)).values()) == len(sids)

            for i in range(before_kill + 1, rounds + 1):
                await pub.publish_many({sid: event(i) for sid in sids})
            await pub.publish_many(dict.fromkeys(sids, FINISH))
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
        print(
            f"\nkilled {victim.name} holding {len(cut)} of {len(sids)} streams;"
            f" every viewer back on a survivor {back_after:.2f} s later"
        )

        for sid in sids:
            for viewer in viewers[sid]:
                assert_every_event_once_in_order(viewer, rounds)
                if isinstance(viewer, WireViewer):
                    # Cut once (a reconnect with Last-Event-ID) if its front-end died.
                    assert viewer.statuses == [200] * (2 if sid in cut else 1), viewer

        # nginx's log: each resumed request (with Last-Event-ID) of a cut stream was
        # moved off the victim to a survivor, the same one for both of its viewers.
        await asyncio.sleep(0.3)
        requests = s.nginx.requests()
        survivor_addrs = {upstream(fe) for fe in survivors}
        for sid in cut:
            resumed = [r for r in requests if sid in r["uri"] and r["last_event_id"]]
            assert len(resumed) == len(viewers[sid]), (sid, resumed)
            finals = {r["upstream"].split(",")[-1].strip() for r in resumed}
            assert len(finals) == 1 and finals <= survivor_addrs, (sid, resumed)
            assert all(r["status"] == "200" for r in resumed), resumed
