"""One bench run (``run_bench``): open the streams, start the viewers, publish on schedule
in the measured window while reading the cost counters around it, end the streams, time
the late joiners (``--replay``); then the figures (``figures.py``)."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
from typing import Any

from redis.asyncio import Redis

from broadcaster.bench.figures import (
    Kill,
    Window,
    cost_figures,
    delivery_figures,
    load_figures,
    time_figures,
)
from broadcaster.bench.groups import Groups, split
from broadcaster.bench.plan import BenchConfig, Plan, make_plan
from broadcaster.bench.probes import (
    command_calls,
    counters,
    idle_rates,
    proc_cpu_seconds,
    proc_rss_kb,
    subscribers_per_channel,
)
from broadcaster.bench.publishing import EventSink, on_schedule, publish_all, staggered, ticks
from broadcaster.bench.timeline import Sampler, say
from broadcaster.clients.publisher import Publisher
from broadcaster.core import connection
from broadcaster.core.process import raise_nofile_limit

JOIN_AFTER = 1.0  # seconds into the window when --join-during viewers begin to connect
SETTLED = 1000  # commands/s below which Redis is quiet before a window (_settle)
SETTLE_MAX = 120.0


async def run_bench(cfg: BenchConfig, sink: EventSink | None = None) -> dict[str, Any]:
    """One bench run. ``sink`` replaces the Redis publisher (the comparison's ceiling)."""
    plan = make_plan(cfg)
    raise_nofile_limit()
    pub: EventSink = sink if sink is not None else Publisher.from_url(plan.redis_url)
    stats_redis = connection.command_client(plan.redis_url)
    try:
        await _open_streams(pub, plan)
        window = await _measure(cfg, plan, pub, stats_redis)
        # Not counted: the window is over. A deployment's bench leaves no stream open.
        await publish_all(pub, plan.dashboard_sids, {"type": "finish"})
        replay = await _replay(pub, cfg, plan) if cfg.replay > 0 else None
    finally:
        await pub.aclose()
        await stats_redis.aclose()
    return {
        **load_figures(cfg, plan, window),
        **delivery_figures(plan, window),
        **cost_figures(cfg, plan, window),
        **time_figures(window),
        "replay": replay,
    }


async def _open_streams(pub: EventSink, plan: Plan) -> None:
    """Seq 1 of every stream, before the viewers connect: a viewer is ready once it has
    it, so the measured window starts with every viewer caught up."""
    start = {"type": "data-bench-start", "t": time.time_ns()}
    await publish_all(pub, [*plan.sids, *plan.quiet_sids], start)
    await publish_all(pub, plan.dashboard_sids, start)


def _start_viewers(cfg: BenchConfig, plan: Plan) -> tuple[list[tuple[str, int, str]], Groups]:
    """``--viewers`` viewers, spread over the streams and front-ends, in ``--procs``
    processes; they report ready once each has seen its stream's first event."""
    targets = [
        plan.target(plan.sids[i % cfg.streams], i, stream_index=i % cfg.streams)
        for i in range(cfg.viewers)
    ]
    every = max(1, cfg.viewers // max(1, cfg.latency_samplers))
    groups = _groups(
        cfg,
        plan,
        targets,
        latency_every=every,
        timeout=cfg.duration + cfg.deadline,
        first_wait=cfg.first_wait,
        wait_window=True,
    )
    return targets, groups


def _groups(cfg: BenchConfig, plan: Plan, targets: list[tuple[str, int, str]], **kw: Any) -> Groups:
    """Viewers of ``targets`` (host, port, path) in ``--procs`` processes, or as many more
    as their open-file limit needs (``groups.split``), reading as the plan says."""
    return Groups(split(targets, cfg.procs, plan.read, token=cfg.token, **kw))


async def _measure(cfg: BenchConfig, plan: Plan, pub: EventSink, stats_redis: Redis) -> Window:
    """Open the viewers, publish on schedule while they watch, then ``finish``, reading the
    cost counters around that window (quiet streams end after it, so closing them is not
    counted); the timeline is sampled meanwhile, and ``--kill-pid`` killed on time."""
    pids = plan.pids
    rss_before = {pid: proc_rss_kb(pid) for pid in pids}
    before_window = not cfg.join_during and plan.quiet_sids
    say(f"opening {cfg.viewers} viewer(s), {len(plan.quiet_sids) if before_window else 0} quiet")
    sampler = Sampler(plan, cfg.progress)
    cpu_start = sum(proc_cpu_seconds(pid) for pid in pids)
    targets, groups = _start_viewers(cfg, plan)
    sampler.phases.append(groups)
    sampling = asyncio.create_task(sampler.run())
    try:
        readies = await groups.ready()
        connect_cpu = sum(proc_cpu_seconds(pid) for pid in pids) - cpu_start
        quiet = await _open_quiet(cfg, plan, 0.0, sampler) if before_window else None
        await _settle(stats_redis, cfg.settle)
        rss_after = {pid: proc_rss_kb(pid) for pid in pids}
        subscribers = await subscribers_per_channel(stats_redis, plan.sids)
        idle_rate, server_idle = await idle_rates(stats_redis, pids, cfg.idle_sample)
        before = await counters(stats_redis, plan.pids, plan.redis_pids)
        t_start_ns = time.time_ns()
        window = await _window(
            cfg, plan, pub, stats_redis=stats_redis, groups=groups, sampler=sampler, quiet=quiet
        )
    finally:
        sampling.cancel()
        for phase in sampler.phases:  # the viewers, and the quiet streams' (_open_quiet)
            phase.close()
    return Window(
        targets=targets,
        readies=readies,
        t_start_ns=t_start_ns,
        before=before,
        redis_idle_rate=idle_rate,
        server_idle_rate=server_idle,
        subscribers=subscribers,
        rss_before=rss_before,
        rss_after=rss_after,
        sampler=sampler,
        connect_cpu=connect_cpu,
        **window,
    )


async def _window(
    cfg: BenchConfig,
    plan: Plan,
    pub: EventSink,
    *,
    stats_redis: Redis,
    groups: Groups,
    sampler: Sampler,
    quiet: Groups | None,
) -> dict[str, Any]:
    """The window itself: publish on schedule, then ``finish``; read the counters once
    every viewer is done, then end the quiet streams. ``Window``'s fields it measures."""
    groups.window()
    sampler.at("window", time.time_ns())
    say(f"publishing for {cfg.duration:g} s")
    joining = None
    if cfg.join_during:
        joining = asyncio.create_task(_open_quiet(cfg, plan, JOIN_AFTER, sampler))
    t0 = time.perf_counter()
    kill = None
    if cfg.kill_pid:
        kill = asyncio.create_task(_kill_later(cfg.kill_pid, cfg.kill_after, groups, t0, sampler))
    try:
        try:
            took, publish_seconds = await _publish_window(cfg, plan, pub, t0)
            srv_idle = {pid: proc_cpu_seconds(pid) for pid in plan.pids}
            sampler.at("published", time.time_ns())
            await _finish(cfg, plan, pub)
            results = await groups.done()
            after = await counters(stats_redis, plan.pids, plan.redis_pids)
        finally:
            if joining is not None:
                quiet = await joining
        say("window over; ending the streams")
        quiet_results = await _finish_quiet(pub, plan, quiet)
        killed = await kill if kill is not None else None
    finally:
        if kill is not None:
            kill.cancel()
    return {
        "results": results,
        "publish_seconds": publish_seconds,
        "took": took,
        "after": after,
        "server_cpu_idle": srv_idle,
        "quiet": quiet_results,
        "kill": killed,
    }


async def _settle(stats_redis: Redis, seconds: float) -> None:
    """Wait until Redis is quiet (fewer than ``SETTLED`` commands a second for ``seconds``
    running, two samples of half that; at most ``SETTLE_MAX`` seconds): what the front-ends
    do after viewers connect (their viewer counts, written a moment after the joins) is the
    cost of connecting, not of the events the window measures. Two seconds by default, not
    one: a front-end's garbage collection can stop it for a second."""
    if seconds <= 0:
        return
    step = seconds / 2
    t0 = time.monotonic()
    calls = sum((await command_calls(stats_redis)).values())
    quiet = 0
    while time.monotonic() - t0 < SETTLE_MAX:
        await asyncio.sleep(step)
        now = sum((await command_calls(stats_redis)).values())
        quiet = quiet + 1 if now - calls < SETTLED * step else 0
        if quiet == 2:
            return
        calls = now
    say(f"Redis still busy after {SETTLE_MAX:g} s; measuring anyway")


async def _kill_later(pid: int, after: float, groups: Groups, t0: float, sampler: Sampler) -> Kill:
    """``kill -9`` the front-end ``--kill-pid``, ``--kill-after`` seconds into the window;
    every viewer then records when it first gets an event published after that."""
    await asyncio.sleep(max(0.0, t0 + after - time.perf_counter()))
    at_ns = time.time_ns()
    os.kill(pid, signal.SIGKILL)
    at_s = time.perf_counter() - t0
    groups.mark(at_ns)
    sampler.at("kill", at_ns)
    say(f"killed front-end {pid} (kill -9), {at_s:.1f} s into the window")
    return Kill(pid, at_ns, at_s)


async def _open_quiet(cfg: BenchConfig, plan: Plan, after: float, sampler: Sampler) -> Groups:
    """One viewer per quiet stream, ``after`` seconds from now; returns once every one has
    its stream's first event (or fails, after ``--first-wait``)."""
    await asyncio.sleep(after)
    targets = [plan.target(sid, i, stream_index=i) for i, sid in enumerate(plan.quiet_sids)]
    groups = _groups(
        cfg,
        plan,
        targets,
        latency_every=0,
        timeout=cfg.duration + cfg.deadline,
        first_wait=cfg.first_wait,
    )
    sampler.phases.append(groups)
    try:
        await groups.ready()
    except BaseException:
        groups.close()
        raise
    return groups


async def _finish_quiet(pub: EventSink, plan: Plan, quiet: Groups | None) -> list[dict[str, Any]]:
    if quiet is None:
        return []
    await publish_all(pub, plan.quiet_sids, {"type": "finish", "t": time.time_ns()})
    return await quiet.done()


async def _finish(cfg: BenchConfig, plan: Plan, pub: EventSink) -> None:
    """End every stream with ``finish``: on the streams' own schedule with
    ``--pipeline 1`` (spread over one interval, as independent generations end), else at
    once. Ten thousand streams ending in one burst would be a load of its own, which the
    last events' latency would show."""
    if cfg.pipeline != 1 or cfg.idle:
        await publish_all(pub, plan.sids, {"type": "finish", "t": time.time_ns()})
        return
    jobs, in_flight = staggered(
        pub,
        plan.sids,
        1,
        cfg.rate,
        time.perf_counter(),
        pad="",
        kind="finish",
        slot=cfg.slot_ms / 1000,
    )
    await on_schedule(jobs, in_flight)


async def _publish_window(
    cfg: BenchConfig, plan: Plan, pub: EventSink, t0: float
) -> tuple[list[int], float]:
    """``--rate`` events/s to each stream for ``--duration`` from ``t0`` (with ``--idle``,
    nothing for as long). Returns each tick's publish time (sorted, ns) and the seconds it
    all took."""
    if cfg.idle:
        await asyncio.sleep(cfg.duration)
    n, rate, pad = plan.per_stream, cfg.rate, plan.pad
    if cfg.pipeline == 1:
        jobs, in_flight = staggered(pub, plan.sids, n, rate, t0, pad=pad, slot=cfg.slot_ms / 1000)
    else:
        jobs, in_flight = ticks(pub, plan.sids, n, rate, t0, pad=pad, pipeline=cfg.pipeline)
    return await on_schedule(jobs, in_flight), time.perf_counter() - t0


async def _replay(sink: EventSink, cfg: BenchConfig, plan: Plan) -> dict[str, Any]:
    """``--joiners`` viewers join at once a stream of ``--replay`` events that has ended."""
    sid = f"bench-{plan.run}-replay"
    n = cfg.replay
    batch = 500
    for start in range(0, n, batch):
        await sink.publish(
            sid, [{"type": "data-bench", "i": i} for i in range(start, min(n, start + batch))]
        )
    await sink.publish(sid, {"type": "finish"})
    targets = [plan.target(sid, i, stream_index=0) for i in range(cfg.joiners)]
    groups = _groups(cfg, plan, targets, latency_every=0, wait_first=False, timeout=600)
    try:
        readies = await groups.ready()
        results = await groups.done()
    finally:
        groups.close()
    views = [v for r in results for v in r["viewers"]]
    started_ns = min(r[2] for r in readies)
    seconds = (max(v[6] for v in views) - started_ns) / 1e9
    total = n + 1
    return {
        "events": total,
        "joiners": len(views),
        "seconds": seconds,
        "events_per_s": total * len(views) / seconds if seconds > 0 else math.inf,
        "lost": sum(v[3] + (total - v[2]) for v in views),
        "duplicated": sum(v[4] for v in views),
    }
