"""Data no append made, on a real front-end (uvicorn on uvloop) and a real Redis: an event
whose type splits its SSE frame, stored through the append script without its check of
types (as a version before that check did, or a hole in the validation would); entries
and messages that another program wrote straight to Redis (an entry without its data, a
frame without its ``data:`` line, junk on a stream's channel, a Durable Streams entry with
a bad size header); runs over 64 KiB, published without their frames, that end in a malformed event.

Meanwhile the readers of a healthy stream, of every kind (the SSE route, ``/v1/events``,
Durable Streams ``live=sse`` and long-poll), get every event once and in order; the
readers of each attacked stream get the documented ``error`` in the malformed event's
place (docs/api/sse.md, "Malformed stored events") and their responses end there; the
front-end's one pub/sub connection is never lost, nothing in the fan-out raises (no
``Fatal error``, no traceback in its log); ``/metrics`` counts what happened; and the
repairer still fills a gap afterwards."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from broadcaster.clients.publisher import Publisher
from broadcaster.core import connection, keys
from broadcaster.core.eventlog import EventLog, script
from broadcaster.core.events import MALFORMED_TEXT
from tests.support.polling import poll
from tests.support.procs import Proc, SSEResult, own_redis, read_sse, start_frontend

pytestmark = pytest.mark.anyio


def unchecked_append_script() -> str:
    """The append script without its check of the events' types and data: what a version
    of it before that check stored, or another program writing the same layout."""
    text = script("append.lua")
    start = text.index("for i = first, #ARGV, 2 do\n  local etype, data")
    end = text.index("local t = redis.call('TIME')")
    assert "INVALID" in text[start:end], "the append script's check moved: update this test"
    return text[:start] + text[end:]


class RawLog(EventLog):
    """Appends with the unchecked append script, without checking the events (``(type,
    data)`` pairs as given): data stored before names were checked whole, or by another
    program; the current script refuses it (test_hostile_names.py)."""

    def __init__(self, redis: Redis, **kwargs: Any) -> None:
        super().__init__(redis, **kwargs)
        self._append = redis.register_script(unchecked_append_script())

    def checked(self, events: Sequence[Any]) -> list[tuple[str, bytes]]:
        return [(t, d) for t, d in events]


def malformed(seq: int) -> dict[str, str]:
    return {"type": "error", "errorText": MALFORMED_TEXT % seq}


def ds_blocks(body: bytes) -> list[tuple[str, Any]]:
    """The events of a Durable Streams ``live=sse`` body: (``data`` or ``control``, its
    parsed JSON)."""
    out = []
    for block in body.split(b"\n\n"):
        if block.startswith(b"event: "):
            name, _, data = block.partition(b"\n")
            out.append((name[7:].decode(), json.loads(data.partition(b"data:")[2])))
    return out


def ds_messages(body: bytes) -> list[Any]:
    return [m for kind, v in ds_blocks(body) if kind == "data" for m in v]


def ds_closed(body: bytes) -> bool:
    controls = [v for kind, v in ds_blocks(body) if kind == "control"]
    return bool(controls) and controls[-1].get("streamClosed") is True


async def ds_sse(client: httpx.AsyncClient, base: str, sid: str) -> bytes:
    """A ``live=sse`` read from the start, to its end."""
    body = b""
    async with client.stream("GET", f"{base}/v1/stream/{sid}?offset=-1&live=sse") as r:
        assert r.status_code == 200, await r.aread()
        async for chunk in r.aiter_bytes():
            body += chunk
    return body


async def ds_long_polls(client: httpx.AsyncClient, base: str, sid: str) -> list[Any]:
    """Long-polls from the start until one says ``Stream-Closed``: every message."""
    offset, messages = "-1", []
    while True:
        r = await client.get(f"{base}/v1/stream/{sid}?offset={offset}&live=long-poll")
        assert r.status_code in (200, 204), r.text
        if r.status_code == 200:
            messages += r.json()
        offset = r.headers["stream-next-offset"]
        if r.headers.get("stream-closed") == "true":
            return messages


async def sse_route(client: httpx.AsyncClient, base: str, sid: str) -> SSEResult:
    return await read_sse(client, f"{base}/v1/streams/{sid}/events")


async def dashboard(client: httpx.AsyncClient, base: str, sids: list[str]) -> SSEResult:
    query = "&".join(f"stream={s}" for s in sids)
    return await read_sse(client, f"{base}/v1/events?{query}")


def typed(result: SSEResult) -> list[tuple[int, str, Any]]:
    """(seq, type, data) of each event of a single stream's SSE response."""
    out = []
    for e in result.events:
        if e.id is not None:
            out.append((int(e.id.split(".")[0]), e.event or "", e.json()))
    return out


@pytest.fixture
async def frontend(tmp_path: Path) -> AsyncIterator[tuple[Proc, Redis, RawLog]]:
    redis_server = own_redis(tmp_path / "redis")
    proc = start_frontend(redis_server.url, tmp_path, "frontend")
    redis = connection.command_client(redis_server.url)
    try:
        yield proc, redis, RawLog(redis)
    finally:
        proc.stop()
        await redis.aclose()
        redis_server.stop()


async def viewers_at_least(base: str, n: int) -> None:
    async def enough() -> bool:
        async with httpx.AsyncClient() as c:
            return int((await c.get(f"{base}/readyz")).json()["viewers"]) >= n

    await poll(enough, f"{n} viewers subscribed", 10)


async def keep_publishing(pub: Publisher, sid: str, stop: asyncio.Event) -> int:
    """Events to the healthy stream every 20 ms until ``stop``, then its ``finish``."""
    i = 1  # its first event is there already
    while not stop.is_set():
        i += 1
        await pub.publish(sid, {"type": "data-n", "data": {"i": i}})
        await asyncio.sleep(0.02)
    await pub.publish(sid, {"type": "finish"})
    return i + 1


def assert_contained(proc: Proc) -> None:
    text = proc.log()
    for sign in ("Fatal error", "connection lost", "Traceback", "Exception in"):
        assert sign not in text, f"{sign!r} in the front-end's log:\n{text[-4000:]}"


async def metric(base: str, name: str) -> float:
    async with httpx.AsyncClient() as c:
        text = (await c.get(f"{base}/metrics")).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


async def test_malformed_events_reach_only_their_own_streams_readers(
    frontend: tuple[Proc, Redis, RawLog],
) -> None:
    proc, redis, raw = frontend
    base = proc.url
    tag = secrets.token_hex(3)
    healthy, split, no_data, junk = (f"{n}-{tag}" for n in ("healthy", "split", "nodata", "junk"))
    pub = Publisher(redis)
    for sid in (healthy, split, no_data, junk):
        await pub.publish(sid, {"type": "data-n", "data": {"i": 1}})
    async with httpx.AsyncClient(timeout=httpx.Timeout(60)) as client:
        readers = {
            "healthy-sse": sse_route(client, base, healthy),
            "healthy-ds-sse": ds_sse(client, base, healthy),
            "healthy-long-poll": ds_long_polls(client, base, healthy),
            "dashboard": dashboard(client, base, [healthy, split, no_data]),
            "split-sse": sse_route(client, base, split),
            "split-ds-sse": ds_sse(client, base, split),
            "split-long-poll": ds_long_polls(client, base, split),
            "nodata-sse": sse_route(client, base, no_data),
            "junk-sse": sse_route(client, base, junk),
        }
        tasks = {name: asyncio.ensure_future(r) for name, r in readers.items()}
        await viewers_at_least(base, 9)  # 6 SSE-like responses; the dashboard is 3
        stop = asyncio.Event()
        publishing = asyncio.ensure_future(keep_publishing(pub, healthy, stop))
        await asyncio.sleep(0.3)

        # A type with a line break, through the append script: its frame is split.
        await raw.append(split, [("x\n", b'{"type":"x\\n"}')], kind="feed")
        # An entry without its data and a frame without its data line, written as
        # another program would, past the append script.
        await redis.xadd(keys.log_key(no_data), {"t": "data-n", "h": "0badc0de"}, id="2-0")
        await redis.hset(keys.meta_key(no_data), mapping={"seq": 2, "tag": "0badc0de"})
        frame = b"2 2 0badc0de -\nid: 2.0badc0de\nevent: data-n\n\n"
        await redis.publish(raw.channel(no_data), frame)
        # Junk on a channel, announcing an event the log does not hold: nothing comes of it.
        await redis.publish(raw.channel(junk), b"2 2 deadbeef -\nid: 2.deadbeef\nnot a frame\n")
        await asyncio.sleep(0.5)
        await pub.publish(junk, {"type": "data-n", "data": {"i": 2}})
        await pub.publish(junk, {"type": "finish"})
        await asyncio.sleep(0.5)
        stop.set()
        last = await publishing
        done = dict(zip(tasks, await asyncio.gather(*tasks.values()), strict=True))
        # Late readers read the history: the same error, from the log.
        late_sse = await sse_route(client, base, split)
        late_dashboard = await dashboard(client, base, [no_data])
        catch_up = await client.get(f"{base}/v1/stream/{split}?offset=-1")

    every = list(range(1, last + 1))
    assert [seq for seq, _, _ in typed(done["healthy-sse"])] == every
    assert done["healthy-sse"].done
    assert [m.get("type") for m in ds_messages(done["healthy-ds-sse"])][-1] == "finish"
    assert [m["data"]["i"] for m in ds_messages(done["healthy-ds-sse"])[:-1]] == every[:-1]
    assert [m["data"]["i"] for m in done["healthy-long-poll"][:-1]] == every[:-1]
    assert done["healthy-long-poll"][-1] == {"type": "finish"}

    # Each attacked stream: its first event, then the error in the malformed one's place.
    for name in ("split-sse", "nodata-sse"):
        seqs = typed(done[name])
        assert seqs[0][:2] == (1, "data-n"), (name, seqs)
        assert seqs[1:] == [(2, "error", malformed(2))], (name, seqs)
        assert done[name].done, "ended there, as at any terminal event"
    for body in (done["split-ds-sse"],):
        assert ds_messages(body)[1:] == [malformed(2)] and ds_closed(body)
    assert done["split-long-poll"][1:] == [malformed(2)]
    assert [seq for seq, _, _ in typed(done["junk-sse"])] == [1, 2, 3]

    # The dashboard: the healthy stream whole, each attacked one up to its error.
    frames = [e.json() for e in done["dashboard"].events if e.id is not None]
    by_stream: dict[str, list[Any]] = {}
    for f in frames:
        by_stream.setdefault(f["stream"], []).append((f["seq"], f["event"]))
    assert [seq for seq, _ in by_stream[healthy]] == every
    for sid in (split, no_data):
        assert by_stream[sid][1:] == [(2, malformed(2))], by_stream[sid]

    assert typed(late_sse)[1:] == [(2, "error", malformed(2))] and late_sse.done
    late = [e.json()["event"] for e in late_dashboard.events if e.id is not None]
    assert late[1:] == [malformed(2)]
    assert catch_up.json()[1:] == [malformed(2)]
    assert catch_up.headers.get("stream-closed") == "true"

    assert_contained(proc)
    assert await metric(base, 'broadcaster_delivery_errors_total{reason="message"}') >= 3
    assert await metric(base, 'broadcaster_malformed_entries_total{read="events"}') >= 2
    assert await metric(base, 'broadcaster_malformed_entries_total{read="durable"}') >= 1


async def test_a_durable_stream_entry_no_append_made(
    frontend: tuple[Proc, Redis, RawLog],
) -> None:
    proc, redis, raw = frontend
    base = proc.url
    ds, healthy = f"ds-{secrets.token_hex(3)}", f"dsok-{secrets.token_hex(3)}"
    async with httpx.AsyncClient(timeout=httpx.Timeout(60)) as client:
        for name in (ds, healthy):
            headers = {"content-type": "application/json"}
            r = await client.put(f"{base}/v1/stream/{name}", headers=headers)
            assert r.status_code == 201, r.text
            r = await client.post(f"{base}/v1/stream/{name}", json=[{"n": 1}], headers=headers)
            assert r.status_code in (200, 204), r.text
        tasks = [
            asyncio.ensure_future(ds_sse(client, base, ds)),
            asyncio.ensure_future(ds_long_polls(client, base, ds)),
            asyncio.ensure_future(ds_sse(client, base, healthy)),
        ]
        await viewers_at_least(base, 2)
        await asyncio.sleep(0.2)
        channel = raw.channel(ds)
        # A bad size header on the channel, for an entry the log does not hold: ignored.
        await redis.publish(channel, b"2 2 deadbeef -\ndeadbeef 99x\n{}")
        await asyncio.sleep(0.3)
        # Then an entry without its type, and a message whose size header is wrong.
        log_key, meta_key = keys.ds_keys(ds)[:2]
        await redis.xadd(log_key, {"d": b'{"n":2}', "h": "0badc0de"}, id="2-0")
        await redis.hset(
            meta_key, mapping={"seq": 2, "tag": "0badc0de", "dseq": 2, "dtag": "0badc0de"}
        )
        await redis.publish(channel, b'2 2 0badc0de -\n0badc0de 99\n{"n":2}')
        await asyncio.sleep(0.3)
        headers = {"content-type": "application/json", "stream-closed": "true"}
        r = await client.post(f"{base}/v1/stream/{healthy}", json=[{"n": 2}], headers=headers)
        assert r.status_code in (200, 204), r.text
        sse_body, polled, healthy_body = await asyncio.gather(*tasks)
        catch_up = await client.get(f"{base}/v1/stream/{ds}?offset=-1")
    assert ds_messages(sse_body) == [{"n": 1}, malformed(2)] and ds_closed(sse_body)
    assert polled == [{"n": 1}, malformed(2)]
    assert catch_up.json() == [{"n": 1}, malformed(2)]
    assert catch_up.headers.get("stream-closed") == "true"
    assert ds_messages(healthy_body) == [{"n": 1}, {"n": 2}] and ds_closed(healthy_body)
    assert_contained(proc)
    assert await metric(base, 'broadcaster_delivery_errors_total{reason="message"}') >= 2


async def test_the_repairer_outlives_runs_too_large_to_push_that_end_malformed(
    frontend: tuple[Proc, Redis, RawLog],
) -> None:
    """More such runs than the repairer has workers (4), each with a Durable Streams
    reader (whose parse raised in the fill loop before): a later gap is still filled."""
    proc, redis, raw = frontend
    base = proc.url
    tag = secrets.token_hex(3)
    big = json.dumps({"type": "data-big", "data": {"pad": "x" * 30000}}).encode()
    victims = [f"big-{i}-{tag}" for i in range(6)]
    later = f"later-{tag}"
    pub = Publisher(redis)
    for sid in (*victims, later):
        await pub.publish(sid, {"type": "data-n", "data": {"i": 1}})
    async with httpx.AsyncClient(timeout=httpx.Timeout(60)) as client:
        sse = {sid: asyncio.ensure_future(sse_route(client, base, sid)) for sid in victims}
        ds = {sid: asyncio.ensure_future(ds_sse(client, base, sid)) for sid in victims}
        after = asyncio.ensure_future(sse_route(client, base, later))
        await viewers_at_least(base, 2 * len(victims) + 1)
        for sid in victims:  # > 64 KiB: published without frames, read by the repairer
            await raw.append(sid, [("data-big", big)] * 3 + [("x\n", b"{}")], kind="feed")
        await asyncio.sleep(0.5)
        batch = [{"type": "data-big", "data": {"pad": "y" * 30000}}] * 3
        await pub.publish(later, [*batch, {"type": "finish"}])  # a gap only the log fills
        got = await asyncio.wait_for(after, 20)
        results = await asyncio.gather(*sse.values(), *ds.values())
    assert [seq for seq, _, _ in typed(got)] == [1, 2, 3, 4, 5] and got.done
    for result in results[: len(victims)]:
        assert isinstance(result, SSEResult)
        events = typed(result)
        assert [seq for seq, _, _ in events] == [1, 2, 3, 4, 5]
        assert events[-1] == (5, "error", malformed(5)) and result.done
    for body in results[len(victims) :]:
        assert isinstance(body, bytes)
        assert ds_messages(body)[-1] == malformed(5) and ds_closed(body)
    assert_contained(proc)
