"""A comparison's rounds: each scenario's targets started in turn, driven by the same
bench (``broadcaster.bench.driver.run_bench``) and stopped, each run made a row."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from broadcaster.bench.driver import run_bench
from broadcaster.bench.plan import BenchConfig
from broadcaster.bench.probes import command_calls
from broadcaster.bench.run import parse_config
from broadcaster.bench.viewers import BenchError
from broadcaster.presence.counts import PresenceStore
from tests.perf.scenarios import Scenario
from tests.perf.tables import cross, summary, table
from tests.perf.targets import BEFORE_DS, DS, MUX, Server, start
from tests.support.procs import redis_server

# Redis commands the bench's publisher sends (the Lua append and what it calls, the
# pipeline's script check): the same for every target, so not part of its fan-out cost.
PUBLISHER_COMMANDS = {
    *("evalsha", "eval", "hmget", "hset", "xadd", "expire", "time"),
    *("publish", "spublish", "script|exists", "script|load"),
}


def _bench_config(
    s: Scenario, server: Server, redis: tuple[str, int], half_rate: float | None
) -> BenchConfig:
    """The bench's options for ``s`` on ``server``: the scenario's arguments, and the
    server's URLs and pids, as its command line would take them."""
    args = [a if a != "HALF" else f"{half_rate or 100:.0f}" for a in s.bench_args]
    for url in server.urls:
        args += ["--url", url]
    for pid in server.pids:
        args += ["--server-pid", str(pid)]
    if server.name in (DS, BEFORE_DS):
        args += ["--read", "ds-sse"]
    if server.name == MUX:
        args += ["--follow", str(s.follow)]
    if s.kill:
        args += ["--kill-pid", str(server.pids[-1])]
    redis_url, redis_pid = redis
    return parse_config([*args, "--redis-url", redis_url, "--redis-pid", str(redis_pid)])


def _row(target: str, r: dict[str, Any], frontends: int) -> dict[str, Any]:
    fanout = {k: v for k, v in r["redis_commands"].items() if k not in PUBLISHER_COMMANDS}
    published = r["events_published"]
    return {
        "target": target,
        "frontends": frontends,
        "delivered_events_per_s": r["delivered_events_per_s"],
        "p50_ms": r["latency_ms"]["p50"],
        "p99_ms": r["latency_ms"]["p99"],
        "max_ms": r["latency_ms"]["max"],
        "publish_p99_ms": r["publish_ms"]["p99"],
        "server_cpu_s_per_100k": r["server_cpu_s_per_100k"],
        "server_busy_cpu_s_per_100k": r["server_busy_cpu_s_per_100k"],
        "bench_cpu_s_per_100k": r["client_cpu_s_per_100k"],
        "redis_cpu_s_per_100k": r["redis_cpu_s_per_100k"],
        "server_rss_kb_per_connection": r["server_rss_kb_per_connection"],
        "server_rss_kb": r["server_rss_kb"],
        "server_idle_cpu_s": r["server_idle_cpu_s"],
        "fanout_redis_commands_per_event": sum(fanout.values()) / published,
        "fanout_redis_commands_per_event_per_frontend": sum(fanout.values())
        / published
        / frontends,
        "fanout_redis_commands": fanout,
        "redis_cpu_us_per_event": r["redis_cpu_us_per_event"],
        "redis_busy_us_per_event": r["redis_busy_us_per_event"],
        "redis_idle_cpu_per_s": r["redis_idle_cpu_per_s"],
        "subscribers_per_stream": r["subscribers_per_stream"],
        "redis_writes_per_event": r["redis_writes_per_event"],
        "redis_bytes_out_per_event": r["redis_bytes_out_per_event"],
        "first_event_ms": r["first_event_ms"] if r["quiet_viewers"] else None,
        "quiet_lost": r["quiet_lost"],
        "lost": r["lost"],
        "duplicated": r["duplicated"],
        "behind_at_deadline": r["timed_out_viewers"],
        "replay": r["replay"],
        "viewers": r["viewers"],
        "streams": r["streams"],
        "rate": r["rate"],
        "urls": r["urls"],
        "events_published": published,
        "deliveries": r["deliveries"],
        "latency_ms": r["latency_ms"],
        "latency_samples": r["latency_samples"],
        "connect_seconds": r["connect_seconds"],
        "server_cpu_ms_per_connect": r["server_cpu_ms_per_connect"],
        "server_rss_peak_kb": r["server_rss_peak_kb"],
        "kill": r["kill"],
        "timeline": r["timeline"],
        "latency_timeline": r["latency_timeline"],
        "latency_histogram": r["latency_histogram"],
    }


async def run_scenario(
    s: Scenario,
    targets: list[str],
    redis: tuple[str, int],
    logdir: Path,
    half: dict[str, float],
    *,
    before: Path | None = None,
) -> list[dict[str, Any]]:
    rows = []
    redis_url = redis[0]
    for target in [t for t in targets if t in s.targets]:
        server = start(target, redis_url, logdir, s.keepalive, before, s.env, fork=s.fork)
        try:
            if s.custom is not None:
                rows += await s.custom.run(server, redis)
                continue
            cfg = _bench_config(s, server, redis, half.get("rate"))
            if s.redis_first:
                _favour(redis[1])
            try:
                idle = await idle_commands(redis_url, s.idle_commands, len(server.pids))
                result = await run_bench(cfg, server.sink)
            except (BenchError, RedisError, OSError, TimeoutError) as exc:
                rows.append({"target": target, "error": repr(exc)})
                continue
            row = _row(target, result, len(server.urls))
            row["idle_redis_commands_per_s"] = idle
            if s.name == "one-1000-max" and target == "project":
                half["rate"] = row["delivered_events_per_s"] / 1000 / 2
            rows.append(row)
        finally:
            died = server.died(spared=server.pids[-1] if s.kill else None)
            server.stop()
            await _reap_stopped(redis_url)
        if died:  # whatever it measured after that is not the server's
            rows.append({"target": target, "error": f"the server exited during the run: {died}"})
    return rows


def _favour(pid: int) -> None:
    """``pid`` at ``nice -5`` (``Scenario.redis_first``), when this process may."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, -5)
    except PermissionError:
        print("-- Redis left at the usual priority (raising it needs root)", flush=True)


IDLE_SETTLE = 0.5
"""Seconds after a server starts before its idle commands are counted: what start-up asks
(scripts loaded, the first heartbeat) is not what it asks while idle."""


async def idle_commands(redis_url: str, seconds: float, processes: int) -> float | None:
    """Redis commands per second per server process over ``seconds``, with the server
    started and nobody connected (None when not measured): what an idle front-end asks of
    Redis (its heartbeats, and whatever it polls). The counting's own ``INFO`` is left out."""
    if seconds <= 0:
        return None
    client = Redis.from_url(redis_url)
    try:
        await asyncio.sleep(IDLE_SETTLE)
        before, t0 = await command_calls(client), time.monotonic()
        await asyncio.sleep(seconds)
        after, took = await command_calls(client), time.monotonic() - t0
    finally:
        await client.aclose()
    count = sum(v - before.get(k, 0) for k, v in after.items() if k != "info")
    return count / took / max(1, processes)


async def _reap_stopped(redis_url: str) -> None:
    """Remove the viewer counts the stopped server left (a front-end stopping gives its
    final counts 2 s; one that followed 50,000 streams does not finish), so that the next
    target does not reap them in its window: it would pay for this one's streams."""
    client = Redis.from_url(redis_url)
    try:
        store = PresenceStore(client)
        alive, dead = await store.frontends()
        for instance in alive + dead:  # every server of the run is stopped now
            await store.reap(instance)
    finally:
        await client.aclose()


async def run_rounds(
    chosen: list[Scenario],
    targets: list[str],
    *,
    repeat: int,
    before: Path | None,
    pin_redis: bool,
) -> list[dict[str, list[dict[str, Any]]]]:
    """``repeat`` rounds of the ``chosen`` scenarios on one Redis (with ``pin_redis``, on a
    core of its own), each round's tables printed as it ends, then the summary."""
    rounds: list[dict[str, list[dict[str, Any]]]] = []
    with (
        tempfile.TemporaryDirectory(prefix="compare-") as tmp,
        redis_server(Path(tmp) / "redis", pin_redis) as redis,
    ):
        assert redis.proc is not None
        url, redis_pid = redis.url, redis.proc.pid
        for i in range(repeat):
            rnd: dict[str, list[dict[str, Any]]] = {}
            half: dict[str, float] = {}
            for s in chosen:
                rows = await run_scenario(
                    s, targets, (url, redis_pid), Path(tmp), half, before=before
                )
                rnd[s.name] = rows
                print(f"-- round {i + 1}/{repeat}\n{table(s, rows)}\n", flush=True)
            if text := cross(rnd):
                print(f"-- round {i + 1}/{repeat}, across scenarios\n{text}\n", flush=True)
            rounds.append(rnd)
    if repeat > 1:
        print(summary(rounds, chosen))
    return rounds
