"""Who watches a stream, across front-ends, and what the broadcaster does with it: viewer
counts (``GET /v1/streams/{id}/viewers``), ``data-viewers`` notices for the viewers that
ask (``?presence=1``), the counts of a front-end killed with SIGKILL dropped, and a
generation nobody watches cancelled (``abandon_after_seconds``). Real front-ends, a real
worker and a fake Anthropic API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_sync
from redis.asyncio import Redis

from broadcaster.presence.counts import BATCH, PresenceStore
from tests.support import long_form
from tests.support.fake_anthropic import FakeAnthropicServer, text_reply
from tests.support.polling import poll, wait_for
from tests.support.procs import (
    Proc,
    own_redis,
    parse_sse,
    read_sse,
    start_frontend,
    start_worker,
)
from tests.support.webhooks import Receiver, webhook_env

pytestmark = pytest.mark.anyio

HEARTBEAT = 1.0
FRONTEND_ENV = {"BROADCASTER_PRESENCE_HEARTBEAT_SECONDS": str(HEARTBEAT)}
JOINS = 20
"""Viewers that come and go, one after another, while presence's cost is counted."""


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Proc], str]]:
    logs: Path = tmp_path_factory.mktemp("presence")
    redis = own_redis(logs / "redis")
    procs = []
    try:
        for name in ("a", "b"):
            procs.append(start_frontend(redis.url, logs, f"presence-{name}", FRONTEND_ENV))
        yield procs, redis.url
    finally:
        for p in procs:
            p.stop()
        redis.stop()


async def feed(client: httpx.AsyncClient, url: str) -> str:
    """A job feed that has begun and goes on (no terminal event)."""
    sid = "presence-" + secrets.token_hex(4)
    r = await client.post(f"{url}/v1/streams/{sid}/events", json={"type": "data-start"})
    assert r.status_code == 201, r.text
    return sid


async def count(client: httpx.AsyncClient, url: str, sid: str) -> int:
    r = await client.get(f"{url}/v1/streams/{sid}/viewers")
    assert r.status_code == 200, r.text
    return int(r.json()["viewers"])


@contextlib.asynccontextmanager
async def watching(
    client: httpx.AsyncClient, url: str, sid: str, presence: bool = False
) -> AsyncIterator[bytearray]:
    """An open SSE viewer; what it received so far."""
    got = bytearray()
    opened = asyncio.Event()
    suffix = "?presence=1" if presence else ""

    async def read() -> None:
        async with client.stream("GET", f"{url}/v1/streams/{sid}/events{suffix}") as r:
            assert r.status_code == 200
            opened.set()
            async for chunk in r.aiter_raw():
                got.extend(chunk)

    task = asyncio.create_task(read())
    try:
        await asyncio.wait_for(opened.wait(), 10)
        yield got
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await task


def notices(raw: bytes) -> list[int]:
    events, _, _ = parse_sse(bytes(raw[: raw.rfind(b"\n\n") + 2]))
    return [e.json()["data"]["viewers"] for e in events if e.event == "data-viewers"]


async def test_counts_are_exact_once_churn_stops(two: tuple[list[Proc], str]) -> None:
    """300 viewers join and leave at random on 10 streams over two front-ends; once they
    stop, every stream's count is its open viewers', within a heartbeat."""
    procs, _ = two
    rng = random.Random(7)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        streams = [await feed(client, procs[0].url) for _ in range(10)]
        open_: dict[int, tuple[str, contextlib.AsyncExitStack]] = {}
        joins = leaves = 0
        for _ in range(900):
            n = rng.randrange(300)
            if n in open_:
                sid, stack = open_.pop(n)
                await stack.aclose()
                leaves += 1
            else:
                sid = rng.choice(streams)
                stack = contextlib.AsyncExitStack()
                await stack.enter_async_context(watching(client, rng.choice(procs).url, sid))
                open_[n] = (sid, stack)
                joins += 1
        expected = Counter(sid for sid, _ in open_.values())

        async def exact() -> bool:
            got = [await count(client, procs[i % 2].url, s) for i, s in enumerate(streams)]
            return got == [expected[s] for s in streams]

        started = time.monotonic()
        await poll(exact, "counts after churn", HEARTBEAT + 2, every=0.1)
        took = time.monotonic() - started
        print(
            f"presence churn: {joins} joins, {leaves} leaves, {len(open_)} open on 10 streams;"
            f" counts exact {took:.2f} s after the last change"
        )
        for _, stack in open_.values():
            await stack.aclose()

        async def none() -> bool:
            return all([await count(client, procs[0].url, s) == 0 for s in streams])

        await poll(none, "counts after everyone left", HEARTBEAT + 2, every=0.1)


async def test_only_a_viewer_that_asks_is_told(two: tuple[list[Proc], str]) -> None:
    procs, _ = two
    async with httpx.AsyncClient(timeout=30) as client:
        sid = await feed(client, procs[0].url)
        async with (
            watching(client, procs[0].url, sid, presence=True) as asked,
            watching(client, procs[1].url, sid) as plain,
        ):
            async with watching(client, procs[1].url, sid, presence=True):
                await asyncio.sleep(2.5)  # notices come at most once a second
            await asyncio.sleep(1.5)
            told = notices(bytes(asked))
            assert told and told[-1] == 2, told
            assert 3 in told, told  # the third viewer came and went
            assert notices(bytes(plain)) == []
            assert b"data-viewers" not in plain


@long_form.mark
async def test_a_killed_frontends_viewers_leave_the_counts(tmp_path: Path) -> None:
    """The viewers of a front-end killed with SIGKILL are gone from the counts within two
    heartbeats and a bit (three heartbeats and 2 s at most): a 2 s heartbeat in ``make
    test``, the default (10 s) in ``make test-long``."""
    heartbeat = long_form.budget(2, 10)
    env = {"BROADCASTER_PRESENCE_HEARTBEAT_SECONDS": str(heartbeat)}
    redis = own_redis(tmp_path / "redis")
    a = start_frontend(redis.url, tmp_path, "kill-a", env)
    b = start_frontend(redis.url, tmp_path, "kill-b", env)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            sid = await feed(client, a.url)
            async with (
                watching(client, a.url, sid),
                watching(client, b.url, sid),
                watching(client, b.url, sid),
            ):

                async def three() -> bool:
                    return await count(client, a.url, sid) == 3

                await poll(three, "three viewers", 5, every=0.1)
                b.stop(signal.SIGKILL)
                killed = time.monotonic()

                async def one() -> bool:
                    return await count(client, a.url, sid) == 1

                within = 3 * heartbeat + 2
                await poll(one, "the killed front-end's viewers dropped", within, every=0.1)
                print(
                    f"presence: a SIGKILLed front-end's viewers dropped after "
                    f"{time.monotonic() - killed:.1f} s (heartbeat {heartbeat} s)"
                )
    finally:
        a.stop()
        b.stop()
        redis.stop()


async def test_redis_commands_per_join_and_per_heartbeat(tmp_path: Path) -> None:
    """What presence costs Redis, counted with INFO commandstats: per heartbeat (idle),
    and per join or leave of a viewer (its count's script, and the set of streams this
    front-end counts when the stream's first viewer here comes or its last goes); figures,
    not a limit. Nothing is done per event."""
    redis = own_redis(tmp_path / "redis")
    fe = start_frontend(redis.url, tmp_path, "cost", FRONTEND_ENV)
    admin = redis_sync.Redis.from_url(redis.url)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            sid = await feed(client, fe.url)
            await asyncio.sleep(HEARTBEAT * 2)
            before = _calls(admin)
            await asyncio.sleep(HEARTBEAT * 5)
            idle = _calls(admin) - before
            before = _calls(admin)
            async with watching(client, fe.url, sid):  # a viewer that stays: no set changes
                await asyncio.sleep(0.2)
                mid = _calls(admin)
                for _ in range(JOINS):
                    async with watching(client, fe.url, sid):
                        await asyncio.sleep(0.12)  # one write for the join
                    await asyncio.sleep(0.12)  # and one for the leave
                after = _calls(admin)
            churn = after - mid
        # A heartbeat is one ZADD and one ZRANGE; the front-end's other loops (the chats'
        # queue, expired approvals, their locks) make the rest of what an idle one sends.
        beats = idle["zadd"]
        others = (sum(idle.values()) - 2 * beats) / (HEARTBEAT * 5)
        scripts = churn["evalsha"] / (2 * JOINS)
        sets = (churn["sadd"] + churn["srem"]) / (2 * JOINS)
        print(
            f"presence cost: {beats} heartbeats in {HEARTBEAT * 5:g} s, each 1 ZADD + 1 "
            f"ZRANGE; the front-end's other background commands {others:.1f}/s "
            f"({dict(idle)}); per join or leave {scripts:.2f} script call(s) and "
            f"{sets:.2f} set update(s); the first viewer's join: {dict(mid - before)}"
        )
        assert scripts >= 0.9 and 4 <= beats <= 6
    finally:
        admin.close()
        fe.stop()
        redis.stop()


def _calls(client: redis_sync.Redis) -> Counter[str]:
    """Calls per command, top-level only (``calls`` includes those made by scripts; the
    scripts themselves are counted as ``evalsha``)."""
    stats = client.info("commandstats")
    return Counter(
        {
            k.removeprefix("cmdstat_"): int(v["calls"]) - int(v.get("rejected_calls", 0))
            for k, v in stats.items()
            if k != "cmdstat_info"
        }
    )


# --- abandoned generations ---


@pytest.fixture(scope="module")
def model() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def with_worker(
    model: FakeAnthropicServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Proc, FakeAnthropicServer]]:
    logs: Path = tmp_path_factory.mktemp("abandon")
    redis = own_redis(logs / "redis")
    fe = start_frontend(redis.url, logs, "abandon-frontend", FRONTEND_ENV)
    worker = start_worker(
        redis.url,
        logs,
        "abandon-worker",
        {
            "WORKER_PROVIDER": "anthropic",
            "ANTHROPIC_BASE_URL": model.base_url,
            "ANTHROPIC_API_KEY": "test",
            "WORKER_MERGE_MS": "0",
        },
    )
    try:
        yield fe, model
    finally:
        worker.stop()
        fe.stop()
        redis.stop()


async def _slow_generation(
    client: httpx.AsyncClient, url: str, model: FakeAnthropicServer, seconds: float
) -> tuple[str, str]:
    """A generation whose answer takes ``seconds``, abandoned after 3 s unwatched; its id
    and the marker that finds its request at the fake API."""
    marker = "abandon-" + secrets.token_hex(4)
    model.route(marker, text_reply(["tick "] * int(seconds / 0.2), chunk_delay=0.2))
    r = await client.post(
        f"{url}/v1/generations", json={"prompt": marker, "abandon_after_seconds": 3}
    )
    assert r.status_code == 202, r.text
    return str(r.json()["id"]), marker


async def test_an_unwatched_generation_is_abandoned(
    with_worker: tuple[Proc, FakeAnthropicServer],
) -> None:
    fe, model = with_worker
    async with httpx.AsyncClient(timeout=30) as client:
        started = time.monotonic()
        gid, marker = await _slow_generation(client, fe.url, model, 20)

        async def ended() -> bool:
            status = (await client.get(f"{fe.url}/v1/generations/{gid}")).json()
            return status["status"] != "queued" and status["status"] != "running"

        await poll(ended, "the unwatched generation ended", 15, every=0.1)
        took = time.monotonic() - started
        replay = await read_sse(client, f"{fe.url}/v1/streams/{gid}/events")
        last = replay.typed()[-1]
        assert last.event == "abort" and last.json()["reason"] == "abandoned", last
        assert 3 <= took <= 6.5, took

        # The model call was closed: the fake API saw the client leave mid-answer.
        async def closed() -> bool:
            mine = [e for e in model.exchanges if marker in str(e.body)]
            return bool(mine) and mine[-1].client_closed and not mine[-1].completed

        await poll(closed, "the model call closed", 5, every=0.1)
        print(f"abandoned after {took:.1f} s (abandon_after_seconds 3)")


async def test_a_watched_generation_and_one_watched_again_in_time_complete(
    with_worker: tuple[Proc, FakeAnthropicServer],
) -> None:
    fe, model = with_worker
    async with httpx.AsyncClient(timeout=60) as client:
        watched, _ = await _slow_generation(client, fe.url, model, 6)
        returning, _ = await _slow_generation(client, fe.url, model, 6)
        reader = asyncio.create_task(read_sse(client, f"{fe.url}/v1/streams/{watched}/events"))
        # The second: watched, left for 2 s (less than 3), watched again to its end.
        first = await read_sse(client, f"{fe.url}/v1/streams/{returning}/events", stop_after=3)
        await asyncio.sleep(2)
        rest = await read_sse(
            client,
            f"{fe.url}/v1/streams/{returning}/events",
            last_event_id=str(first.events[-1].id),
        )
        done = await reader
        assert done.typed()[-1].event == "finish", done.typed()[-1]
        assert rest.typed()[-1].event == "finish", rest.typed()[-1]


async def test_occupied_and_vacated_are_webhooks_and_metrics(tmp_path: Path) -> None:
    """The first viewer of a stream (on any front-end) and the last to leave it: one
    ``stream.occupied`` and one ``stream.vacated``, signed like every webhook, once each
    however many front-ends see the viewers come and go."""
    redis = own_redis(tmp_path / "redis")
    with Receiver() as receiver:
        env = {**FRONTEND_ENV, **webhook_env(receiver.url())}
        a = start_frontend(redis.url, tmp_path, "occupy-a", env)
        b = start_frontend(redis.url, tmp_path, "occupy-b", env)
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                sid = await feed(client, a.url)  # created with the deployment's hooks
                async with watching(client, a.url, sid):
                    # The first viewer is counted (a's flush, within 50 ms) before the
                    # others come: else b's flush may see the stream occupied first, by 2.
                    def occupied() -> bool:
                        return any(
                            r.json()["type"] == "stream.occupied" for r in receiver.accepted()
                        )

                    await asyncio.to_thread(wait_for, "stream.occupied delivered", occupied, 15)
                    async with watching(client, b.url, sid), watching(client, b.url, sid):
                        await asyncio.sleep(0.5)
                    await asyncio.sleep(0.5)

                def both() -> bool:
                    types = [r.json()["type"] for r in receiver.accepted()]
                    return types.count("stream.vacated") >= 1

                await asyncio.to_thread(wait_for, "stream.vacated delivered", both, 15)
                await asyncio.sleep(0.5)
                got = [r.json() for r in receiver.accepted()]
                types = [g["type"] for g in got]
                assert types.count("stream.occupied") == 1, types
                assert types.count("stream.vacated") == 1, types
                occupied = next(g for g in got if g["type"] == "stream.occupied")
                assert occupied["data"] == {"id": sid, "viewers": 1}
                vacated = next(g for g in got if g["type"] == "stream.vacated")
                assert vacated["data"] == {"id": sid, "viewers": 0}
                metrics = (await client.get(a.url + "/metrics")).text
                metrics += (await client.get(b.url + "/metrics")).text
                occupied_n = sum(
                    float(line.split()[-1])
                    for line in metrics.splitlines()
                    if line.startswith("broadcaster_streams_occupied_total ")
                )
                assert occupied_n == 1, metrics
        finally:
            a.stop()
            b.stop()
            redis.stop()


async def test_a_dead_frontends_counts_of_many_streams_are_reaped_whole(tmp_path: Path) -> None:
    """A front-end that counted viewers of 1,050 streams (a dashboard's, in rounds of
    ``BATCH``) dies: one reap removes its counts from every stream and leaves the
    living front-end's; each total's change is heard once; a second reap finds nothing."""
    redis = own_redis(tmp_path / "redis")
    client = Redis.from_url(redis.url)
    try:
        store = PresenceStore(client)
        streams = [f"reap-{i}" for i in range(1_050)]
        assert len(streams) > 10 * BATCH
        await store.beat("alive")
        await store.beat("dead")
        await store.track("dead", streams, True)
        for sid in streams:
            await store.set(sid, "dead", 2)
        for sid in streams[::2]:
            await store.set(sid, "alive", 1)
        before = await store.viewers(streams)
        assert [v.count for v in before] == [3 if i % 2 == 0 else 2 for i in range(len(streams))]

        changes: list[tuple[int, int]] = []
        reaped = await store.reap("dead", lambda old, new: changes.append((old, new)))
        assert reaped == len(streams)
        after = await store.viewers(streams)
        assert [v.count for v in after] == [1 if i % 2 == 0 else 0 for i in range(len(streams))]
        assert Counter(changes) == Counter({(3, 1): 525, (2, 0): 525})
        assert await store.reap("dead") == 0
        alive, _ = await store.frontends()
        assert alive == ["alive"]
    finally:
        await client.aclose()
        redis.stop()
