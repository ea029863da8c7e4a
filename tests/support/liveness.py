"""Workers lost and found on real processes, on one Redis, a Redis Cluster or Sentinel:
a deployment of one front-end and workers started one by one, and what Redis says of a
worker's liveness (``broadcaster/generations/liveness.py``). Used by
``tests/faults/test_liveness.py`` and the benchmark ``tests/perf/worker_kill.py``."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis as redis_sync

from broadcaster.core import keys
from broadcaster.core.embedded import EmbeddedRedis
from broadcaster.generations.liveness import SETTLE_S
from tests.support.faults import owner_pid
from tests.support.procs import Proc, own_redis, start_frontend, start_worker
from tests.support.topologies import (
    LocalCluster,
    SentinelGroup,
    start_cluster,
    start_sentinel_group,
)

TOPOLOGIES = ("single", "cluster", "sentinel")


@dataclass
class Deployment:
    """One front-end and the workers a test adds, on one topology of Redis."""

    root: Path
    env: dict[str, str]
    """What every process is given to reach Redis (``REDIS_URL``, ``REDIS_CLUSTER``...)."""
    redis: EmbeddedRedis | LocalCluster | SentinelGroup
    worker_env: dict[str, str] = field(default_factory=dict)
    frontend: Proc | None = None
    workers: list[Proc] = field(default_factory=list)
    _paused: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        assert self.frontend is not None
        return self.frontend.url

    def client(self) -> Any:
        """A client of the test's own (``redis.Redis`` or ``RedisCluster``)."""
        if isinstance(self.redis, EmbeddedRedis):
            return redis_sync.Redis.from_url(self.redis.url)
        return self.redis.client()

    def add_worker(self, env: dict[str, str] | None = None) -> Proc:
        n = len(self.workers) + 1
        env = {**self.env, **self.worker_env, **(env or {})}
        proc = start_worker(self.env["REDIS_URL"], self.root, f"worker-{n}", env)
        self.workers.append(proc)
        return proc

    def pause(self, proc: Proc) -> None:
        os.kill(proc.pid, signal.SIGSTOP)
        self._paused.add(proc.pid)

    def resume(self, proc: Proc) -> None:
        os.kill(proc.pid, signal.SIGCONT)
        self._paused.discard(proc.pid)

    def stop(self) -> None:
        for proc in self.workers:
            if proc.pid in self._paused:
                self.resume(proc)
        for proc in [*self.workers, *([self.frontend] if self.frontend else [])]:
            proc.stop()
        self.redis.stop()


@contextlib.contextmanager
def deployment(kind: str, root: Path, worker_env: dict[str, str]) -> Iterator[Deployment]:
    """A front-end on ``kind`` Redis (one of ``TOPOLOGIES``), stopped by pid on exit."""
    found = _redis(kind, root)
    d = Deployment(root, found[0], found[1], worker_env)
    try:
        d.frontend = start_frontend(d.env["REDIS_URL"], root, "frontend", d.env)
        yield d
    finally:
        d.stop()


def _redis(
    kind: str, root: Path
) -> tuple[dict[str, str], EmbeddedRedis | LocalCluster | SentinelGroup]:
    if kind == "single":
        single = own_redis(root / "redis")
        return {"REDIS_URL": single.url}, single
    if kind == "cluster":
        cluster = start_cluster(root / "cluster", primaries=3, replicas=0)
        return {"REDIS_URL": cluster.seed, "REDIS_CLUSTER": "true"}, cluster
    group = start_sentinel_group(root / "sentinel")
    return group.env, group


def consumer_of(client: Any, proc: Proc) -> str | None:
    """The consumer name of the worker ``proc``, as it registered for liveness."""
    for raw in client.hkeys(keys.WORKERS_KEY):
        name = raw.decode()
        if owner_pid(name) == proc.pid:
            return name
    return None


def liveness_state(client: Any, consumer: str) -> str:
    """What the others make of a worker: ``a`` subscribed, ``s`` suspected, ``d`` dead,
    ``""`` not registered."""
    raw = client.hget(keys.WORKERS_KEY, consumer)
    return raw.decode()[:1] if raw else ""


def subscribers(client: Any, consumer: str) -> int:
    """Redis's count of the worker's liveness subscriptions (sharded on a Cluster)."""
    channel = keys.alive_channel(consumer)
    if isinstance(client, redis_sync.RedisCluster):
        node = client.get_node_from_key(channel)
        found = client.execute_command("PUBSUB SHARDNUMSUB", channel, target_nodes=node)
    else:
        found = client.execute_command("PUBSUB NUMSUB", channel)
    return int(dict(_pairs(found)).get(channel.encode(), 0))


def _pairs(flat: list[Any]) -> Iterator[tuple[Any, Any]]:
    if flat and isinstance(flat[0], (list, tuple)):
        yield from ((k, v) for k, v in flat)
        return
    yield from zip(flat[::2], flat[1::2], strict=True)


def settled(client: Any, proc: Proc) -> bool:
    """The worker has held its liveness subscription long enough to judge the others
    (``SETTLE_S``, by its registration's time), so it takes a dead worker's jobs over."""
    consumer = consumer_of(client, proc)
    if consumer is None or subscribers(client, consumer) < 1:
        return False
    state = client.hget(keys.WORKERS_KEY, consumer).decode()
    return state[0] == "a" and time.time() * 1000 - int(state[1:]) >= SETTLE_S * 1000 + 200
