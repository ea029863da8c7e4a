"""The demo page's Dashboard tab in headless Chromium, two front-ends behind the project's
nginx: one connection (``GET /v1/events?prefix=``, the client package's ``followEvents``)
follows 200 job streams, every one created after it connected: 12 the page starts, 134 a
backend starts under the page's prefix, then the front-end holding the connection is
killed with SIGKILL, and 54 more are created (4 by the page, 50 by the backend) while the
page reconnects by itself, with its ``Last-Event-ID``, on the other front-end. Every job's
events arrive once and in order. tests/clients/browser/dashboard.mjs drives the page."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from broadcaster.core.embedded import free_port
from tests.support.browser import missing_prerequisites
from tests.support.nginx import Nginx, find_nginx
from tests.support.node_script import Script
from tests.support.procs import ROOT, Proc, own_redis, start_frontend

SCRIPT = ROOT / "tests" / "clients" / "browser" / "dashboard.mjs"
ARTIFACTS = ROOT / "tests" / "artifacts"
EVENTS_PER_JOB = 21  # 20 progress events, then finish
PAGE_JOBS = 12 + 4  # started by the page: before the kill, after it
BEFORE, AFTER = 134, 50  # started by the test (a backend): before the kill, after it
TOTAL = PAGE_JOBS + BEFORE + AFTER


def progress(start: int, end: int) -> list[dict[str, object]]:
    """A job's events ``start``..``end`` (1-based): progress, the 21st its finish."""
    return [
        {"type": "data-progress", "data": {"pct": i * 5}}
        if i < EVENTS_PER_JOB
        else {"type": "finish"}
        for i in range(start, end + 1)
    ]


def publish(client: httpx.Client, base: str, stream: str, events: list[dict[str, object]]) -> None:
    r = client.post(f"{base}/v1/streams/{stream}/events", json=events)
    assert r.status_code == 201, r.text


def test_a_dashboard_of_jobs_on_one_connection_survives_a_sigkill(tmp_path: Path) -> None:
    missing = missing_prerequisites()
    if missing:
        pytest.fail("the browser test needs:\n  " + "\n  ".join(missing), pytrace=False)
    redis = own_redis(tmp_path / "redis")
    frontends: list[Proc] = []
    nginx: Nginx | None = None
    script: Script | None = None
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        frontends = [start_frontend(redis.url, tmp_path, f"dash-fe-{i}") for i in (1, 2)]
        nginx = Nginx(
            find_nginx(), tmp_path / "nginx", free_port(), [f.port or 0 for f in frontends]
        )
        nginx.start()
        script = Script(
            [
                "node",
                str(SCRIPT),
                nginx.url,
                str(ARTIFACTS / "dashboard-browser.png"),
                str(tmp_path / "profile"),
            ],
            tmp_path / "dashboard.stderr",
        )
        streaming = script.next_json(timeout=40)
        assert streaming["phase"] == "streaming", streaming
        prefix = streaming["prefix"]
        # The connection is a viewer of every job stream: /readyz counts them.
        viewers = {f.name: httpx.get(f.url + "/readyz").json()["viewers"] for f in frontends}
        victim = max(frontends, key=lambda f: viewers[f.name])
        survivor = next(f for f in frontends if f is not victim)
        assert viewers[victim.name] >= 12, viewers
        ours = [f"{prefix}b{i:03d}" for i in range(BEFORE + AFTER)]
        with httpx.Client(timeout=30) as client:
            for stream in ours[:BEFORE]:  # half of each job, seen live before the kill
                publish(client, survivor.url, stream, progress(1, 10))
            script.send(f"wait {12 + BEFORE}")
            assert script.next_json(timeout=60)["phase"] == "seen"
            victim.popen.kill()
            victim.popen.wait(5)
            killed = time.monotonic()
            script.send(f"killed {TOTAL}")
            for stream in ours[:BEFORE]:
                publish(client, survivor.url, stream, progress(11, EVENTS_PER_JOB))
            for stream in ours[BEFORE:]:
                publish(client, survivor.url, stream, progress(1, EVENTS_PER_JOB))
        result = script.next_json(timeout=90)
        back = time.monotonic() - killed
        script.popen.wait(15)
        assert script.popen.returncode == 0, script.report()
    finally:
        if script is not None:
            script.stop()
        if nginx is not None:
            nginx.stop()
        for f in frontends:
            f.stop()
        redis.stop()
    seqs: dict[str, list[int]] = result["seqs"]
    assert len(seqs) == TOTAL, len(seqs)
    wrong = {s: v for s, v in seqs.items() if v != list(range(1, EVENTS_PER_JOB + 1))}
    assert not wrong, f"a gap or a repeat: {wrong}"
    assert result["opens"] >= 2, result  # it did reconnect
    sources = {u.split("?")[0] for u in result["sources"]}
    assert sources == {"/v1/events"}, result["sources"]
    assert not result["page_errors"], result["page_errors"]
    print(
        f"dashboard in Chromium: {TOTAL} jobs x {EVENTS_PER_JOB} events on one connection, "
        f"{result['opens']} opens, each event once and in order; done {back:.1f} s after "
        "the SIGKILL"
    )
