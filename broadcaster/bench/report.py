"""The bench's report as text (``render``): a line a figure, as ``bench`` prints it
without ``--json``."""

from __future__ import annotations

import math
from typing import Any


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.3f}{unit}" if abs(value) < 100 else f"{value:,.0f}{unit}"
    return f"{value:,}{unit}"


def kill_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    k = r["kill"]
    if k is None:
        return []
    way = k["way_back_s"]
    return [
        (
            "front-end killed",
            f"pid {k['pid']} {k['at_s']:.1f} s into the window; {k['viewers_cut']:,} viewers "
            f"cut, {k['retries']:,} reconnections ({k['refused_503']:,} answered 503)",
        ),
        (
            "cut viewers back",
            f"{_spread(k['resumed_s'])} s after the kill; {k['not_resumed']} never",
        ),
        ("... waiting to retry", f"{_spread(way['retry_wait'])} s (the retry: advised)"),
        ("... queued", f"{_spread(way['queued'])} s (503s' Retry-After, refused tries)"),
        ("... connecting", f"{_spread(way['connecting'])} s (the handshake)"),
        ("... answered 200", f"{_spread(way['answered'])} s after connecting"),
        ("... meanwhile", _storm(k["storm"], k["viewers_cut"])),
        (
            "cut viewers' next event late",
            f"{_spread(k['next_event_late_s'])} s (received less the later of the kill and "
            f"its publication); {k['without_next_event_cut']} without",
        ),
        (
            "... viewers not cut",
            f"{_spread(k['next_event_late_uncut_s'])} s (the delivery latency alone)",
        ),
        (
            "every viewer's next event",
            f"{_spread(k['next_event_s'])} s after the kill (the first published after it; "
            f"cut {_spread(k['next_event_cut_s'])}, not cut {_spread(k['next_event_uncut_s'])}); "
            f"{k['without_next_event']} without",
        ),
    ]


def _storm(st: dict[str, float], cut: int) -> str:
    if not st:
        return "n/a"
    per = st["server_cpu_s"] / max(1, cut) * 1000
    return (
        f"{st['seconds']:.1f} s: front-ends {st['server_cpu_s']:.1f} CPU s ({per:.2f} ms per "
        f"cut viewer), viewer processes {st['bench_cpu_s']:.1f}; accept queues at most "
        f"{st['accept_queue_max']:,}, {st['listen_overflows']:,} handshakes dropped (full)"
    )


def _spread(s: dict[str, float]) -> str:
    return f"p50 {_fmt(s['p50'])} / p99 {_fmt(s['p99'])} / max {_fmt(s['max'])}"


def _quiet_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    if not r["quiet_viewers"]:
        return []
    first = r["first_event_ms"]
    return [
        (
            "quiet streams' viewers",
            f"{_fmt(r['quiet_viewers'])}, lost / dup {r['quiet_lost']} / {r['quiet_duplicated']}",
        ),
        (
            "connect to first event",
            f"p50 {_fmt(first['p50'])} / p99 {_fmt(first['p99'])} / max {_fmt(first['max'])} ms",
        ),
    ]


def render(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    rows = [
        ("front-ends", ", ".join(r["urls"])),
        (
            "load",
            f"{r['viewers']} viewers, {r['streams']} stream(s), {r['rate']} ev/s/stream, "
            f"{r['duration']} s, {r['event_bytes']} B, {r['procs']} viewer process(es), "
            f"read {r['read']}",
        ),
        ("events published", f"{_fmt(r['events_published'])} ({_fmt(r['publish_rate'])} ev/s)"),
        ("deliveries", _fmt(r["deliveries"])),
        ("delivered events/s", _fmt(r["delivered_events_per_s"])),
        (
            "latency p50/p99/max",
            f"{_fmt(lat['p50'])} / {_fmt(lat['p99'])} / {_fmt(lat['max'])} ms "
            f"({_fmt(r['latency_samples'])} samples)",
        ),
        (
            "of which publishing p50/p99",
            f"{_fmt(r['publish_ms']['p50'])} / {_fmt(r['publish_ms']['p99'])} ms "
            "(the publisher's own wait for Redis's reply)",
        ),
        ("lost / duplicated", f"{r['lost']} / {r['duplicated']}"),
        (
            "all connected in",
            f"{_fmt(r['connect_seconds'], ' s')} (each with its first event), server CPU "
            f"{_fmt(r['server_cpu_ms_per_connect'], ' ms')} per connection",
        ),
        *kill_rows(r),
        *_quiet_rows(r),
        (
            "at the deadline",
            f"{r['timed_out_viewers']} viewers still behind, "
            f"{_fmt(r['undelivered_at_deadline'])} deliveries undelivered",
        ),
        *_cost_rows(r),
    ]
    if r["replay"] is not None:
        rp = r["replay"]
        rows.append(
            (
                "late-joiner replay",
                f"{rp['joiners']} x {rp['events']} events in {_fmt(rp['seconds'], ' s')} "
                f"({_fmt(rp['events_per_s'])} ev/s), lost {rp['lost']}, dup {rp['duplicated']}",
            )
        )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _cost_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    srv, cli = r["server_cpu_s_per_100k"], r["client_cpu_s_per_100k"]
    return [
        (
            "bench CPU per 100k deliv.",
            f"{_fmt(cli, ' s')} (viewers {_fmt(r['viewer_cpu_s_per_100k'], ' s')}, "
            f"publisher {_fmt(r['publisher_cpu_s_per_100k'], ' s')})",
        ),
        ("server CPU per 100k deliv.", _fmt(srv, " s")),
        (
            "... less the servers' idle CPU",
            f"{_fmt(r['server_busy_cpu_s_per_100k'], ' s')} "
            f"(idle: {_fmt(r['server_idle_cpu_per_s'] * 1000, ' ms')} per s)",
        ),
        (
            "server CPU / bench CPU",
            _fmt(srv / cli) if srv is not None and cli and math.isfinite(cli) else "n/a",
        ),
        ("server CPU in window", _fmt(r["server_cpu_s"], " s")),
        ("Redis CPU per 100k deliv.", _fmt(r["redis_cpu_s_per_100k"], " s")),
        ("Redis CPU per published event", _fmt(r["redis_cpu_us_per_event"], " us")),
        (
            "... less Redis's idle CPU",
            f"{_fmt(r['redis_busy_us_per_event'], ' us')} "
            f"(idle: {_fmt(r['redis_idle_cpu_per_s'] * 1000, ' ms')} per s)",
        ),
        (
            "Redis writes per event",
            f"{_fmt(r['redis_writes_per_event'])} calls, "
            f"{_fmt(r['redis_bytes_out_per_event'], ' B')} (with --redis-pid)",
        ),
        (
            "subscribers per stream",
            f"{_fmt(r['subscribers_per_stream'])} (front-ends Redis sends each event to)",
        ),
        ("server RSS", _fmt(r["server_rss_kb"], " KiB")),
        ("server RSS at its peak", _fmt(r["server_rss_peak_kb"], " KiB")),
        ("server RSS per connection", _fmt(r["server_rss_kb_per_connection"], " KiB")),
        ("Redis commands per event (all)", _fmt(r["redis_commands_per_event"])),
        ("Redis stream reads per event", _fmt(r["redis_read_commands_per_event"])),
        ("Redis XREAD per event", _fmt(r["redis_xread_per_event"])),
        ("Redis commands", ", ".join(f"{k}={v}" for k, v in r["redis_commands"].items())),
    ]
