"""Fault scenarios on real processes (docs/reliability.md): every viewer ends with every event of
its stream exactly once, in order, or is told clearly that it cannot.

Each scenario runs a ``Cluster`` (one Redis, two front-ends, two workers, all separate
processes on 127.0.0.1) with viewers that reconnect as EventSource does, and checks every
viewer's received sequence against the stream itself (``tests/support/faults.py``). The
figures each prints go into docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis as redis_sync

from broadcaster.clients.publisher import Publisher
from tests.support.fake_anthropic import FakeAnthropicServer, stall, text_reply
from tests.support.faults import (
    FAST_WORKER_ENV,
    Cluster,
    Received,
    Verdict,
    Viewer,
    create_generation,
    owned_by,
    owner_pid,
    poll,
    readyz,
    reply_types,
    report,
    stored_events,
    stream_meta,
    verdict,
    wait_status,
)
from tests.support.polling import until
from tests.support.procs import Proc

pytestmark = pytest.mark.anyio

SLOW_FAKE = {"WORKER_FAKE_DELAY_MS": "40", "WORKER_MERGE_MS": "0"}
"""About 70 events over 3 s per generation: long enough to fault it mid-stream."""


async def test_a_frontend_killed_mid_stream(tmp_path: Path) -> None:
    with Cluster(tmp_path, worker_env=SLOW_FAKE) as cluster:
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as client:
            a, b = cluster.frontends
            gids = [await create_generation(client, a.url, f"kill front-end {i}") for i in range(4)]
            viewers = [
                Viewer([fe.url, other.url], gid)
                for gid in gids
                for fe, other in ((a, b), (b, a))
                for _ in range(5)
            ]
            with anyio.fail_after(90):
                async with anyio.create_task_group() as tg:
                    for v in viewers:
                        tg.start_soon(v.run, client)
                    await asyncio.sleep(1.0)
                    killed_at = time.monotonic()
                    a.stop(signal.SIGKILL)
            with cluster.client() as r:
                verdicts = [verdict(v, stored_events(r, v.stream_id)) for v in viewers]
    moved = [v for v in viewers if v.reconnect_gaps]
    worst = max((max(v.reconnect_gaps) for v in moved), default=0.0)
    report(
        "frontend kill -9",
        verdicts,
        viewers_moved=len(moved),
        worst_resume_s=f"{worst:.2f}",
        since_kill_s=f"{time.monotonic() - killed_at:.1f}",
    )
    assert len(moved) >= 10, "the killed front-end's viewers should have reconnected"
    for v in verdicts:
        assert v.outcome == "done" and v.exact, v


# --- 2. a worker killed mid-generation ---------------------------------------------------


def model_env(model: FakeAnthropicServer) -> dict[str, str]:
    """Workers calling the local stand-in for Anthropic (scripted per request)."""
    return {
        "WORKER_PROVIDER": "anthropic",
        "ANTHROPIC_BASE_URL": model.base_url,
        "ANTHROPIC_API_KEY": "test",
    }


def types_of(events: list[Received]) -> list[str]:
    return [e.type for e in events]


def one_reply(types: list[str]) -> bool:
    """Exactly one model reply with one text block, start to finish, nothing else."""
    n = types.count("text-delta")
    return n > 0 and types == reply_types(n)


def continued_reply(types: list[str]) -> bool:
    """One model reply with one text block, cut off after some of its text and continued
    in the same block by another worker (one ``data-continued`` notice in it)."""
    if types.count("data-continued") != 1:
        return False
    k = types.index("data-continued")
    return "text-delta" in types[:k] and one_reply(types[:k] + types[k + 1 :])


async def run_viewers(client: httpx.AsyncClient, viewers: list[Viewer], seconds: float) -> None:
    with anyio.fail_after(seconds):
        async with anyio.create_task_group() as tg:
            for v in viewers:
                tg.start_soon(v.run, client)


async def test_a_worker_killed_mid_generation(tmp_path: Path) -> None:
    """kill -9 a worker holding two generations: one before its first output (it simply
    runs again), one after (``data-continued``, then the rest of the answer in the same
    text part). Another worker takes both over within the lease plus one sweep; every
    viewer ends with every event exactly once."""
    with FakeAnthropicServer() as model, Cluster(tmp_path, workers_n=0) as cluster:
        cluster.worker_env = {**model_env(model), "WORKER_MERGE_MS": "0"}
        victim = cluster.add_worker()
        fe = cluster.frontends[0].url
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as client:
            model.enqueue([stall()])  # the model never answers: killed before any output
            before = await create_generation(client, fe, "killed before output")
            assert await asyncio.to_thread(model.wait_requests, 1, 10)
            # Output, then the model goes silent: the kill, however late, is mid-generation.
            shown = [f"old{i} " for i in range(20)]
            model.enqueue([*text_reply(shown)[: 2 + len(shown)], stall()])
            after = await create_generation(client, fe, "killed after output")
            assert await asyncio.to_thread(model.wait_requests, 2, 10)
            model.set_default(text_reply([f"new{i} " for i in range(40)], chunk_delay=0.01))
            rescuer = cluster.add_worker()
            viewers = [Viewer(cluster.urls, g) for g in (before, after) for _ in range(5)]
            r = cluster.client()
            takeover: dict[str, float] = {}
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_viewers, client, viewers, 60)
                # All the model said is stored first (else the new attempt rightly goes
                # on from what was stored, and the text below differs).
                await poll(lambda: _has_text(r, after, "".join(shown)), "output, then the kill")
                killed_at = time.monotonic()
                victim.stop(signal.SIGKILL)
                for gid in (before, after):
                    await until(lambda g=gid: owned_by(r, g, rescuer), "the takeover", 30)
                    takeover[gid] = time.monotonic() - killed_at
            stored = {g: stored_events(r, g) for g in (before, after)}
            metas = {g: stream_meta(r, g) for g in (before, after)}
            r.close()
    verdicts = [verdict(v, stored[v.stream_id]) for v in viewers]
    report(
        "worker kill -9",
        verdicts,
        takeover_before_output_s=f"{takeover[before]:.2f}",
        takeover_after_output_s=f"{takeover[after]:.2f}",
        lease_s=FAST_WORKER_ENV["WORKER_LEASE_SECONDS"],
    )
    for v in verdicts:
        assert v.outcome == "done" and v.exact, v
    # Before output: it simply ran again, nothing to discard.
    assert one_reply(types_of(stored[before]))
    assert metas[before]["attempt"] == "2" and metas[before]["status"] == "completed"
    # After output: the first attempt's events stay, data-continued, then the rest of the
    # one reply, in the same text part (no second start, step or text part).
    types = types_of(stored[after])
    k = types.index("data-continued")
    assert k >= 10 and continued_reply(types), types
    notice = json.loads(stored[after][k].data)
    assert notice["data"]["attempt"] == 2 and notice["data"]["mode"] == "continue"
    said = "".join(json.loads(e.data).get("delta", "") for e in stored[after])
    assert said == "".join(shown) + "".join(f"new{i} " for i in range(40))
    assert metas[after]["attempt"] == "2" and metas[after]["status"] == "completed"
    # Bounded: the lease, then the rescuer's next sweep (at most one blocking read later).
    bound = float(FAST_WORKER_ENV["WORKER_LEASE_SECONDS"]) + 2 + 5  # + slack for a busy CI
    assert max(takeover.values()) < bound, takeover


@pytest.mark.timeout(240)  # two leases to run out and three worker starts, on a loaded machine
async def test_attempts_are_bounded_when_workers_keep_dying(tmp_path: Path) -> None:
    """Every worker that takes the generation dies after some output. With
    ``WORKER_MAX_ATTEMPTS=2`` the third worker to claim it does not call the model again:
    the stream ends with ``error`` saying so, and no generation stays ``running``."""
    with FakeAnthropicServer() as model, Cluster(tmp_path, workers_n=0) as cluster:
        cluster.worker_env = {
            **model_env(model),
            "WORKER_MERGE_MS": "0",
            "WORKER_MAX_ATTEMPTS": "2",
        }
        shown = [f"w{i} " for i in range(10)]
        model.set_default([*text_reply(shown)[: 2 + len(shown)], stall()])
        more = [f"v{i} " for i in range(10)]  # asked to go on: more words, then silence
        model.route("Continue exactly", [*text_reply(more)[: 2 + len(more)], stall()])
        fe = cluster.frontends[0].url
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as client:
            # A generation is accepted only while some worker serves its provider.
            worker = await asyncio.to_thread(cluster.add_worker)
            gid = await create_generation(client, fe, "workers keep dying")
            viewers = [Viewer(cluster.urls, gid) for _ in range(4)]
            r = cluster.client()
            started = time.monotonic()
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_viewers, client, viewers, 90)
                for attempt in (1, 2):
                    if attempt > 1:
                        worker = await asyncio.to_thread(cluster.add_worker)
                    # A lease to run out, a worker to start: slower on a loaded machine.
                    await until(lambda w=worker: owned_by(r, gid, w), f"attempt {attempt}", 60)
                    # Its output is in (the model then stalls): it dies mid-generation. (Its
                    # last word, not a count of events: how many events the words take
                    # depends on how they arrive, merged or not.)
                    last = (shown if attempt == 1 else more)[-1]
                    await poll(lambda w=last: _has_text(r, gid, w), f"output of attempt {attempt}")
                    worker.stop(signal.SIGKILL)
                await asyncio.to_thread(cluster.add_worker)
                status = await wait_status(client, fe, gid, {"failed", "completed"}, 60)
            stored = stored_events(r, gid)
            meta = stream_meta(r, gid)
            r.close()
    verdicts = [verdict(v, stored) for v in viewers]
    report("attempts bounded", verdicts, ended_s=f"{time.monotonic() - started:.1f}")
    for v in verdicts:
        assert v.outcome == "done" and v.exact, v
    types = types_of(stored)
    assert types.count("data-continued") == 1 and types[-1] == "error", types
    assert status["status"] == "failed" and meta["attempt"] == "3"
    assert "gave up after 2 attempts" in json.loads(stored[-1].data)["errorText"]
    assert model.request_count == 2, "the third claim must not call the model"


async def test_a_paused_worker_is_fenced_when_it_wakes(tmp_path: Path) -> None:
    """SIGSTOP a worker mid-generation (alive, but frozen past its lease), let another
    take the generation over, then SIGCONT it: its late appends are refused, nothing of
    it interleaves with the new attempt, and it gives the generation up."""
    with Cluster(tmp_path, workers_n=0, worker_env=SLOW_FAKE) as cluster:
        sleeper = cluster.add_worker()
        fe = cluster.frontends[0].url
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as client:
            gid = await create_generation(client, fe, "a worker that froze")
            r = cluster.client()
            await poll(lambda: _at_seq(r, gid, 5), "output before the pause")
            cluster.pause(sleeper)
            paused_at = time.monotonic()
            # Started after the pause, so a slow start cannot let the generation finish
            # first; the takeover time below includes it (at least the lease anyway).
            rescuer = await asyncio.to_thread(cluster.add_worker)
            viewers = [Viewer(cluster.urls, gid) for _ in range(6)]
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_viewers, client, viewers, 60)
                await until(lambda: owned_by(r, gid, rescuer), "the takeover", 30)
                takeover = time.monotonic() - paused_at
                taken_at = int(stream_meta(r, gid)["seq"])
                await poll(lambda: _at_seq(r, gid, taken_at + 5), "the new attempt's output")
                cluster.resume(sleeper)  # wakes with a batch to append, and a stale seq
            stored = stored_events(r, gid)
            meta = stream_meta(r, gid)
            r.close()
            refused = await poll(
                lambda: _logged(sleeper, "giving it up"), "the woken worker to give up", 10
            )
    verdicts = [verdict(v, stored) for v in viewers]
    report("worker SIGSTOP/SIGCONT", verdicts, takeover_s=f"{takeover:.2f}")
    for v in verdicts:
        assert v.outcome == "done" and v.exact, v
    types = types_of(stored)
    assert continued_reply(types), types
    assert meta["owner"] != "" and owner_pid(meta["owner"]) == rescuer.pid
    assert meta["status"] == "completed" and meta["attempt"] == "2"
    assert "another owner" in refused or "is at seq" in refused


# --- 3. Redis restarts mid-stream -------------------------------------------------------


async def test_redis_restarts_mid_stream(tmp_path: Path) -> None:
    """Redis is killed (SIGKILL) mid-stream and restarted 1.5 s later from its AOF
    (appendfsync everysec, as deploy/redis.conf): /readyz says 503 meanwhile, the worker
    retries its appends and the generations continue where they were (no takeover), and
    every viewer, held open by its front-end, resumes with no gap."""
    # ~4 s generations, a lease longer than the outage
    env = {**SLOW_FAKE, "WORKER_FAKE_DELAY_MS": "60", "WORKER_LEASE_SECONDS": "5"}
    with Cluster(tmp_path, worker_env=env) as cluster:
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as client:
            a, b = cluster.frontends
            gids = [await create_generation(client, a.url, f"redis restart {i}") for i in range(4)]
            viewers = [Viewer([fe.url], gid) for gid in gids for fe in (a, b) for _ in range(5)]
            seen_ready: set[int] = set()
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_viewers, client, viewers, 60)
                await asyncio.sleep(1.0)
                down_at = time.monotonic()
                restart = asyncio.create_task(
                    asyncio.to_thread(cluster.restart_redis, down_seconds=1.5)
                )
                while not restart.done():
                    seen_ready |= {await readyz(client, fe.url) for fe in (a, b)}
                    await asyncio.sleep(0.1)
                await restart
                up_at = time.monotonic()
            with cluster.client() as r:
                stored = {g: stored_events(r, g) for g in gids}
                metas = {g: stream_meta(r, g) for g in gids}
            retried = sum(w.log().count("append failed") for w in cluster.workers)
    verdicts = [verdict(v, stored[v.stream_id]) for v in viewers]
    resumed = [min((e.at for e in v.received if e.at > up_at), default=up_at) for v in viewers]
    report(
        "redis restart (AOF everysec, SIGKILL)",
        verdicts,
        down_s=f"{up_at - down_at:.2f}",
        first_event_after_restart_s=f"{max(resumed) - up_at:.2f}",
        append_retries=retried,
    )
    assert 503 in seen_ready, f"/readyz while Redis was down: {seen_ready}"
    for v in verdicts:
        assert v.outcome == "done" and v.exact, v
    for g in gids:
        assert metas[g]["status"] == "completed" and metas[g]["attempt"] == "1", metas[g]
        assert one_reply(types_of(stored[g])), "continued in place: no data-retry"
    assert retried > 0, "the workers' appends met the outage and were retried"


# --- 4. Redis comes back having lost writes ---------------------------------------------


async def publish(client: httpx.AsyncClient, base: str, sid: str, first: int, n: int) -> None:
    batch = [{"type": "data-progress", "i": i} for i in range(first, first + n)]
    resp = await client.post(f"{base}/v1/streams/{sid}/events", json=batch)
    assert resp.status_code == 201, resp.text


def told_or_exact(v: Verdict) -> bool:
    """The promise under data loss: every event exactly once, or told (409/404), and
    never a spliced stream either way."""
    return v.consistent and (v.exact if v.outcome == "done" else v.outcome in ("404", "409"))


async def lose_writes(
    tmp_path: Path,
    title: str,
    restart: Callable[[Cluster, list[str], str], Awaitable[list[Received]]],
) -> None:
    """Two generations and a job-progress feed, watched on both front-ends, while
    ``restart`` makes Redis lose writes. The generations' worker writes the lost events
    again (no data-retry: the same events, byte for byte); the feed's viewers, whose
    events nobody can write again, are told (409/404). Nobody sees a spliced stream."""
    # ~6.7 s generations: still running when Redis loses their writes, however slowly
    # the viewers connect
    env = {**SLOW_FAKE, "WORKER_FAKE_DELAY_MS": "100", "WORKER_LEASE_SECONDS": "5"}
    with Cluster(tmp_path, worker_env=env) as cluster:
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as client:
            a, b = cluster.frontends
            gids = [await create_generation(client, a.url, f"{title} {i}") for i in range(2)]
            feed = f"feed-{int(time.time() * 1000)}"
            await publish(client, a.url, feed, 0, 10)
            viewers = [
                Viewer([fe.url, other.url], sid, patience=30)
                for sid in (*gids, feed)
                for fe, other in ((a, b), (b, a))
                for _ in range(3)
            ]
            with cluster.client() as r:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(run_viewers, client, viewers, 60)
                    await poll(lambda: _at_seq(r, gids[-1], 10), "output before the loss")
                    await poll(lambda: _all_watching(viewers), "every viewer to be watching")
                    feed_before = await restart(cluster, gids, feed)
                    lost_at = time.monotonic()
                    await publish(client, a.url, feed, 100, 3)  # a new, different feed
                    end = await client.post(
                        f"{a.url}/v1/streams/{feed}/events", json={"type": "finish"}
                    )
                    assert end.status_code == 201, end.text
                stored = {g: stored_events(r, g) for g in gids}
                metas = {g: stream_meta(r, g) for g in gids}
            # The workers go on serving (their job queue was lost or rolled back too).
            later = await create_generation(client, a.url, "after the loss", max_tokens=4)
            await wait_status(client, a.url, later, {"completed"}, within=30)
        rewritten = sum(w.log().count("writing them again") for w in cluster.workers)
    gen_viewers = [v for v in viewers if v.stream_id != feed]
    feed_viewers = [v for v in viewers if v.stream_id == feed]
    verdicts = [verdict(v, stored[v.stream_id]) for v in gen_viewers]
    told = [v for v in verdicts if v.outcome != "done"]
    resumed = [
        min((e.at for e in v.received if e.at > lost_at), default=lost_at) for v in gen_viewers
    ]
    report(
        title,
        verdicts,
        generation_viewers_resumed=len(verdicts) - len(told),
        generation_viewers_told=len(told),
        feed_viewers_told=len([v for v in feed_viewers if v.outcome in ("404", "409")]),
        streams_written_again=rewritten,
        first_event_after_restart_s=f"{max(resumed) - lost_at:.2f}",
    )
    for v in verdicts:
        assert told_or_exact(v), v
    for g in gids:
        assert metas[g]["status"] == "completed", metas[g]
        assert one_reply(types_of(stored[g])), "written again, not retried from scratch"
    assert rewritten >= 1, "the worker wrote the lost events again"
    # Nobody can write the feed's lost events again: its viewers are told, having been
    # shown only the old feed, never the new one's events as if they followed.
    for fv in feed_viewers:
        assert fv.outcome in ("404", "409"), fv.outcome
        assert [(e.seq, e.data) for e in fv.received] == [
            (e.seq, e.data) for e in feed_before[: len(fv.received)]
        ]


async def _all_watching(viewers: list[Viewer]) -> bool:
    return all(v.received for v in viewers)


async def test_redis_comes_back_empty(tmp_path: Path) -> None:
    async def restart(cluster: Cluster, gids: list[str], feed: str) -> list[Received]:
        with cluster.client() as r:
            before = stored_events(r, feed)
        await asyncio.to_thread(cluster.restart_redis, keep_data=False)
        return before

    await lose_writes(tmp_path, "redis back empty", restart)


async def test_redis_comes_back_from_an_older_copy(tmp_path: Path) -> None:
    """The subtler loss: only the last second or so of writes is gone (a backup, a
    replica that was behind, a host crash with appendfsync everysec)."""

    async def restart(cluster: Cluster, gids: list[str], feed: str) -> list[Received]:
        base = cluster.frontends[0].url
        copy = cluster.snapshot_redis(cluster.root / "older-copy")
        await asyncio.sleep(1.0)  # the generations go on; the copy falls behind
        async with httpx.AsyncClient() as client:
            await publish(client, base, feed, 10, 10)  # events 11..20 only in the live one
        await asyncio.sleep(0.3)
        with cluster.client() as r:
            before = stored_events(r, feed)
        await asyncio.to_thread(cluster.restart_redis, restore=copy)
        return before

    await lose_writes(tmp_path, "redis back from an older copy", restart)


# --- 4b. the front-end's pub/sub connection is cut -------------------------------------


PUSH_FEEDS = 6


async def _push_under_fault(
    cluster: Cluster,
    fault: Callable[[redis_sync.Redis], None],
    *,
    rounds: int = 150,
    every: int = 30,
    big_every: int = 0,
) -> list[Viewer]:
    """Feeds published by the test (one event per feed every 20 ms, in one pipeline),
    each watched by three viewers on each front-end that never move: a viewer holds one
    response from its first event to ``[DONE]``, so what it receives came through its
    front-end's push and repair, not through reconnecting. ``fault`` runs every
    ``every`` rounds; every ``big_every`` rounds a feed's batch is ~40 KB instead."""
    a, b = cluster.frontends
    tag = int(time.time() * 1000)
    feeds = [f"push-{i}-{tag}" for i in range(PUSH_FEEDS)]
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2), limits=limits) as client,
        Publisher.from_url(cluster.redis_url) as pub,
    ):
        await pub.publish_many({sid: {"type": "data-progress", "i": 0} for sid in feeds})
        viewers = [Viewer([fe.url], sid) for sid in feeds for fe in (a, b) for _ in range(3)]
        with cluster.client() as r, anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for v in viewers:
                    tg.start_soon(v.run, client)
                await poll(lambda: _all_watching(viewers), "every viewer to be watching")
                for i in range(1, rounds + 1):
                    big = bool(big_every) and i % big_every == 0
                    await pub.publish_many({sid: _round(i, big) for sid in feeds})
                    if i % every == 0:
                        await asyncio.to_thread(fault, r)
                    await asyncio.sleep(0.02)
                await pub.publish_many({sid: {"type": "finish"} for sid in feeds})
    return viewers


def _round(i: int, big: bool) -> list[dict[str, Any]]:
    if not big:
        return [{"type": "data-progress", "i": i}]
    return [{"type": "data-blob", "i": i, "part": p, "pad": "x" * 20_000} for p in range(2)]


def _judge_push(cluster: Cluster, viewers: list[Viewer], title: str, **figures: object) -> None:
    with cluster.client() as r:
        stored = {v.stream_id: stored_events(r, v.stream_id) for v in viewers}
    verdicts = [verdict(v, stored[v.stream_id]) for v in viewers]
    lost_conns = [fe.log().count("pub/sub") for fe in cluster.frontends]
    report(title, verdicts, pubsub_log_lines=lost_conns, **figures)
    for v, result in zip(viewers, verdicts, strict=True):
        assert v.outcome == "done" and result.exact, result
        assert v.connects == 1, f"{v.stream_id}: {v.connects} connections: the front-end let go"


async def test_pubsub_connections_killed_while_streams_flow(tmp_path: Path) -> None:
    """``CLIENT KILL TYPE pubsub`` every 0.6 s or so, five times: each front-end's
    subscriber connection dies while events are published. It reconnects, subscribes
    again, and reads from the log what was published while it was away, once per
    stream; every viewer, held open throughout, gets every event once, in order."""
    killed: list[int] = []

    def kill(r: redis_sync.Redis) -> None:
        killed.append(int(r.execute_command("CLIENT", "KILL", "TYPE", "pubsub")))

    with Cluster(tmp_path, workers_n=0) as cluster:
        viewers = await _push_under_fault(cluster, kill)
        _judge_push(cluster, viewers, "pub/sub connections killed", killed=killed)
        assert sum(killed) >= 2 * len(killed), f"each kill hit both front-ends: {killed}"
        for fe in cluster.frontends:
            assert fe.log().count("connection lost") >= len(killed) - 1, fe.log()[-3000:]


async def test_pubsub_cut_off_by_its_output_buffer_limit(tmp_path: Path) -> None:
    """``client-output-buffer-limit pubsub 8kb 0 0``: every batch of ~40 KB (pushed
    whole: it is under the project's 64 KB cap) overflows the subscriber's buffer in
    Redis (which counts what does not fit its reply buffer of up to 16 KB), and Redis
    closes the connection, mid-stream, on both front-ends at once. They
    reconnect and fill from the log; every viewer gets every event once, in order."""
    with Cluster(tmp_path, workers_n=0) as cluster:
        with cluster.client() as r:
            r.config_set("client-output-buffer-limit", "pubsub 8kb 0 0")
        viewers = await _push_under_fault(cluster, lambda r: None, big_every=25)
        cut = _output_limit_cuts(cluster)
        _judge_push(cluster, viewers, "pub/sub over its output-buffer limit", cut_off=cut)
        assert cut >= 150 // 25, f"Redis cut the subscribers off {cut} times only"


def _output_limit_cuts(cluster: Cluster) -> int:
    """Clients Redis closed for their output buffer, as its log says (Redis 7.0's INFO
    has no count of them)."""
    assert cluster.redis is not None
    log = cluster.redis.data_dir / "redis.log"
    return log.read_text(errors="replace").count("output buffer limits")


# --- 5. SIGTERM --------------------------------------------------------------------------


@pytest.mark.timeout(150)
async def test_sigterm_to_a_frontend_with_300_open_streams(tmp_path: Path) -> None:
    """SIGTERM to a front-end holding 300 viewers of 6 live feeds: it ends every response
    (no [DONE]) and exits within 10 s; every viewer resumes on the other front-end with
    every event exactly once. (Feeds published by the test rather than generations, so
    the streams outlast the 300 connections however slow the machine is.)"""
    with Cluster(tmp_path, workers_n=0) as cluster:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        timeout = httpx.Timeout(30, connect=5)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            doomed, other = cluster.frontends
            feeds = [f"term-{i}-{int(time.time() * 1000)}" for i in range(6)]
            for sid in feeds:
                await publish(client, other.url, sid, 0, 1)
            viewers = [Viewer([doomed.url, other.url], sid) for sid in feeds for _ in range(50)]
            stop = asyncio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_viewers, client, viewers, 120)
                tg.start_soon(_keep_publishing, client, other.url, feeds, stop)
                await poll(lambda: _viewers_on(client, doomed, 300), "300 open streams", 60)
                t0 = time.monotonic()
                doomed.popen.send_signal(signal.SIGTERM)
                code, exited = await _exit_after(doomed, t0, 15)
                await asyncio.sleep(1.0)  # events go on while the viewers move
                stop.set()
            with cluster.client() as r:
                stored = {sid: stored_events(r, sid) for sid in feeds}
    verdicts = [verdict(v, stored[v.stream_id]) for v in viewers]
    moved = [v for v in viewers if v.reconnect_gaps]
    report(
        "frontend SIGTERM, 300 streams",
        verdicts,
        exited_s=f"{exited:.2f}",
        viewers_moved=len(moved),
        worst_resume_s=f"{max(max(v.reconnect_gaps) for v in moved):.2f}",
    )
    assert code == 0 and "Traceback" not in doomed.log(), doomed.log()[-3000:]
    assert exited < 10, "the contract: a front-end exits within 10 s of SIGTERM"
    assert len(moved) == 300, "every viewer was mid-stream when it stopped"
    for v in verdicts:
        assert v.outcome == "done" and v.exact, v


async def _keep_publishing(
    client: httpx.AsyncClient, base: str, feeds: list[str], stop: asyncio.Event
) -> None:
    """One event per feed every 20 ms until ``stop``, then ``finish`` on each."""
    i = 1
    while not stop.is_set():
        for sid in feeds:
            await publish(client, base, sid, i, 1)
        i += 1
        await asyncio.sleep(0.02)
    for sid in feeds:
        resp = await client.post(f"{base}/v1/streams/{sid}/events", json={"type": "finish"})
        assert resp.status_code == 201, resp.text


async def _viewers_on(client: httpx.AsyncClient, fe: Proc, n: int) -> bool:
    resp = await client.get(f"{fe.url}/readyz")
    return resp.status_code == 200 and resp.json()["viewers"] >= n


async def test_sigterm_to_a_worker(tmp_path: Path) -> None:
    """SIGTERM to a worker running a short generation and a long one, with a grace
    period (3 s) between the two: it takes no new job, finishes the short one, and hands
    the long one back; the other worker continues it at once (data-continued: it had
    output)."""
    grace = float(FAST_WORKER_ENV["WORKER_GRACE_SECONDS"])
    with Cluster(tmp_path, workers_n=0, worker_env={"WORKER_MERGE_MS": "0"}) as cluster:
        victim = cluster.add_worker({"WORKER_FAKE_DELAY_MS": "100"})
        fe = cluster.frontends[0].url
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as client:
            short = await create_generation(client, fe, "short", max_tokens=8)  # ~1.1 s
            long = await create_generation(client, fe, "long", max_tokens=64)  # ~6.7 s
            r = cluster.client()
            for g in (short, long):
                await poll(lambda g=g: _at_seq(r, g, 3), "both running on the victim")
            viewers = [Viewer([fe], g) for g in (short, long) for _ in range(3)]
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_viewers, client, viewers, 60)
                t0 = time.monotonic()
                victim.popen.send_signal(signal.SIGTERM)
                exit_ = asyncio.create_task(_exit_after(victim, t0, grace + 10))
                late = await create_generation(client, fe, "after the SIGTERM")
                # The other worker starts while the victim drains; until then nobody
                # else could take the late job, so the victim had every chance to.
                rescuer = await asyncio.to_thread(
                    cluster.add_worker, {"WORKER_FAKE_DELAY_MS": "10"}
                )
                rescuer_ready = time.monotonic() - t0
                code, exited = await exit_
                await until(lambda: owned_by(r, long, rescuer), "the hand-back", 30)
                handed_over = time.monotonic() - t0
            await wait_status(client, fe, late, {"completed"}, within=30)
            stored = {g: stored_events(r, g) for g in (short, long)}
            metas = {g: stream_meta(r, g) for g in (short, long, late)}
            r.close()
    verdicts = [verdict(v, stored[v.stream_id]) for v in viewers]
    report(
        "worker SIGTERM",
        verdicts,
        grace_s=grace,
        exited_s=f"{exited:.2f}",
        other_worker_ready_s=f"{rescuer_ready:.2f}",
        long_one_resumed_elsewhere_s=f"{handed_over:.2f}",
    )
    assert code == 0, victim.log()[-3000:]
    assert exited < grace + 10
    for v in verdicts:
        assert v.outcome == "done" and v.exact, v
    # Finished within the grace period, by the worker that was stopping.
    assert owner_pid(metas[short]["owner"]) == victim.pid
    assert metas[short]["attempt"] == "1" and one_reply(types_of(stored[short]))
    # Handed back after the grace period, continued elsewhere in the same text part.
    assert owner_pid(metas[long]["owner"]) == rescuer.pid and metas[long]["attempt"] == "2"
    assert continued_reply(types_of(stored[long]))
    # Stopping, it took no new job.
    assert owner_pid(metas[late]["owner"]) == rescuer.pid and metas[late]["attempt"] == "1"


async def _exit_after(proc: Proc, t0: float, within: float) -> tuple[int, float]:
    """The process's exit code, and the seconds from ``t0`` to its exit."""
    code = await asyncio.to_thread(proc.popen.wait, within)
    return code, time.monotonic() - t0


async def _logged(proc: Proc, text: str) -> str:
    log = proc.log()
    return log if text in log else ""


async def _at_seq(r: Any, gid: str, seq: int) -> bool:
    return int(stream_meta(r, gid).get("seq", 0)) >= seq


async def _has_text(r: Any, gid: str, text: str) -> bool:
    """The stream's stored text deltas hold ``text``."""
    deltas = (json.loads(e.data) for e in stored_events(r, gid) if e.type == "text-delta")
    return text in "".join(d.get("delta", "") for d in deltas)
