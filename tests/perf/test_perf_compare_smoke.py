"""A smoke run of the side-by-side comparison (tests/perf/compare.py --smoke): the
project, the naive design, the Node peer (resumable-stream) and the ceiling each start,
take the same small load, stop, and the output parses; the Durable Streams reads (the
bench's viewers over ``live=sse``, the long-poll and catch-up drivers of
tests/perf/durable.py) run and see every message once; and the 100,000-viewer scenarios
scaled down (``smoke-kill``: 2 front-end processes sharing a port, 2,000 viewers, one
process killed with ``kill -9``): every viewer comes back and misses nothing, and
``--plot`` draws the run into a PNG. No timing assertion: figures on a shared machine
are for the full run (docs/performance.md), not for CI."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from tests.support.procs import ROOT, run_in_group

PERF = ROOT / "tests" / "perf"


@pytest.mark.timeout(330)
def test_compare_smoke_runs_every_target(tmp_path: Path) -> None:
    assert (PERF / "node_modules" / "resumable-stream").is_dir(), (
        "the peer's npm packages are missing: npm ci --prefix tests/perf (make test does it)"
    )
    out = tmp_path / "compare.json"
    png = tmp_path / "kill.png"
    proc = run_in_group(
        [
            *(sys.executable, "-m", "tests.perf.compare", "--smoke"),
            *("--json", str(out), "--plot", str(png)),
        ],
        timeout=300,  # about 70 s beside the suite's other tests on two cores
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "project / each" in proc.stdout, proc.stdout
    (rnd,) = json.loads(out.read_text())["rounds"]
    assert set(rnd) == {
        *("smoke-live", "smoke-burst", "smoke-kill"),
        *("smoke-ds-sse", "smoke-ds-long-poll", "smoke-ds-catch-up"),
        "smoke-dashboard",
    }
    live = {r["target"]: r for r in rnd["smoke-live"]}
    assert set(live) == {"project", "naive", "peer", "ceiling"}, live
    for target, row in live.items():
        assert "error" not in row, (target, row)
        assert row["lost"] == 0 and row["duplicated"] == 0, (target, row)
        assert math.isfinite(row["delivered_events_per_s"]) and row["delivered_events_per_s"] > 0
        assert math.isfinite(row["p99_ms"]) and math.isfinite(row["server_cpu_s_per_100k"])
    # The project's events are pushed: its front-end reads no stream per event, and Redis
    # sends each event once, to the one front-end subscribed to the stream.
    assert live["project"]["fanout_redis_commands"].get("xread", 0) == 0
    assert live["project"]["subscribers_per_stream"] == 1.0, live["project"]
    assert live["naive"]["subscribers_per_stream"] == 0.0, live["naive"]  # it reads, per viewer
    assert math.isfinite(live["project"]["redis_busy_us_per_event"]), live["project"]
    # What a viewer costs around its deliveries, beside the ceiling's, and what an idle
    # front-end asks of Redis (the ceiling asks nothing).
    assert "viewer cost (target / ceiling):" in proc.stdout, proc.stdout
    assert "front-end CPU per connect" in proc.stdout, proc.stdout
    assert live["ceiling"]["idle_redis_commands_per_s"] == 0, live["ceiling"]
    assert math.isfinite(live["project"]["idle_redis_commands_per_s"]), live["project"]
    assert math.isfinite(live["project"]["server_cpu_ms_per_connect"]), live["project"]
    burst = {r["target"]: r for r in rnd["smoke-burst"]}
    for target in ("project", "naive", "ceiling"):
        replay = burst[target]["replay"]
        assert replay["joiners"] == 20 and replay["lost"] == 0, (target, replay)
    # Not the peer: resumable-stream answers 204 to a joiner once its producer has
    # finished (its issue #44), so how many of its joiners get the stream depends on timing.
    ds = {r["target"]: r for r in rnd["smoke-ds-sse"]}
    assert set(ds) == {"project", "project-ds"}, ds
    for target, row in ds.items():
        assert "error" not in row, (target, row)
        assert row["lost"] == 0 and row["duplicated"] == 0, (target, row)
        assert math.isfinite(row["server_cpu_s_per_100k"]), (target, row)
    assert ds["project-ds"]["delivered_events_per_s"] > 0
    assert "Durable Streams / SSE route" in proc.stdout
    polls = {r["case"]: r for r in rnd["smoke-ds-long-poll"]}
    assert set(polls) == {"woken", "timeout", "cold"}, polls
    for case, row in polls.items():
        assert "error" not in row and not row["errors"], (case, row)
        assert row["requests"] > 0, (case, row)
    assert polls["woken"]["with_data"] == polls["woken"]["requests"], polls["woken"]
    assert polls["timeout"]["with_data"] == 0, polls["timeout"]
    reads = rnd["smoke-ds-catch-up"]
    assert {(r["stream"], r["read"]) for r in reads} == {
        *(("json", "ds-pages"), ("binary", "ds-pages"), ("feed", "ds-pages")),
        *(("feed", "ds-sse"), ("feed", "sse-replay")),
    }
    for row in reads:
        assert "error" not in row and not row["problems"], row
    # Many streams on one connection: the same events, delivered whole to connections
    # that each follow 5 streams, beside single-stream connections.
    dash = {r["target"]: r for r in rnd["smoke-dashboard"]}
    assert set(dash) == {"project", "project-mux"}, dash
    for target, row in dash.items():
        assert "error" not in row, (target, row)
        assert row["lost"] == 0 and row["duplicated"] == 0, (target, row)
        assert row["behind_at_deadline"] == 0, (target, row)
    assert dash["project-mux"]["subscribers_per_stream"] == 1.0, dash["project-mux"]
    assert "dashboard / single-stream connections" in proc.stdout
    (killed,) = rnd["smoke-kill"]
    assert "error" not in killed, killed
    assert killed["target"] == "project-x2" and killed["frontends"] == 1, killed
    assert killed["lost"] == 0 and killed["duplicated"] == 0, killed
    assert killed["behind_at_deadline"] == 0, killed
    # 2 events before seq 1's replay ... every viewer saw 1..N once: N = 5 x 3 + 2
    assert killed["deliveries"] == 2000 * (5 * 3 + 2), killed["deliveries"]
    kill = killed["kill"]
    assert kill["viewers_cut"] > 0 and kill["not_resumed"] == 0, kill
    assert kill["without_next_event"] == 0, kill
    assert all(math.isfinite(v) for v in kill["resumed_s"].values()), kill
    assert all(math.isfinite(v) for v in kill["next_event_s"].values()), kill
    # where the cut viewers' seconds went, step by step, and how late their next event was
    assert kill["without_next_event_cut"] == 0, kill
    for step in ("retry_wait", "queued", "connecting", "answered"):
        assert all(math.isfinite(v) for v in kill["way_back_s"][step].values()), (step, kill)
    assert all(math.isfinite(v) for v in kill["next_event_late_s"].values()), kill
    assert kill["storm"]["seconds"] > 0 and kill["storm"]["server_cpu_s"] > 0, kill["storm"]
    assert "cut viewers' next event late" in proc.stdout, proc.stdout
    timeline = killed["timeline"]
    assert max(timeline["connected"]) == 2000, timeline["connected"]
    assert set(timeline["marks"]) >= {"window", "published", "kill"}, timeline["marks"]
    assert len(timeline["rss_kb"]) == 2, timeline["rss_kb"].keys()
    assert sum(killed["latency_histogram"]["counts"]) == killed["latency_samples"] > 0
    assert "front-end killed: pid" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "--plot wrote a PNG"
    assert f"drawn into {png}" in proc.stdout
