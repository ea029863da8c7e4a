"""What the bench reads of other processes and of Redis: a process's CPU, I/O and RSS
(``/proc``), Redis's commands, CPU and subscribers (``INFO``, ``PUBSUB``), and the cost
counters read at both ends of the measured window (``Counters``)."""

from __future__ import annotations

import asyncio
import os
import subprocess  # nosec B404: ss, to read the accept queues
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis, RedisCluster

from broadcaster.bench.viewers import own_cpu_seconds
from broadcaster.core import keys

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Commands the bench itself sends for its measurements, not part of the fan-out cost.
OWN_COMMANDS = {"info"}
# Commands that read a stream: what the front-ends cost Redis, apart from the publishing.
READ_COMMANDS = ("xread", "xrange", "xrevrange", "xreadgroup")
NUMSUB_BATCH = 500  # channels per PUBSUB NUMSUB


# --- measurements of other processes ---


_LAST_CPU: dict[int, float] = {}
"""Each process's CPU when last read: what a process killed since (``--kill-pid``) used."""


def proc_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return _LAST_CPU.get(pid, 0.0)
    # after the ")": state is field 3, utime 14, stime 15 (1-based) -> indexes 11, 12.
    # A zombie (killed, not yet reaped) reads 0: it keeps the last value read.
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    cpu = max(cpu, _LAST_CPU.get(pid, 0.0))
    _LAST_CPU[pid] = cpu
    return cpu


def proc_io(pids: list[int]) -> dict[str, int]:
    """Socket and file I/O of processes, from ``/proc/<pid>/io``: ``syscw`` write calls and
    ``wchar`` bytes written (to sockets too), ``syscr`` and ``rchar`` likewise for reads.
    For Redis, what it sends per event, counted exactly where its CPU time is noisy."""
    total = {"syscr": 0, "syscw": 0, "rchar": 0, "wchar": 0}
    for pid in pids:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in total:
                    total[name] += int(value)
    return total


def proc_rss_kb(pid: int) -> int:
    """Resident memory; 0 once the process has died (``--kill-pid``)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0  # a zombie has no VmRSS


def listen_queue(ports: set[int]) -> int:
    """Connections waiting in the accept queues of the listening sockets on ``ports``,
    summed: the handshakes the front-ends have not yet taken (``ss``, which asks the
    kernel for listening sockets alone: ``/proc/net/tcp`` lists every connection, and
    reading 200,000 lines twice a second would cost the bench more than it measures)."""
    found = 0
    for port in ports:
        out = subprocess.run(  # nosec B603 B607: a fixed command, no shell
            ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=False
        ).stdout
        found += sum(int(line.split()[1]) for line in out.splitlines() if line.strip())
    return found


def listen_overflows() -> int:
    """The machine's count of handshakes dropped for a full accept queue (``TcpExt:
    ListenOverflows``): the client tries again after 1, 3, 7 s."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=True))["ListenOverflows"])
    return 0


# --- measurements of Redis ---


async def _info(redis: Redis, section: str) -> list[dict[str, Any]]:
    """One INFO section per server: each primary of a Cluster (a redis+cluster:// URL)."""
    if isinstance(redis, RedisCluster):
        per_node = await redis.info(section, target_nodes=RedisCluster.PRIMARIES)
        return list(per_node.values())
    return [await redis.info(section)]


async def command_calls(redis: Redis) -> dict[str, int]:
    calls: dict[str, int] = {}
    for stats in await _info(redis, "commandstats"):
        for key, value in stats.items():
            name = str(key).removeprefix("cmdstat_")
            if isinstance(value, dict):
                calls[name] = calls.get(name, 0) + int(value.get("calls", 0))
    return calls


def command_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Redis commands run in the window, by name, without the bench's own."""
    delta = {
        name: after.get(name, 0) - before.get(name, 0)
        for name in set(after) | set(before)
        if name not in OWN_COMMANDS
    }
    return {k: v for k, v in sorted(delta.items()) if v}


async def redis_cpu_seconds(redis: Redis) -> float:
    """Redis's own CPU (user + system): where a design that fans out through Redis pays."""
    return sum(
        float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
        for cpu in await _info(redis, "cpu")
    )


async def subscribers_per_channel(redis: Redis, sids: list[str]) -> list[int]:
    """How many connections are subscribed to each stream's push channel: with the
    project's front-ends, how many front-ends Redis sends each of its events to.
    ``PUBSUB SHARDNUMSUB`` on a Cluster, asked of the node serving each channel's slot."""
    if isinstance(redis, RedisCluster):
        await redis.initialize()  # the slot map, if no command has loaded it yet
        counts = []
        for sid in sids:
            channel = keys.push_channel(sid)
            node = redis.get_node_from_key(channel)
            reply = await redis.pubsub_shardnumsub(channel, target_nodes=node)
            counts.append(sum(int(n) for _, n in reply))
        return counts
    db = int(redis.connection_pool.connection_kwargs.get("db", 0) or 0)
    counts = []
    for i in range(0, len(sids), NUMSUB_BATCH):
        channels = [keys.push_channel(sid, db) for sid in sids[i : i + NUMSUB_BATCH]]
        counts += [int(n) for _, n in await redis.pubsub_numsub(*channels)]
    return counts


# --- the cost counters of a window ---


@dataclass(frozen=True)
class Counters:
    """The cost counters, read at the start and the end of the measured window."""

    calls: dict[str, int]
    redis_cpu: float
    own_cpu: float
    server_cpu: dict[int, float]
    at: float
    """``time.monotonic()`` when Redis's CPU was read."""
    redis_io: dict[str, int]
    """``proc_io`` of the ``--redis-pid`` processes (empty without)."""


async def counters(stats_redis: Redis, pids: list[int], redis_pids: list[int]) -> Counters:
    """Redis's commands and CPU, the ``redis_pids``' I/O, the bench's own CPU and that of
    the front-ends ``pids``."""
    calls = await command_calls(stats_redis)
    redis_cpu = await redis_cpu_seconds(stats_redis)
    at = time.monotonic()
    redis_io = proc_io(redis_pids) if redis_pids else {}
    # the bench's own CPU inside the Redis INFO reads
    server_cpu = {pid: proc_cpu_seconds(pid) for pid in pids}
    return Counters(calls, redis_cpu, own_cpu_seconds(), server_cpu, at, redis_io)


async def idle_rates(stats_redis: Redis, pids: list[int], seconds: float) -> tuple[float, float]:
    """Redis's and the servers' CPU seconds per second with the viewers connected and
    nothing published: Redis's cron, expiry and client bookkeeping, the servers'
    keepalives, timers and sweeps, which they spend whatever the events."""
    if seconds <= 0:
        return 0.0, 0.0
    cpu0, t0 = await redis_cpu_seconds(stats_redis), time.monotonic()
    srv0 = sum(proc_cpu_seconds(p) for p in pids)
    await asyncio.sleep(seconds)
    took = time.monotonic() - t0
    srv = (sum(proc_cpu_seconds(p) for p in pids) - srv0) / took
    return (await redis_cpu_seconds(stats_redis) - cpu0) / took, srv
