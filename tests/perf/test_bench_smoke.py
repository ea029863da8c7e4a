"""``python -m broadcaster bench`` against a real Redis and front-end: every figure is
reported, finite, and no viewer lost or repeated an event. No speed assertions."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from broadcaster.core.embedded import EmbeddedRedis
from tests.support.procs import ROOT, Proc, run_python, start_frontend

KEYS = {
    "urls",
    "viewers",
    "streams",
    "rate",
    "duration",
    "event_bytes",
    "per_stream",
    "events_published",
    "publish_rate",
    "deliveries",
    "delivered_events_per_s",
    "latency_ms",
    "publish_ms",
    "lost",
    "duplicated",
    "client_cpu_s_per_100k",
    "server_cpu_s_per_100k",
    "server_rss_kb_per_connection",
    "redis_commands_per_event",
    "redis_read_commands_per_event",
    "redis_xread_per_event",
    "redis_commands",
    "redis_cpu_us_per_event",
    "redis_busy_us_per_event",
    "redis_idle_cpu_per_s",
    "subscribers_per_stream",
    "quiet_viewers",
    "quiet_lost",
    "first_event_ms",
    "replay",
}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _bench(*args: str) -> dict[str, Any]:
    proc = run_python(["-m", "broadcaster", "bench", *args, "--json"], 120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_bench_reports_every_figure(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    url = server.start(reuse=False)
    fe = None
    try:
        fe = start_frontend(url, tmp_path)
        args = [
            *("--url", fe.url, "--redis-url", url),
            *("--viewers", "20", "--streams", "2", "--rate", "50", "--duration", "2"),
            *("--quiet-streams", "200", "--join-during"),
            *("--replay", "500", "--server-pid", str(fe.pid)),
            *("--settle", "0.4"),  # no figure here is compared: the 2 s wait measures nothing
        ]
        result = _bench(*args)
    finally:
        if fe is not None:
            fe.stop()
        server.stop()

    assert result.keys() >= KEYS, KEYS - result.keys()
    assert result["lost"] == 0 and result["duplicated"] == 0
    per_stream = result["per_stream"]
    assert len(per_stream) == 2 and sum(s["viewers"] for s in per_stream) == 20
    # each stream: seq 1 before the viewers joined, rate x duration events, then finish
    assert all(s["events"] == 50 * 2 + 2 for s in per_stream)
    assert result["deliveries"] == sum(s["viewers"] * s["events"] for s in per_stream)
    assert result["events_published"] == 2 * (50 * 2 + 1)
    nested = {
        "urls",
        "per_stream",
        "latency_ms",
        "publish_ms",
        "redis_commands",
        "first_event_ms",
        "replay",
    }
    for key in KEYS - nested:
        assert _finite(result[key]), (key, result[key])
    assert all(_finite(v) for v in result["latency_ms"].values())
    assert set(result["latency_ms"]) == {"p50", "p99", "max"}
    publish = result["publish_ms"]
    assert set(publish) == {"p50", "p99"} and 0 < publish["p50"] <= publish["p99"]
    assert all(isinstance(v, int) for v in result["redis_commands"].values())
    # pushed: one PUBLISH per append (inside the script), no read of the log per event
    assert result["redis_commands"].get("publish", 0) >= result["events_published"]
    assert result["redis_commands"].get("xread", 0) == 0
    # 200 viewers of 200 other streams joined while the two streams flowed
    assert result["quiet_viewers"] == 200 and result["quiet_lost"] == 0
    first = result["first_event_ms"]
    assert set(first) == {"p50", "p99", "max"} and all(_finite(v) for v in first.values())
    replay = result["replay"]
    assert replay["events"] == 501 and replay["lost"] == 0 and replay["duplicated"] == 0
    assert _finite(replay["seconds"]) and _finite(replay["events_per_s"])
    # one front-end: Redis sends each event once, to it
    assert result["subscribers_per_stream"] == 1.0


def test_bench_routes_viewers_by_stream(tmp_path: Path) -> None:
    """Over two front-ends, ``--route rotate`` puts each of 3 streams' viewers on both
    (Redis sends each event to both), ``--route stream`` each stream's on one: Redis then
    writes one message per event fewer, which its own I/O counters show."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    url = server.start(reuse=False)
    fes: list[Proc] = []
    try:
        fes = [start_frontend(url, tmp_path, f"fe-{i}") for i in (1, 2)]
        common = ["--redis-url", url, "--viewers", "12", "--streams", "3", "--rate", "20"]
        common += ["--duration", "1", "--idle-sample", "0.2"]
        assert server.proc is not None
        common += ["--redis-pid", str(server.proc.pid)]
        for fe in fes:
            common += ["--url", fe.url, "--server-pid", str(fe.pid)]
        rotated = _bench(*common, "--route", "rotate")
        routed = _bench(*common, "--route", "stream")
    finally:
        for fe in fes:
            fe.stop()
        server.stop()
    for result in (rotated, routed):
        assert result["lost"] == 0 and result["duplicated"] == 0, result
        assert [s["viewers"] for s in result["per_stream"]] == [4, 4, 4]
        assert _finite(result["redis_busy_us_per_event"]), result
    assert rotated["subscribers_per_stream"] == 2.0, rotated
    assert routed["subscribers_per_stream"] == 1.0, routed
    # a message carries the event's SSE frame (over 100 bytes here): one fewer per event
    assert rotated["redis_bytes_out_per_event"] > routed["redis_bytes_out_per_event"] + 100
