"""End to end on real processes: a Redis server, two front-ends (uvicorn on 127.0.0.1)
and a worker with the fake provider. Viewers are real HTTP clients reading SSE."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest

from broadcaster.core import connection, keys
from broadcaster.core.eventlog import EventLog
from tests.support.procs import Deployment, SSEResult, read_sse

pytestmark = pytest.mark.anyio


def strip_comments(raw: bytes) -> bytes:
    """The events of an SSE body: without comments, nor the ``retry:`` hint (jittered per
    connection, so that reconnecting viewers spread out)."""
    return b"".join(
        block + b"\n\n"
        for block in raw.split(b"\n\n")
        if block and not block.startswith((b":", b"retry: "))
    )


async def run_generation(client: httpx.AsyncClient, base: str, prompt: str) -> str:
    r = await client.post(base + "/v1/generations", json={"prompt": prompt, "max_tokens": 30})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued"
    assert body["events_url"] == f"/v1/streams/{body['id']}/events"
    assert body["status_url"] == f"/v1/generations/{body['id']}"
    return str(body["id"])


def assert_complete(result: SSEResult) -> None:
    """seq 1..N with no gap or repeat, a terminal event, then [DONE]."""
    assert result.status == 200
    ids = result.ids
    assert ids == list(range(1, len(ids) + 1))
    typed = result.typed()
    assert typed[-1].event in ("finish", "error", "abort")
    assert result.done
    for e in typed:
        assert e.json()["type"] == e.event


async def test_viewers_on_two_frontends_receive_identical_bytes(deployment: Deployment) -> None:
    a, b = deployment.frontends
    async with httpx.AsyncClient(timeout=30) as client:
        gid = await run_generation(client, a.url, "many people watch one generation")
        url = f"/v1/streams/{gid}/events"
        results = await asyncio.gather(
            *(read_sse(client, fe.url + url) for fe in (a, b, a, b, a, b))
        )
        for r in results:
            assert_complete(r)
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["cache-control"].startswith("no-cache")
            assert r.headers["x-accel-buffering"] == "no"
            assert r.headers["x-vercel-ai-ui-message-stream"] == "v1"
            assert r.raw.startswith(b"retry: ")
            retry = int(r.raw.split(b"\n", 1)[0].removeprefix(b"retry: "))
            assert 500 <= retry <= 1500, retry  # RETRY_MS plus up to RETRY_JITTER_MS
        reference = strip_comments(results[0].raw)
        assert all(strip_comments(r.raw) == reference for r in results)
        typed = results[0].typed()
        assert typed[0].json() == {"type": "start", "messageId": gid}
        assert typed[-1].json()["finishReason"] == "stop"
        text = "".join(e.json()["delta"] for e in typed if e.event == "text-delta")
        status = (await client.get(a.url + f"/v1/generations/{gid}")).json()
        assert status["status"] == "completed"
        assert status["text"] == text
        assert status["last_event_id"] == results[0].ids[-1]
        assert status["usage"]["output_tokens"] > 0


async def test_resume_from_every_point(deployment: Deployment) -> None:
    a, b = deployment.frontends
    async with httpx.AsyncClient(timeout=30) as client:
        gid = await run_generation(client, b.url, "resume me")
        url = f"/v1/streams/{gid}/events"
        live = await read_sse(client, a.url + url)
        assert_complete(live)
        n = live.ids[-1]
        late = await read_sse(client, b.url + url)  # a late joiner after the end
        assert strip_comments(late.raw) == strip_comments(live.raw)
        by_id = {int(e.id.split(".")[0]): e for e in live.events if e.id}
        for k in range(n):
            fe = (a, b)[k % 2]
            if k % 3 == 0:  # the query parameter, as a new EventSource would send it
                r = await read_sse(client, fe.url + url + f"?last_event_id={k}")
            else:
                r = await read_sse(client, fe.url + url, last_event_id=str(k))
            assert r.ids == list(range(k + 1, n + 1)), f"resume from {k}"
            assert [e.data for e in r.typed()] == [by_id[i].data for i in range(k + 1, n + 1)]
            assert r.done
        # an id with a suffix, as a later version may issue: the seq before the '.'
        r = await read_sse(client, a.url + url, last_event_id=f"{n - 2}.abc")
        assert r.ids == [n - 1, n]
        # the header wins over the query parameter
        r = await read_sse(client, a.url + url + "?last_event_id=0", last_event_id=str(n - 1))
        assert r.ids == [n]
        r = await read_sse(client, a.url + url, last_event_id=str(n))
        assert r.status == 204 and r.raw == b""
        r = await read_sse(client, a.url + url, last_event_id=str(n + 1))
        assert r.status == 409
        assert r.headers["content-type"] == "application/json"
        for bad in ("abc", "-1", "1.2.3", "1e3", "1 2", "01", "99999999999999999999999"):
            r = await read_sse(client, a.url + url, last_event_id=bad)
            assert r.status == 400, bad
        r = await read_sse(client, a.url + "/v1/streams/no-such-stream/events")
        assert r.status == 404


async def test_invalid_stream_ids_never_reach_redis(deployment: Deployment) -> None:
    a = deployment.frontends[0]
    async with httpx.AsyncClient(timeout=10) as client:
        for bad in ("a*", "%7Bx%7D", "a:b", "x" * 65, "a%20b", "%C3%A9"):
            r = await client.get(a.url + f"/v1/streams/{bad}/events")
            assert r.status_code in (404, 422), bad
            assert "message" in r.json()
            r = await client.post(a.url + f"/v1/streams/{bad}/events", json={"type": "x"})
            assert r.status_code in (404, 422), bad


async def test_events_appended_during_replay_arrive_once_in_order(
    deployment: Deployment,
) -> None:
    """The replay/live seam: a long stream is replayed (in pages) while a producer keeps
    appending; each viewer must get every seq exactly once."""
    a, b = deployment.frontends
    sid = "race-" + secrets.token_hex(4)
    redis = connection.command_client(deployment.redis_url)
    event_log = EventLog(redis)
    for start in range(0, 20_000, 1000):
        await event_log.append(
            sid, [{"type": "data-n", "i": i} for i in range(start, start + 1000)], kind="feed"
        )

    async def produce() -> None:
        for i in range(20_000, 21_000):
            await event_log.append(sid, [{"type": "data-n", "i": i}], kind="feed")
            if i % 50 == 0:
                await asyncio.sleep(0.001)
        await event_log.append(sid, [{"type": "finish"}], kind="feed")

    async def view(delay: float, fe_url: str) -> SSEResult:
        await asyncio.sleep(delay)
        async with httpx.AsyncClient(timeout=60) as client:
            return await read_sse(client, fe_url + f"/v1/streams/{sid}/events")

    try:
        producer = asyncio.create_task(produce())
        viewers = [view(i * 0.02, (a, b)[i % 2].url) for i in range(8)]
        results = await asyncio.gather(*viewers)
        await producer
    finally:
        await redis.aclose()
    for r in results:
        assert r.ids == list(range(1, 21_002))
        assert [e.json()["i"] for e in r.typed()[:-1]] == list(range(21_000))
        assert r.done


async def test_two_producers_over_http_get_contiguous_seqs(deployment: Deployment) -> None:
    a, b = deployment.frontends
    sid = "progress-" + secrets.token_hex(4)
    url = f"/v1/streams/{sid}/events"
    async with httpx.AsyncClient(timeout=30) as client:

        async def produce(name: str, base: str) -> list[int]:
            seqs = []
            for i in range(60):
                if i % 10 == 0:
                    batch = [{"type": "data-progress", "p": name, "i": i + j} for j in range(3)]
                    r = await client.post(base + url, json=batch)
                else:
                    r = await client.post(base + url, json={"type": "data-progress", "p": name})
                assert r.status_code == 201, r.text
                seqs.append(r.json()["last_event_id"])
            return seqs

        s1, s2 = await asyncio.gather(produce("one", a.url), produce("two", b.url))
        assert len(set(s1) | set(s2)) == 120
        r = await client.post(a.url + url, json={"type": "finish"})
        # 2 producers x (54 single events + 6 batches of 3) = 144, then the terminal event
        assert r.json() == {"last_event_id": 145}
        result = await read_sse(client, b.url + url)
        assert result.ids == list(range(1, 146))
        # a batch is atomic: its three events are adjacent
        for name in ("one", "two"):
            idx = [k for k, e in enumerate(result.typed()) if e.json().get("p") == name]
            for k in idx:
                e = result.typed()[k].json()
                if "i" in e and e["i"] % 10 == 0:
                    nxt = [result.typed()[k + j].json() for j in range(3)]
                    assert [x["i"] for x in nxt] == [e["i"], e["i"] + 1, e["i"] + 2]
        # after the terminal event nothing more is accepted
        r = await client.post(a.url + url, json={"type": "data-progress"})
        assert r.status_code == 409
        # a conditional publish from a stale producer is refused
        sid2 = "cond-" + secrets.token_hex(4)
        r = await client.post(a.url + f"/v1/streams/{sid2}/events", json={"type": "a"})
        ok = await client.post(
            a.url + f"/v1/streams/{sid2}/events?expected_last_event_id=1", json={"type": "b"}
        )
        assert ok.status_code == 201 and ok.json() == {"last_event_id": 2}
        stale = await client.post(
            b.url + f"/v1/streams/{sid2}/events?expected_last_event_id=1", json={"type": "c"}
        )
        assert stale.status_code == 409 and stale.json()["last_event_id"] == 2


async def test_publish_and_generation_errors(deployment: Deployment) -> None:
    a = deployment.frontends[0]
    async with httpx.AsyncClient(timeout=10) as client:
        sid = "errs-" + secrets.token_hex(4)
        url = a.url + f"/v1/streams/{sid}/events"
        cases = [
            (b"{", 422),
            (b"\xff\xfe{}", 422),
            (b"[]", 422),
            (b'{"type": "Bad Type"}', 422),
            (b'{"no_type": 1}', 422),
            (b"[" * 100_000 + b"]" * 100_000, 422),  # deep nesting: refused, not a crash
            (b"[" * 5000 + b"]" * 5000, 422),
            (b'"just a string"', 422),
            (b"", 422),
        ]
        for body, status in cases:
            r = await client.post(url, content=body, headers={"content-type": "application/json"})
            assert r.status_code == status, (body[:20], r.text)
            assert r.json()["message"]
        huge = {"type": "data-x", "blob": "x" * (2 * 1024 * 1024)}
        r = await client.post(url, json=huge)
        assert r.status_code == 413
        r = await client.get(a.url + "/readyz")
        assert r.status_code == 200, "bad input leaves the server running"

        gen = a.url + "/v1/generations"
        for body in (
            {},
            {"prompt": ""},
            {"prompt": "x", "messages": [{"role": "user", "content": "y"}]},
            {"messages": []},
            {"messages": [{"role": "robot", "content": "y"}]},
            {"prompt": "x", "max_tokens": 0},
            {"prompt": "x", "max_tokens": 10**9},
            {"prompt": "x", "id": "a:b"},
            {"prompt": "x", "unknown": 1},
            {"prompt": "x", "metadata": "not an object"},
        ):
            r = await client.post(gen, json=body)
            assert r.status_code == 422, (body, r.text)
        gid = "mine-" + secrets.token_hex(4)
        r = await client.post(gen, json={"prompt": "x", "id": gid, "metadata": {"k": 1}})
        assert r.status_code == 202 and r.json()["id"] == gid
        r = await client.post(gen, json={"prompt": "x", "id": gid})
        assert r.status_code == 409
        r = await client.post(a.url + f"/v1/streams/{gid}/events", json={"type": "x"})
        assert r.status_code == 409, "only its worker appends to a generation"
        assert (await client.get(a.url + "/v1/generations/nope")).status_code == 404
        assert (await client.post(a.url + "/v1/generations/nope/cancel")).status_code == 404
        assert (await client.get(a.url + f"/v1/generations/{sid}")).status_code == 404
        # wait for the generation to end, then cancelling it is a conflict
        await read_sse(client, a.url + f"/v1/streams/{gid}/events")
        r = await client.post(a.url + f"/v1/generations/{gid}/cancel")
        assert r.status_code == 409


async def test_server_made_ids_are_url_safe_and_random(deployment: Deployment) -> None:
    a = deployment.frontends[0]
    async with httpx.AsyncClient(timeout=10) as client:
        ids = set()
        for _ in range(5):
            r = await client.post(a.url + "/v1/generations", json={"prompt": "id"})
            ids.add(r.json()["id"])
    assert len(ids) == 5
    for i in ids:
        assert len(i) >= 16  # 22 chars of base64url: 128 bits
        assert all(c.isalnum() or c in "-_" for c in i)


async def test_a_resume_point_from_a_lost_history_is_refused_not_spliced(
    deployment: Deployment,
) -> None:
    """Redis lost a feed's newest events and its producer went on publishing other ones
    at the same seqs. A viewer that saw the lost events must be told (409), never shown
    the new events as if they followed what it saw."""
    a, b = deployment.frontends
    sid = "lost-" + secrets.token_hex(4)
    url = f"/v1/streams/{sid}/events"
    async with httpx.AsyncClient(timeout=30) as client:
        for i in range(5):
            r = await client.post(a.url + url, json={"type": "data-n", "i": i})
            assert r.status_code == 201, r.text
        seen = await read_sse(client, a.url + url, stop_after=5)
        ids = [e.id for e in seen.events if e.id]
        assert len(ids) == 5 and all(i and "." in i for i in ids)
        # What a Redis that came back without its last two writes holds: the log and the
        # metadata as they were after event 3 (the script writes both in one step).
        redis = connection.command_client(deployment.redis_url)
        try:
            event_log = EventLog(redis)
            third = (await event_log.read_page(sid, 2, 1))[0]
            await redis.xdel(keys.log_key(sid), "4-0", "5-0")
            await redis.execute_command("XSETID", keys.log_key(sid), "3-0")
            await redis.hset(keys.meta_key(sid), mapping={"seq": 3, "tag": third.tag})
        finally:
            await redis.aclose()
        for i in range(3):  # the producer goes on: other events take seqs 4, 5, 6
            r = await client.post(a.url + url, json={"type": "data-m", "i": i})
            assert r.status_code == 201, r.text

        lost = await read_sse(client, b.url + url, last_event_id=ids[4])
        assert lost.status == 409, lost.raw
        assert lost.raw and b"resume_point_unknown" in lost.raw
        # A resume point before the loss still holds: the rest follows it, no splice.
        kept = await read_sse(client, b.url + url, last_event_id=ids[2], stop_after=3)
        assert kept.ids == [4, 5, 6]
        assert [e.json()["type"] for e in kept.typed()] == ["data-m"] * 3
        assert kept.typed()[0].id != ids[3], "a new history has new tags"
        # Tags are deterministic: the same events give the same ids on every front-end.
        again = await read_sse(client, a.url + url, stop_after=3)
        assert [e.id for e in again.events if e.id][:3] == ids[:3]


RESTART = [
    {"type": "start"},
    {"type": "start-step"},
    {"type": "text-start", "id": "t"},
    {"type": "text-delta", "id": "t", "delta": "cut "},
    {"type": "data-continued", "data": {"mode": "restart"}, "transient": True},
    {"type": "text-end", "id": "t"},
    {"type": "finish-step"},
    {"type": "start-step", "reset": True},
    {"type": "text-start", "id": "a2-t"},
    {"type": "text-delta", "id": "a2-t", "delta": "whole"},
    {"type": "text-end", "id": "a2-t"},
    {"type": "finish-step"},
    {"type": "finish"},
]


async def test_a_reader_that_asks_for_reset_step_gets_it_in_place_of_the_marked_step(
    deployment: Deployment,
) -> None:
    """``?reset_step=1`` or ``X-Reset-Step: 1`` (chat/reset_step.py): a restarted step's
    ``start-step`` (``reset: true``) arrives as ``reset-step``, same id, live (several
    such readers on a front-end share one view) and late, on either front-end; a reader
    that did not ask gets the stream as stored, byte for byte."""
    a, b = deployment.frontends
    sid = "reset-" + secrets.token_hex(4)
    url = f"/v1/streams/{sid}/events"
    asking = {"x-reset-step": "1"}
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(a.url + url, json=RESTART[:4])  # the stream exists
        assert r.status_code == 201, r.text
        live = [
            asyncio.create_task(read_sse(client, a.url + url, headers=asking)),
            asyncio.create_task(read_sse(client, a.url + url, headers=asking)),
            asyncio.create_task(read_sse(client, b.url + url + "?reset_step=1")),
            asyncio.create_task(read_sse(client, a.url + url)),
        ]
        # Not a measure: the readers most likely connect before the rest is published
        # (live); connected later they replay it, and must get the same.
        await asyncio.sleep(0.5)
        for event in RESTART[4:]:
            assert (await client.post(b.url + url, json=event)).status_code == 201
        results = await asyncio.gather(*live)
        late = await asyncio.gather(
            read_sse(client, a.url + url, headers=asking),
            read_sse(client, b.url + url + "?reset_step=1"),
            read_sse(client, b.url + url),
        )
    asked = [*results[:3], *late[:2]]
    plain = late[2]
    for got in (plain, results[3]):
        assert [e.json() for e in got.typed()] == RESTART
    for got in asked:
        assert got.ids == plain.ids
        expected = [{"type": "reset-step"} if e.get("reset") else e for e in RESTART]
        assert [e.json() for e in got.typed()] == expected
        assert [e.event for e in got.typed()][7] == "reset-step"
