"""What a run measured (``Window``, read by ``driver.py``) made into the figures the bench
reports: the load, the deliveries and their latency, the cost per delivery and per event,
and over time (the timeline, a killed front-end, the viewers coming back)."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any

from broadcaster.bench.plan import BenchConfig, Plan
from broadcaster.bench.probes import READ_COMMANDS, Counters, command_delta
from broadcaster.bench.timeline import Sampler


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return math.nan
    idx = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return float(sorted_values[idx])


@dataclass
class Kill:
    """A front-end killed in the window (``--kill-pid``)."""

    pid: int
    at_ns: int
    """When (``time.time_ns()``)."""
    at_s: float
    """Seconds into the window."""


@dataclass(frozen=True)
class Window:
    """The measured window: what the viewers saw, and the cost counters read around it."""

    targets: list[tuple[str, int, str]]
    readies: list[Any]
    results: list[dict[str, Any]]
    t_start_ns: int
    publish_seconds: float
    took: list[int]
    before: Counters
    after: Counters
    redis_idle_rate: float
    """Redis's CPU seconds per second before the window, idle (``probes.idle_rates``)."""
    server_idle_rate: float
    """The servers' CPU seconds per second before the window, idle (``probes.idle_rates``)."""
    subscribers: list[int]
    """Per measured stream, the connections subscribed to its channel in the window."""
    server_cpu_idle: dict[int, float]
    """The servers' CPU when publishing ended (``--idle``: what keepalives cost)."""
    rss_before: dict[int, int]
    rss_after: dict[int, int]
    quiet: list[dict[str, Any]]
    """What the quiet streams' viewers saw (and, joining during the window, how long
    each took from connecting to its first event)."""
    sampler: Sampler
    kill: Kill | None
    connect_cpu: float
    """The servers' CPU seconds while the viewers connected (each to its first event)."""

    @property
    def views(self) -> list[Any]:
        return [v for r in self.results for v in r["viewers"]]

    @property
    def deliveries(self) -> int:
        return sum(v[1] for v in self.views)

    @property
    def measured(self) -> int:
        return self.deliveries - len(self.views)  # all but the seq-1 replay each viewer got first


def load_figures(cfg: BenchConfig, plan: Plan, w: Window) -> dict[str, Any]:
    watching: dict[str, int] = {}
    for _, _, path in w.targets:
        sid = plan.stream_of(path)
        watching[sid] = watching.get(sid, 0) + 1
    return {
        "urls": [f"http://{h}:{p}{pre}" for h, p, pre in plan.endpoints],
        "viewers": cfg.viewers,
        "streams": cfg.streams,
        "rate": 0 if cfg.idle else cfg.rate,
        "duration": cfg.duration,
        "event_bytes": cfg.event_bytes,
        "read": plan.read,
        "follow": plan.follow,
        "procs": len(w.readies),
        "open_seconds": max(r[0] for r in w.readies),
        "per_stream": [
            {"stream": sid, "viewers": watching.get(sid, 0), "events": plan.events_per_stream}
            for sid in plan.sids
        ],
    }


def delivery_figures(plan: Plan, w: Window) -> dict[str, Any]:
    views = w.views
    events_per_stream = plan.events_per_stream
    # A viewer the server ended early lost its tail; one still open at the deadline was
    # merely slower than the offered load (its tail is "undelivered", not lost).
    lost = sum(v[3] + (0 if v[7] else events_per_stream - v[2]) for v in views)
    undelivered = sum(events_per_stream - v[2] for v in views if v[7])
    end_ns = max(v[6] for v in views)
    window = (end_ns - w.t_start_ns) / 1e9
    latencies = sorted(lat for r in w.results for lat in r["latencies_ns"])
    return {
        "events_published": plan.published,
        "publish_rate": plan.per_stream * len(plan.sids) / w.publish_seconds,
        "deliveries": w.deliveries,
        "delivered_events_per_s": w.measured / window if window > 0 else math.nan,
        "window_s": window,
        "latency_ms": {
            "p50": percentile(latencies, 0.50) / 1e6,
            "p99": percentile(latencies, 0.99) / 1e6,
            "max": percentile(latencies, 1.0) / 1e6,
        },
        "latency_samples": len(latencies),
        "publish_ms": {
            "p50": percentile(w.took, 0.50) / 1e6,
            "p99": percentile(w.took, 0.99) / 1e6,
        },
        "lost": lost,
        "duplicated": sum(v[4] for v in views),
        "timed_out_viewers": sum(1 for v in views if v[7]),
        "undelivered_at_deadline": undelivered,
        **_quiet_figures(w.quiet),
    }


def time_figures(w: Window) -> dict[str, Any]:
    """Over time: the timeline (``Sampler``), the latency per second of the run and its
    distribution, the front-ends' peak memory, the kill and how the viewers came back."""
    origin = w.sampler.origin_ns
    at = [x for r in w.results for x in r["latency_at_ns"]]
    lat = [x for r in w.results for x in r["latencies_ns"]]
    per_second: dict[int, list[int]] = {}
    for t, x in zip(at, lat, strict=True):
        per_second.setdefault(int((t - origin) // 1_000_000_000), []).append(x)
    seconds = sorted(per_second)
    buckets = [sorted(per_second[k]) for k in seconds]
    edges = [10 ** (e / 10) for e in range(-10, 51)]  # 0.1 ms .. 100 s, ten per decade
    counts = [0] * (len(edges) - 1)
    for x in lat:
        i = bisect.bisect_right(edges, x / 1e6) - 1
        counts[min(max(i, 0), len(counts) - 1)] += 1
    rss = w.sampler.rss_kb
    peak = max((sum(s[i] for s in rss.values()) for i in range(len(w.sampler.t))), default=0)
    starts = [r[2] for r in w.readies]
    return {
        "connect_seconds": (max(r[2] + r[0] * 1e9 for r in w.readies) - min(starts)) / 1e9,
        "server_cpu_ms_per_connect": w.connect_cpu * 1000 / len(w.views) if w.views else None,
        "server_rss_peak_kb": max(peak, sum(w.rss_after.values())) if rss else None,
        "timeline": w.sampler.figures(),
        "latency_timeline": {
            "t": [k + 0.5 for k in seconds],
            "p50": [percentile(b, 0.50) / 1e6 for b in buckets],
            "p99": [percentile(b, 0.99) / 1e6 for b in buckets],
            "max": [b[-1] / 1e6 for b in buckets],
            "n": [len(b) for b in buckets],
        },
        "latency_histogram": {"edges_ms": edges, "counts": counts},
        "kill": _kill_figures(w) if w.kill is not None else None,
    }


def _kill_figures(w: Window) -> dict[str, Any]:
    """What a front-end's ``kill -9`` did: the viewers it cut, how soon each was back (its
    request with ``Last-Event-ID`` answered 200), where those seconds went (``_way_back``),
    how late each cut viewer's next event came, and how soon every viewer (cut or not)
    had an event published after the kill."""
    assert w.kill is not None
    kill = w.kill
    views = w.views
    cut = [v for v in views if v[8]]
    resumed = sorted(v[11] - kill.at_ns for v in cut if v[11])
    nexts = sorted(v[12] - kill.at_ns for v in views if v[12])
    return {
        "pid": kill.pid,
        "at_s": kill.at_s,
        "viewers_cut": len(cut),
        "not_resumed": sum(1 for v in cut if not v[11]),
        "retries": sum(v[9] for v in views),
        "refused_503": sum(v[10] for v in views),
        "resumed_s": spread(resumed),
        "without_next_event": len(views) - len(nexts),
        "next_event_s": spread(nexts),
        "next_event_cut_s": spread(sorted(v[12] - kill.at_ns for v in cut if v[12])),
        "next_event_uncut_s": spread(
            sorted(v[12] - kill.at_ns for v in views if v[12] and not v[8])
        ),
        "next_event_late_uncut_s": spread(
            sorted(v[12] - v[19] for v in views if v[12] and v[19] and not v[8])
        ),
        **_way_back(cut, kill.at_ns),
        "storm": _storm(w.sampler, kill.at_ns, max(resumed, default=0) + kill.at_ns),
    }


def _storm(sampler: Sampler, kill_ns: int, end_ns: int) -> dict[str, float]:
    """From the kill to the last cut viewer back, read off the timeline: the front-ends'
    and the viewer processes' CPU seconds, the accept queues' longest, and the handshakes
    dropped for a full one (the machine's count)."""
    t = sampler.t
    if not t:
        return {}
    start, end = (kill_ns - sampler.origin_ns) / 1e9, (end_ns - sampler.origin_ns) / 1e9
    i = max(0, bisect.bisect_right(t, start) - 1)
    j = min(len(t) - 1, bisect.bisect_left(t, end))
    return {
        "seconds": t[j] - t[i],
        "server_cpu_s": sampler.server_cpu[j] - sampler.server_cpu[i],
        "bench_cpu_s": sampler.bench_cpu[j] - sampler.bench_cpu[i],
        "accept_queue_max": max(sampler.accept_queue[i : j + 1]),
        "listen_overflows": sampler.overflows[j] - sampler.overflows[i],
    }


def spread(xs: list[int]) -> dict[str, float]:
    """p50, p99 and max of ``xs`` (sorted, ns), in seconds."""
    return {q: percentile(xs, f) / 1e9 for q, f in (("p50", 0.5), ("p99", 0.99), ("max", 1))}


def _way_back(cut: list[Any], kill_ns: int) -> dict[str, Any]:
    """Where a cut viewer's seconds went (``viewers.Back``), each step's spread: from its
    cut to its first reconnection (the ``retry:`` advised), to the start of the try that
    was answered (a 503's ``Retry-After``, a refused connect), to its connection
    made (the handshake: a full accept queue drops it, and the client tries again after
    its SYN timeout, doubled each time), to
    the 200 (the accept queue, the front-end's turn and admission), and its next event's
    lateness: received less the later
    of the kill and its publication (what the cut cost that event; a viewer not cut is
    late by the delivery latency alone)."""
    back = [v for v in cut if v[11] and v[13]]

    def step(a: int, b: int) -> dict[str, float]:
        return spread(sorted(v[b] - v[a] for v in back if v[a] and v[b]))

    late = sorted(v[16] - max(kill_ns, v[17]) for v in back if v[16] and v[17])
    return {
        "way_back_s": {
            "retry_wait": step(13, 14),
            "queued": step(14, 18),
            "connecting": step(18, 15),
            "answered": step(15, 11),
        },
        "next_event_late_s": spread(late),
        "without_next_event_cut": len(cut) - len(late),
    }


def _quiet_figures(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The quiet streams' viewers: each must see its start and finish, once; and how long
    each took from connecting to its first event."""
    views = [v for r in results for v in r["viewers"]]
    firsts = sorted(t for r in results for t in r["first_event_ns"])
    return {
        "quiet_viewers": len(views),
        "quiet_lost": sum(v[3] + (0 if v[7] else 2 - v[2]) for v in views),
        "quiet_duplicated": sum(v[4] for v in views),
        "first_event_ms": {
            "p50": percentile(firsts, 0.50) / 1e6,
            "p99": percentile(firsts, 0.99) / 1e6,
            "max": percentile(firsts, 1.0) / 1e6,
        },
    }


def cost_figures(cfg: BenchConfig, plan: Plan, w: Window) -> dict[str, Any]:
    pids = plan.pids
    published = plan.published
    delta = command_delta(w.before.calls, w.after.calls)
    per_100k = 100_000 / w.measured if w.measured > 0 else math.nan
    viewer_cpu = sum(r["cpu"] for r in w.results) - sum(r[1] for r in w.readies)
    srv0, srv1 = w.before.server_cpu, w.after.server_cpu
    publisher_cpu = w.after.own_cpu - w.before.own_cpu
    redis_cpu = w.after.redis_cpu - w.before.redis_cpu
    redis_busy = redis_cpu - w.redis_idle_rate * (w.after.at - w.before.at)
    server_cpu = sum(srv1[p] - srv0[p] for p in pids) if pids else None
    rss_growth = sum(w.rss_after[p] - w.rss_before[p] for p in pids)
    return {
        "client_cpu_s_per_100k": (viewer_cpu + publisher_cpu) * per_100k,
        "viewer_cpu_s_per_100k": viewer_cpu * per_100k,
        "publisher_cpu_s_per_100k": publisher_cpu * per_100k,
        "server_cpu_s": server_cpu,
        "server_idle_cpu_s": (
            sum(w.server_cpu_idle[p] - srv0[p] for p in pids) if pids and cfg.idle else None
        ),
        "server_cpu_s_per_100k": server_cpu * per_100k if server_cpu is not None else None,
        "server_busy_cpu_s_per_100k": (
            (server_cpu - w.server_idle_rate * (w.after.at - w.before.at)) * per_100k
            if server_cpu is not None
            else None
        ),
        "server_idle_cpu_per_s": w.server_idle_rate,
        "redis_cpu_s_per_100k": redis_cpu * per_100k,
        "redis_cpu_us_per_event": redis_cpu * 1e6 / published,
        "redis_idle_cpu_per_s": w.redis_idle_rate,
        "redis_busy_us_per_event": redis_busy * 1e6 / published,
        **_redis_io_figures(w, published),
        "subscribers_per_stream": (
            sum(w.subscribers) / len(w.subscribers) if w.subscribers else math.nan
        ),
        "server_rss_kb": sum(w.rss_after.values()) if pids else None,
        "server_rss_kb_per_connection": rss_growth / len(w.views) if pids else None,
        "redis_commands_per_event": sum(delta.values()) / published,
        "redis_read_commands_per_event": sum(delta.get(c, 0) for c in READ_COMMANDS) / published,
        "redis_xread_per_event": delta.get("xread", 0) / published,
        "redis_commands": delta,
    }


def _redis_io_figures(w: Window, published: int) -> dict[str, float | None]:
    """Per published event, Redis's write calls and bytes written (the replies to the
    publisher, and the messages to front-ends) and its read calls, with ``--redis-pid``."""
    if not w.before.redis_io:
        return dict.fromkeys(
            ("redis_writes_per_event", "redis_bytes_out_per_event", "redis_reads_per_event")
        )
    delta = {k: w.after.redis_io[k] - v for k, v in w.before.redis_io.items()}
    return {
        "redis_writes_per_event": delta["syscw"] / published,
        "redis_bytes_out_per_event": delta["wchar"] / published,
        "redis_reads_per_event": delta["syscr"] / published,
    }
