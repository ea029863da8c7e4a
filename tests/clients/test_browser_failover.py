"""A front-end dies under the demo page: headless Chromium, a real nginx, two front-ends.

The page is loaded through nginx, configured by deploy/nginx.conf itself: only the
upstream servers, the listen address and the paths an unprivileged nginx in a temporary
folder needs are substituted (and a second access log is added, which records each SSE
request's Last-Event-ID). While a generation streams, the front-end that holds the
page's streams (nginx routes every viewer of a stream to one front-end; each front-end's
/readyz says how many it holds) is killed with SIGKILL. The page's EventSources must
reconnect by themselves with Last-Event-ID, through nginx, to the other front-end, and
every pane must end with exactly the generation's text. tests/clients/browser/failover.mjs
drives the browser.

Needs nginx (/usr/sbin/nginx), Debian's chromium-headless-shell, node and the npm packages of
tests/clients/browser; without them the test fails and says what to install. It never skips.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from broadcaster.core.embedded import free_port
from tests.support.browser import (
    missing_prerequisites,
    pids_using,
    png_size,
    stop_browser_leftovers,
)
from tests.support.nginx import Nginx, find_nginx
from tests.support.node_script import Script
from tests.support.procs import ROOT, Proc, own_redis, start_frontend, start_worker

SCRIPT = ROOT / "tests" / "clients" / "browser" / "failover.mjs"
ARTIFACTS = ROOT / "tests" / "artifacts"
PANES = ("a", "b", "late", "flaky")
SSE_PATH = re.compile(r"^/v1/streams/[^/?]+/events(\?|$)")


def _viewers(frontend: Proc) -> int:
    body = httpx.get(f"{frontend.url}/readyz", timeout=2).json()
    viewers: int = body["viewers"]
    return viewers


def _seq(event_id: str) -> int:
    return int(event_id.split(".", maxsplit=1)[0])


def test_a_front_end_killed_under_the_demo_page_in_chromium(tmp_path: Path) -> None:
    missing = missing_prerequisites()
    if missing:
        pytest.fail("the browser test needs:\n  " + "\n  ".join(missing), pytrace=False)
    nginx_binary = find_nginx()

    redis = own_redis(tmp_path / "redis")
    procs: list[Proc] = []
    nginx: Nginx | None = None
    script: Script | None = None
    profile = tmp_path / "chromium-profile"
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "failover-browser.png"
    screenshot.unlink(missing_ok=True)
    started = time.monotonic()
    try:
        frontends = [start_frontend(redis.url, tmp_path, f"frontend-{i}") for i in (1, 2)]
        procs.extend(frontends)
        # 67 chunks, one every 80 ms: the generation streams for about 5.5 s.
        worker = start_worker(redis.url, tmp_path, "worker", {"WORKER_FAKE_DELAY_MS": "80"})
        procs.append(worker)
        ports = [f.port for f in frontends]
        assert None not in ports
        nginx = Nginx(nginx_binary, tmp_path / "nginx", free_port(), [p for p in ports if p])
        nginx.start()

        script = Script(
            ["node", str(SCRIPT), nginx.url, str(screenshot), str(profile)],
            tmp_path / "failover.stderr",
        )
        streaming = script.next_json(timeout=40)
        assert streaming["phase"] == "streaming", streaming
        gid = streaming["generation_id"]

        # The victim is the front-end that holds the most of the page's streams, as each
        # front-end's /readyz says. nginx routes by stream (deploy/nginx.conf), and the
        # panes all watch the one generation: they are all on one front-end, the other
        # has none. (GET / itself may have been served by either.)
        viewers = {f.name: _viewers(f) for f in frontends}
        page_upstream = next((r["upstream"] for r in nginx.requests() if r["uri"] == "/"), "")
        victim = max(frontends, key=lambda f: viewers[f.name])
        survivor = next(f for f in frontends if f is not victim)
        killed_streams = viewers[victim.name]
        assert killed_streams > 0, f"no front-end holds a stream of the page: {viewers}"
        assert viewers[survivor.name] == 0, f"the page's streams are on both: {viewers}"
        victim.popen.kill()
        victim.popen.wait(5)
        script.send("killed")
        killed_at = time.monotonic()
        status_at_kill = httpx.get(f"{survivor.url}/v1/generations/{gid}", timeout=5).json()

        result = script.next_json(timeout=60)
        assert result["phase"] == "result", result
        script.popen.wait(15)
        assert script.popen.returncode == 0, f"failover.mjs exited with {script.popen.returncode}"
        elapsed = time.monotonic() - started
        api = httpx.get(f"{nginx.url}/v1/generations/{gid}", timeout=10).json()
        # Let nginx log the last responses before reading its log.
        time.sleep(0.3)
        requests = nginx.requests()
        (ARTIFACTS / "failover-browser.json").write_text(
            json.dumps(
                {
                    "result": result,
                    "viewers_before_kill": viewers,
                    "page_served_by": page_upstream,
                    "killed": {"name": victim.name, "port": victim.port},
                    "survivor": {"name": survivor.name, "port": survivor.port},
                    "status_at_kill": status_at_kill,
                    "api": api,
                    "nginx_requests": requests,
                },
                indent=2,
            )
            + "\n"
        )
        print(
            f"\nbrowser failover run: {elapsed:.1f} s; killed {victim.name} (port {victim.port},"
            f" {killed_streams} of the page's streams) {killed_at - started:.1f} s in;"
            f" screenshot: {screenshot}"
        )
    except BaseException:
        if script is not None:
            print(script.report())
        if nginx is not None:
            print(f"nginx log:\n{nginx.log()[-3000:]}")
        for p in procs:
            print(f"{p.name} log:\n{p.log()[-2000:]}")
        raise
    finally:
        if script is not None:
            script.stop()
        stop_browser_leftovers(profile)
        if nginx is not None:
            nginx.stop()
        for p in procs:
            p.stop()
        redis.stop()

    # Nothing of ours is left running.
    assert nginx.popen is not None and nginx.popen.poll() is not None
    assert not [pid for pid in nginx.worker_pids if Path(f"/proc/{pid}").exists()]
    assert pids_using(str(profile)) == []
    assert all(not p.alive() for p in procs)

    # The kill landed inside the generation: nothing had ended, every live pane had text.
    assert status_at_kill["status"] in ("queued", "running"), status_at_kill
    assert api["status"] == "completed", api
    text = api["text"]
    assert text.startswith("You said: " + result["prompt"] + "\n"), text
    for name, pane in result["at_kill"].items():
        assert pane["state"] != "done", (name, pane)
        assert len(pane["text"]) < len(text), (name, pane)

    # Every pane ends with exactly the generation's text: nothing doubled, nothing missing.
    panes = result["panes"]
    assert set(panes) == set(PANES)
    for name in PANES:
        pane = panes[name]
        assert pane["state"] == "done", (name, pane)
        assert pane["text"] == text, f"pane {name} differs from the API's text: {pane['text']!r}"
        assert pane["status"].startswith("finished"), (name, pane["status"])
        assert _seq(pane["last_id"]) == api["last_event_id"], (name, pane)

    # The panes whose stream died went "reconnecting" and came back by themselves.
    states = {n: [t["state"] for t in result["transitions"][n]] for n in PANES}
    reconnected = [n for n in PANES if "reconnecting" in states[n]]
    assert len(reconnected) == killed_streams, (killed_streams, result["transitions"])
    for name in reconnected:
        assert states[name][-3:] == ["reconnecting", "open", "done"], (name, states[name])

    # nginx's own log: each lost stream was resumed with Last-Event-ID, on the survivor.
    sse = [r for r in requests if r["method"] == "GET" and SSE_PATH.match(r["uri"])]
    resumed = [r for r in sse if r["last_event_id"]]
    assert len(resumed) == killed_streams, sse
    for r in resumed:
        final_upstream = r["upstream"].split(",")[-1].strip()
        assert final_upstream == f"127.0.0.1:{survivor.port}", r
        assert r["status"] == "200", r
        assert 0 < _seq(r["last_event_id"]) < api["last_event_id"], r
    cut = [r for r in sse if r["upstream"] == f"127.0.0.1:{victim.port}"]
    assert len(cut) == killed_streams, sse
    # ... and with the very id each pane had shown last when its stream broke.
    lost_at = sorted(
        t["last_id"]
        for n in reconnected
        for t in result["transitions"][n]
        if t["state"] == "reconnecting"
    )
    assert sorted(r["last_event_id"] for r in resumed) == lost_at, (lost_at, resumed)
    # nginx never had to answer with its own 503 ("no front-end is available").
    assert all(r["status"] != "503" for r in requests), requests

    assert result["page_errors"] == []
    # Chromium logs each stream cut by the kill (net::ERR_INCOMPLETE_CHUNKED_ENCODING), and
    # nothing else: the reconnects themselves met no error.
    console = [e for e in result["console_errors"] if not e["url"].endswith("/favicon.ico")]
    assert len(console) == killed_streams, console
    assert all(SSE_PATH.match(httpx.URL(e["url"]).raw_path.decode()) for e in console), console
    # The page has no favicon and the server none either: the browser's own request 404s.
    http_errors = [e for e in result["http_errors"] if not e["url"].endswith("/favicon.ico")]
    assert http_errors == [], http_errors

    width, height = png_size(screenshot)
    assert screenshot.stat().st_size > 10_000 and width >= 1000 and height >= 600, (
        screenshot.stat().st_size,
        width,
        height,
    )
